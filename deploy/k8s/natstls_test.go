package k8s_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// natsTLSVars are the settings the nats-tls component sets (eventbus.ConnConfig).
var natsTLSVars = []string{"NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"}

// renderWithComponent renders the base with a component, as an overlay
// adding it would.
func renderWithComponent(t *testing.T, component string) *Rendered {
	t.Helper()
	dir := t.TempDir()
	// Kustomize takes relative paths only.
	rel := func(p string) string {
		a, err := filepath.Abs(p)
		if err == nil {
			a, err = filepath.Rel(dir, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel("base") +
		"\ncomponents:\n  - " + rel(component) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return render(t, dir)
}

// TestNATSTLSComponent: the base with components/nats-tls renders
// strictly; each program mounts its own Secret <program>-nats-tls (the CA,
// its client certificate and key, listed, read-only, not world-readable),
// NATS_TLS_CA, NATS_TLS_CERT and NATS_TLS_KEY name the mounted files, the
// program reads them and its environment parses; the pods stay as secure
// as the base's.
func TestNATSTLSComponent(t *testing.T) {
	r := renderWithComponent(t, "components/nats-tls")
	bins := buildPrograms(t)
	fromConfig := alerterConfigEnv(t)
	workloads := r.Workloads()
	if len(workloads) != 4 {
		t.Fatalf("%d workloads, want the four programs", len(workloads))
	}
	for _, w := range workloads {
		c := programContainer(w)
		if c == nil {
			t.Fatalf("%s: no sessionmon container", w)
		}
		prog, _ := Program(c)
		checkContainer(t, w.String(), c, w.Pod.Spec.SecurityContext)
		env := containerEnv(t, r, c)

		// The mount of the program's own Secret.
		var mountPath string
		for _, m := range c.VolumeMounts {
			if m.Name != "nats-tls" {
				continue
			}
			mountPath = m.MountPath
			if !m.ReadOnly || m.SubPath != "" {
				t.Errorf("%s: the nats-tls mount must be read-only and whole (no subPath: renewed certificates reach the pod)", w)
			}
		}
		var items []string
		for _, v := range w.Pod.Spec.Volumes {
			if v.Name != "nats-tls" {
				continue
			}
			switch s := v.Secret; {
			case s == nil:
				t.Errorf("%s: volume nats-tls is not a Secret", w)
			case s.SecretName != prog+"-nats-tls":
				t.Errorf("%s: volume nats-tls is Secret %s, want the program's own %s-nats-tls", w, s.SecretName, prog)
			case s.DefaultMode == nil || *s.DefaultMode&0o007 != 0:
				t.Errorf("%s: Secret files must not be world-readable", w)
			case s.Optional != nil && *s.Optional:
				t.Errorf("%s: the Secret must not be optional: the program would start without its files and fail", w)
			default:
				for _, it := range s.Items {
					items = append(items, it.Path)
				}
			}
		}
		if mountPath == "" || len(items) == 0 {
			t.Errorf("%s: no nats-tls Secret mounted", w)
			continue
		}
		for _, name := range natsTLSVars {
			v, ok := env[name]
			file, inMount := strings.CutPrefix(v.Value, mountPath+"/")
			switch {
			case !ok:
				t.Errorf("%s: %s is not set", w, name)
			case !inMount || !slices.Contains(items, file):
				t.Errorf("%s: %s=%s is not a file of the mounted Secret (%s: %v)", w, name, v.Value, mountPath, items)
			}
		}

		// The program reads every variable it is given, and they parse.
		read := programEnv(t, filepath.Join(bins, prog), c.Args, env)
		for name := range env {
			if !read[name] && !runtimeEnv[name] && !(prog == "alerter" && fromConfig[name]) {
				t.Errorf("%s: sets %s, which %s does not read", w, name, prog)
			}
		}
	}
}
