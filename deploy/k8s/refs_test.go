package k8s_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// programContainer returns a workload's sessionmon container.
func programContainer(w Workload) *corev1.Container {
	for i := range w.Pod.Spec.Containers {
		if _, ok := Program(&w.Pod.Spec.Containers[i]); ok {
			return &w.Pod.Spec.Containers[i]
		}
	}
	return nil
}

// TestReferences: what refers to something finds it. Selectors select
// their pods, Services' target ports and ServiceMonitors' ports exist, the
// HorizontalPodAutoscaler's target exists and owns its replica count,
// volumes name ConfigMaps in the output.
func TestReferences(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		workloads := r.Workloads()
		matching := func(sel map[string]string) []Workload {
			var out []Workload
			for _, w := range workloads {
				if len(sel) > 0 && selectsMap(sel, w.Pod.Labels) {
					out = append(out, w)
				}
			}
			return out
		}
		for _, w := range workloads {
			if !selects(t, w.Selector, w.Pod.Labels) {
				t.Errorf("%s: its selector does not select its own pods", w)
			}
			if programContainer(w) == nil {
				t.Errorf("%s: no sessionmon container", w)
			}
			vols := map[string]bool{}
			for _, v := range w.Pod.Spec.Volumes {
				vols[v.Name] = true
				if v.ConfigMap != nil && r.ConfigMaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: volume %s: ConfigMap %s is not in the output", w, v.Name, v.ConfigMap.Name)
				}
			}
			for _, c := range allContainers(&w.Pod.Spec) {
				for _, m := range c.VolumeMounts {
					if !vols[m.Name] {
						t.Errorf("%s container %s: mounts %s, which is not a volume", w, c.Name, m.Name)
					}
				}
			}
		}
		for _, s := range r.Services {
			ws := matching(s.Spec.Selector)
			if len(ws) != 1 {
				t.Errorf("Service %s selects %d workloads, want 1", s.Name, len(ws))
				continue
			}
			c := programContainer(ws[0])
			for _, p := range s.Spec.Ports {
				if !hasPort(c, p.TargetPort) {
					t.Errorf("Service %s: targetPort %s is not a port of %s", s.Name, p.TargetPort.String(), ws[0])
				}
			}
		}
		for _, sm := range r.ServiceMonitors {
			var svc *corev1.Service
			for _, s := range r.Services {
				if selects(t, &sm.Spec.Selector, s.Labels) {
					if svc != nil {
						t.Errorf("ServiceMonitor %s selects Services %s and %s", sm.Metadata.Name, svc.Name, s.Name)
					}
					svc = s
				}
			}
			if svc == nil {
				t.Errorf("ServiceMonitor %s selects no Service", sm.Metadata.Name)
				continue
			}
			if len(sm.Spec.Endpoints) == 0 {
				t.Errorf("ServiceMonitor %s: no endpoints", sm.Metadata.Name)
			}
			for _, e := range sm.Spec.Endpoints {
				found := false
				for _, p := range svc.Spec.Ports {
					found = found || p.Name == e.Port
				}
				if !found {
					t.Errorf("ServiceMonitor %s: port %q is not a port name of Service %s", sm.Metadata.Name, e.Port, svc.Name)
				}
				if e.Path != "/metrics" {
					t.Errorf("ServiceMonitor %s: path %q, want /metrics", sm.Metadata.Name, e.Path)
				}
				iv, err1 := time.ParseDuration(e.Interval)
				to, err2 := time.ParseDuration(e.ScrapeTimeout)
				if err1 != nil || err2 != nil || to > iv {
					t.Errorf("ServiceMonitor %s: interval %q and scrapeTimeout %q: want durations, the timeout not above the interval", sm.Metadata.Name, e.Interval, e.ScrapeTimeout)
				}
			}
		}
		for _, h := range r.HPAs {
			ref := h.Spec.ScaleTargetRef
			d := r.Deployments[ref.Name]
			switch {
			case ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || d == nil:
				t.Errorf("HorizontalPodAutoscaler %s: target %s %s/%s is not in the output", h.Name, ref.APIVersion, ref.Kind, ref.Name)
			case d.Spec.Replicas != nil:
				t.Errorf("Deployment %s: replicas is set, but HorizontalPodAutoscaler %s owns the count (each apply would reset it)", d.Name, h.Name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
				t.Errorf("HorizontalPodAutoscaler %s: want 2 <= minReplicas <= maxReplicas", h.Name)
			}
		}
		for _, p := range r.PDBs {
			if len(matching(p.Spec.Selector.MatchLabels)) != 1 {
				t.Errorf("PodDisruptionBudget %s does not select exactly one workload", p.Name)
			}
			if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
				t.Errorf("PodDisruptionBudget %s: set one of maxUnavailable and minAvailable", p.Name)
			}
		}
		if strings.HasPrefix(r.Dir, "overlays/") {
			for _, w := range workloads {
				for _, c := range allContainers(&w.Pod.Spec) {
					if _, ok := Program(c); ok && (strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":")) {
						t.Errorf("%s: image %s: an overlay deploys a release, not latest", w, c.Image)
					}
				}
			}
		}
	})
}

