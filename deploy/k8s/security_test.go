package k8s_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// allContainers are a pod's init (and sidecar) containers and its
// containers.
func allContainers(p *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range p.InitContainers {
		out = append(out, &p.InitContainers[i])
	}
	for i := range p.Containers {
		out = append(out, &p.Containers[i])
	}
	return out
}

// TestPodSecurity: every pod runs as a non-root user with the runtime's
// seccomp profile and no service account token; every container with a
// read-only root filesystem, no privilege escalation, no capabilities, and
// requests and limits of CPU and memory; nothing from the host.
func TestPodSecurity(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		for _, w := range r.Workloads() {
			p := &w.Pod.Spec
			psc := p.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("%s: pod securityContext.runAsNonRoot must be true", w)
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("%s: pod securityContext.runAsUser must be a non-zero UID (distroless nonroot is 65532)", w)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile must be RuntimeDefault", w)
			}
			if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken must be false (the programs never call the API server)", w)
			}
			if sa := r.ServiceAccounts[p.ServiceAccountName]; sa == nil {
				t.Errorf("%s: serviceAccountName %q is not one of the manifests'", w, p.ServiceAccountName)
			} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
			}
			if p.EnableServiceLinks == nil || *p.EnableServiceLinks {
				t.Errorf("%s: enableServiceLinks must be false: no <SERVICE>_PORT variables beside the programs' own", w)
			}
			if p.HostNetwork || p.HostPID || p.HostIPC {
				t.Errorf("%s: must not share the host's namespaces", w)
			}
			for _, v := range p.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s: volume %s is a hostPath", w, v.Name)
				}
			}
			for _, c := range allContainers(p) {
				checkContainer(t, w.String()+" container "+c.Name, c, psc)
			}
		}
	})
}

func checkContainer(t *testing.T, where string, c *corev1.Container, psc *corev1.PodSecurityContext) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	nonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		nonRoot = *sc.RunAsNonRoot
	}
	if !nonRoot || (sc.RunAsUser != nil && *sc.RunAsUser == 0) {
		t.Errorf("%s: must run as non-root", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem must be true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", where)
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile %s overrides the pod's RuntimeDefault", where, sc.SeccompProfile.Type)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		lim, hasLim := c.Resources.Limits[res]
		switch {
		case !hasReq || !hasLim:
			t.Errorf("%s: needs a request and a limit of %s", where, res)
		case req.Cmp(lim) > 0:
			t.Errorf("%s: %s request %s above its limit %s", where, res, req.String(), lim.String())
		}
	}
	if strings.HasSuffix(c.Image, ":latest") && !strings.HasPrefix(c.Image, imagePrefix) {
		t.Errorf("%s: third-party image %s must be pinned", where, c.Image)
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		// The Go runtime's soft limit must leave headroom under the
		// container's hard one.
		soft, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		lim := c.Resources.Limits[corev1.ResourceMemory]
		if err != nil {
			t.Errorf("%s: GOMEMLIMIT %q: %v", where, e.Value, err)
		} else if float64(soft.Value()) > 0.9*float64(lim.Value()) {
			t.Errorf("%s: GOMEMLIMIT %s is above 90%% of the memory limit %s", where, e.Value, lim.String())
		}
	}
}

// TestProbes: each program's container has a startup and a liveness probe
// on /healthz and a readiness probe on /readyz, all on its http port, the
// port its _LISTEN variable opens on all interfaces.
func TestProbes(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		for _, w := range r.Workloads() {
			n := 0
			for i := range w.Pod.Spec.Containers {
				c := &w.Pod.Spec.Containers[i]
				if _, ok := Program(c); !ok {
					continue
				}
				n++
				where := w.String() + " container " + c.Name
				var port int32
				for _, p := range c.Ports {
					if p.Name == "http" {
						port = p.ContainerPort
					}
				}
				if port == 0 {
					t.Errorf("%s: no port named http", where)
					continue
				}
				for _, pr := range []struct {
					name, path string
					probe      *corev1.Probe
				}{{"startupProbe", "/healthz", c.StartupProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
					switch {
					case pr.probe == nil || pr.probe.HTTPGet == nil:
						t.Errorf("%s: %s must be an HTTP GET of %s", where, pr.name, pr.path)
					case pr.probe.HTTPGet.Path != pr.path:
						t.Errorf("%s: %s path %s, want %s", where, pr.name, pr.probe.HTTPGet.Path, pr.path)
					case pr.probe.HTTPGet.Port.String() != "http" && pr.probe.HTTPGet.Port.IntVal != port:
						t.Errorf("%s: %s port %s is not the http port", where, pr.name, pr.probe.HTTPGet.Port.String())
					}
				}
				env := containerEnv(t, r, c)
				listen := ""
				for name, v := range env {
					switch {
					case strings.HasSuffix(name, "_METRICS_LISTEN"):
						// /metrics on a port of its own: reachable too.
						if !strings.HasPrefix(v.Value, "0.0.0.0:") {
							t.Errorf("%s: %s is %q, want 0.0.0.0:<port> (the programs default to 127.0.0.1)", where, name, v.Value)
						}
					case strings.HasSuffix(name, "_LISTEN"):
						listen = v.Value
					}
				}
				if want := "0.0.0.0:" + itoa(port); listen != want {
					t.Errorf("%s: its _LISTEN variable is %q, want %q (the programs default to 127.0.0.1)", where, listen, want)
				}
			}
			if n != 1 {
				t.Errorf("%s: %d sessionmon containers, want 1", w, n)
			}
		}
	})
}
