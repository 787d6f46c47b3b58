package k8s_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/console"
)

// programs are the commands the images run (cmd/<name>), which the
// Dockerfile has a target for.
var programs = []string{"sessionsvc", "detector", "alerter", "auditor"}

// runtimeEnv are read by the Go runtime of every program.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// podIndexField is where a StatefulSet's pod finds its ordinal.
const podIndexField = "metadata.labels['apps.kubernetes.io/pod-index']"

// secretPlaceholder stands for a secret's value when a program is run.
const secretPlaceholder = "placeholder-secret-value-0123456789"

// EnvValue is a variable a container sets, with where it comes from.
type EnvValue struct {
	Value  string // literal or from a ConfigMap; placeholders for secrets and fields
	From   string // "literal", "ConfigMap <name>", "Secret <name>/<key>", "field <path>"
	Secret *corev1.SecretKeySelector
	Field  string
}

// containerEnv resolves a container's environment as the kubelet would:
// envFrom ConfigMaps, then env (which must not repeat a name).
func containerEnv(t *testing.T, r *Rendered, c *corev1.Container) map[string]EnvValue {
	t.Helper()
	out := map[string]EnvValue{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.SecretRef != nil:
			t.Errorf("container %s: envFrom Secret %s: name each secret variable (env valueFrom.secretKeyRef), so the tests see what is set", c.Name, ef.SecretRef.Name)
		case ef.Prefix != "":
			t.Errorf("container %s: envFrom prefix %q", c.Name, ef.Prefix)
		case ef.ConfigMapRef != nil:
			cm := r.ConfigMaps[ef.ConfigMapRef.Name]
			if cm == nil {
				t.Errorf("container %s: envFrom ConfigMap %s is not in the output", c.Name, ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				if _, dup := out[k]; dup {
					t.Errorf("container %s: %s set by two ConfigMaps", c.Name, k)
				}
				out[k] = EnvValue{Value: v, From: "ConfigMap " + cm.Name}
			}
		}
	}
	for _, e := range c.Env {
		if prev, dup := out[e.Name]; dup {
			t.Errorf("container %s: %s set twice (env, and %s)", c.Name, e.Name, prev.From)
		}
		v := EnvValue{Value: e.Value, From: "literal"}
		if vf := e.ValueFrom; vf != nil {
			switch {
			case vf.SecretKeyRef != nil:
				v = EnvValue{Value: secretPlaceholder, From: "Secret " + vf.SecretKeyRef.Name + "/" + vf.SecretKeyRef.Key, Secret: vf.SecretKeyRef}
			case vf.ConfigMapKeyRef != nil:
				cm := r.ConfigMaps[vf.ConfigMapKeyRef.Name]
				if cm == nil {
					t.Errorf("container %s: %s from ConfigMap %s, not in the output", c.Name, e.Name, vf.ConfigMapKeyRef.Name)
					continue
				}
				v = EnvValue{Value: cm.Data[vf.ConfigMapKeyRef.Key], From: "ConfigMap " + cm.Name}
			case vf.FieldRef != nil:
				v = EnvValue{Value: "field", From: "field " + vf.FieldRef.FieldPath, Field: vf.FieldRef.FieldPath}
				if vf.FieldRef.FieldPath == podIndexField {
					v.Value = "0"
				}
			default:
				t.Errorf("container %s: %s: only literal values, ConfigMaps, Secrets and fields", c.Name, e.Name)
			}
		}
		out[e.Name] = v
	}
	return out
}

func itoa[T ~int32 | ~int](v T) string { return strconv.Itoa(int(v)) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildPrograms builds the programs the images hold (what the Dockerfile
// builds) once, for TestEnvironment.
func buildPrograms(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "sessionmon-k8s-"); buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		for _, p := range programs {
			args = append(args, "./cmd/"+p)
		}
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

var envInUsage = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)

// programEnv runs a program with the container's arguments and -h, once
// with an empty environment and once with the container's (secrets as
// placeholders). The usage names the variable of every flag, the set the
// program reads; and since the flag sets apply the environment before they
// print the usage, a value that does not parse (a duration, a number)
// fails the second run.
func programEnv(t *testing.T, bin string, args []string, env map[string]EnvValue) map[string]bool {
	t.Helper()
	run := func(env []string) string {
		cmd := exec.Command(bin, append(slices.Clone(args), "-h")...)
		cmd.Env = env
		out, _ := cmd.CombinedOutput() // -h exits 0 or 1 depending on the program
		return string(out)
	}
	usage := run([]string{})
	read := map[string]bool{}
	for _, m := range envInUsage.FindAllStringSubmatch(usage, -1) {
		read[m[1]] = true
	}
	if len(read) == 0 {
		t.Fatalf("%s %v -h printed no usage naming variables:\n%s", filepath.Base(bin), args, usage)
	}
	var vars []string
	for k, v := range env {
		vars = append(vars, k+"="+v.Value)
	}
	if out := run(vars); out != usage {
		t.Errorf("%s %v: the container's environment does not parse:\n%s", filepath.Base(bin), args, out)
	}
	return read
}

// alerterConfigEnv returns the variables the example alerter.yaml names
// (secret_env, url_env), read through the alerter's own parser, which also
// checks the example.
func alerterConfigEnv(t *testing.T) map[string]bool {
	t.Helper()
	const path = "examples/alerter.yaml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The example leaves the hash to the operator; any real hash stands in.
	hash, err := console.HashPassword("an example passphrase for the test", console.Argon2Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "REPLACE-WITH-THE-OUTPUT-OF-alerter-hash-password", hash))
	names := map[string]bool{}
	cfg, err := alerter.ParseConfig(path, data, func(name string) string {
		names[name] = true
		return "https://hooks.example.com/" + secretPlaceholder
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := console.NewAccounts(cfg.Reviewers); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return names
}

// TestEnvironment: every variable a sessionmon container sets is one its
// program reads (a flag's variable, the Go runtime's, or one the alerter's
// configuration names), and the values parse. A misspelt or stale variable
// would otherwise be ignored without a word.
func TestEnvironment(t *testing.T) {
	bins := buildPrograms(t)
	fromConfig := alerterConfigEnv(t)
	forEach(t, func(t *testing.T, r *Rendered) {
		for _, w := range r.Workloads() {
			for i := range w.Pod.Spec.Containers {
				c := &w.Pod.Spec.Containers[i]
				prog, ok := Program(c)
				if !ok {
					continue
				}
				if !slices.Contains(programs, prog) {
					t.Errorf("%s: image %s is not one of the programs %v", w, c.Image, programs)
					continue
				}
				if len(c.Command) > 0 {
					t.Errorf("%s: command overrides the image's entrypoint; use args", w)
				}
				env := containerEnv(t, r, c)
				read := programEnv(t, filepath.Join(bins, prog), c.Args, env)
				var unread []string
				for name := range env {
					if !read[name] && !runtimeEnv[name] && !(prog == "alerter" && fromConfig[name]) {
						unread = append(unread, name+" ("+env[name].From+")")
					}
				}
				sort.Strings(unread)
				for _, u := range unread {
					t.Errorf("%s: sets %s, which %s does not read", w, u, strings.Join(append([]string{prog}, c.Args...), " "))
				}
				if prog == "alerter" {
					for name := range fromConfig {
						if v, ok := env[name]; !ok || v.Secret == nil {
							t.Errorf("%s: examples/alerter.yaml names %s: the container should take it from a Secret", w, name)
						}
					}
				}
			}
		}
	})
}