func selectsMap(sel, set map[string]string) bool {
	for k, v := range sel {
		if set[k] != v {
			return false
		}
	}
	return true
}

func hasPort(c *corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

// TestDetectorGroups: one detector per partition group. The StatefulSet
// runs DETECTOR_GROUPS pods, a divisor of the 16 partitions, and each
// takes its ordinal as DETECTOR_GROUP.
func TestDetectorGroups(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		s := r.StatefulSets["detector"]
		if s == nil {
			t.Fatal("no StatefulSet detector")
		}
		w := Workload{"StatefulSet", s.Name, s.Spec.Selector, s.Spec.Replicas, &s.Spec.Template}
		env := containerEnv(t, r, programContainer(w))
		groups, err := strconv.Atoi(env["DETECTOR_GROUPS"].Value)
		if err != nil || groups < 1 || 16%groups != 0 {
			t.Errorf("DETECTOR_GROUPS %q: want 1, 2, 4, 8 or 16", env["DETECTOR_GROUPS"].Value)
		}
		if s.Spec.Replicas == nil || int(*s.Spec.Replicas) != groups {
			t.Errorf("StatefulSet detector: replicas %v, want DETECTOR_GROUPS = %d: one pod per group", s.Spec.Replicas, groups)
		}
		if g := env["DETECTOR_GROUP"]; g.Field != podIndexField {
			t.Errorf("DETECTOR_GROUP comes from %s, want the pod's ordinal (%s)", g.From, podIndexField)
		}
		if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
			t.Errorf("StatefulSet detector: podManagementPolicy %q, want Parallel (the groups are independent)", s.Spec.PodManagementPolicy)
		}
		if svc := r.Services[s.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("StatefulSet detector: serviceName %q must be a headless Service", s.Spec.ServiceName)
		}
		if len(s.Spec.VolumeClaimTemplates) > 0 {
			t.Errorf("StatefulSet detector: state is rebuilt by the warm-up; no volume claims")
		}
	})
}

// TestStreamReplicas: every program that creates JetStream streams or
// buckets asks for the same replica count, and production asks for 3.
func TestStreamReplicas(t *testing.T) {
	settings := map[string]string{
		"sessionsvc": "SESSIONSVC_STREAM_REPLICAS",
		"detector":   "STREAM_REPLICAS",
		"auditor":    "STREAM_REPLICAS",
		"alerter":    "ALERTER_BUCKET_REPLICAS",
	}
	forEach(t, func(t *testing.T, r *Rendered) {
		want := "1"
		if strings.HasSuffix(r.Dir, "production") {
			want = "3"
		}
		for _, w := range r.Workloads() {
			c := programContainer(w)
			prog, _ := Program(c)
			name := settings[prog]
			if got := containerEnv(t, r, c)[name].Value; got != want {
				t.Errorf("%s: %s = %q, want %s", w, name, got, want)
			}
		}
	})
}
