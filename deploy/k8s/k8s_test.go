package k8s_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	namespace   = "sessionmon"
	imagePrefix = "ghcr.io/sessionmon/"
)

// The kustomizations under test; each renders a complete deployment.
var targets = []string{"base", "overlays/production"}

// ServiceMonitor is the Prometheus Operator's resource, whose types are
// not in k8s.io/api: this struct is the allow-list of the fields the
// manifests may use, decoded as strictly as the rest.
type ServiceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to a new typed object. Anything else in the
// output is an error: a new kind needs its type here first.
var kinds = map[string]func() any{
	"v1/Namespace":                            func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                       func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &ServiceMonitor{} },
}

// Rendered is one kustomization's output, decoded.
type Rendered struct {
	Dir             string
	Namespaces      []*corev1.Namespace
	ServiceAccounts map[string]*corev1.ServiceAccount
	ConfigMaps      map[string]*corev1.ConfigMap
	Services        map[string]*corev1.Service
	Deployments     map[string]*appsv1.Deployment
	StatefulSets    map[string]*appsv1.StatefulSet
	HPAs            map[string]*autoscalingv2.HorizontalPodAutoscaler
	PDBs            map[string]*policyv1.PodDisruptionBudget
	NetworkPolicies []*networkingv1.NetworkPolicy
	ServiceMonitors map[string]*ServiceMonitor
	// Meta is every object's kind and metadata.
	Meta []KindMeta
}

// KindMeta is an object's kind and metadata.
type KindMeta struct {
	Kind string
	Meta *metav1.ObjectMeta
}

// Workload is a Deployment or StatefulSet seen through its pod template.
type Workload struct {
	Kind, Name string
	Selector   *metav1.LabelSelector
	Replicas   *int32
	Pod        *corev1.PodTemplateSpec
}

func (w Workload) String() string { return w.Kind + "/" + w.Name }

// Workloads lists the Deployments and StatefulSets, by name.
func (r *Rendered) Workloads() []Workload {
	var out []Workload
	for _, d := range r.Deployments {
		out = append(out, Workload{"Deployment", d.Name, d.Spec.Selector, d.Spec.Replicas, &d.Spec.Template})
	}
	for _, s := range r.StatefulSets {
		out = append(out, Workload{"StatefulSet", s.Name, s.Spec.Selector, s.Spec.Replicas, &s.Spec.Template})
	}
	slices.SortFunc(out, func(a, b Workload) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Program is a container running one of sessionmon's images: the program
// is the image's last path element (ghcr.io/sessionmon/detector:0.1.0 is
// detector). ok is false for other images (sidecars).
func Program(c *corev1.Container) (string, bool) {
	rest, ok := strings.CutPrefix(c.Image, imagePrefix)
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, ":")
	name, _, _ = strings.Cut(name, "@")
	return name, true
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]*Rendered{}
)

// render builds a kustomization from the real files with kustomize's own
// library and decodes every object strictly into its API type: unknown or
// duplicate fields, or a field in the wrong case, are errors.
func render(t *testing.T, dir string) *Rendered {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if r, ok := renderCache[dir]; ok {
		return r
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	r := &Rendered{
		Dir:             dir,
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		ConfigMaps:      map[string]*corev1.ConfigMap{},
		Services:        map[string]*corev1.Service{},
		Deployments:     map[string]*appsv1.Deployment{},
		StatefulSets:    map[string]*appsv1.StatefulSet{},
		HPAs:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		PDBs:            map[string]*policyv1.PodDisruptionBudget{},
		ServiceMonitors: map[string]*ServiceMonitor{},
	}
	seen := map[string]bool{}
	for _, res := range m.Resources() {
		kind := res.GetApiVersion() + "/" + res.GetKind()
		id := fmt.Sprintf("%s %s/%s", dir, res.GetKind(), res.GetName())
		if res.GetKind() == "Secret" {
			t.Fatalf("%s: Secrets are referenced, never committed (document them in the README instead)", id)
		}
		newObj, ok := kinds[kind]
		if !ok {
			t.Fatalf("%s: apiVersion/kind %s is not one the tests know; add its type to kinds", id, kind)
		}
		if seen[id] {
			t.Fatalf("%s: twice in the output", id)
		}
		seen[id] = true
		data, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		obj := newObj()
		strict, err := sigsjson.UnmarshalStrict(data, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if len(strict) > 0 {
			t.Fatalf("%s: not a valid %s: %v", id, kind, strict)
		}
		if ns := res.GetNamespace(); res.GetKind() != "Namespace" && ns != namespace {
			t.Errorf("%s: namespace %q, want %q", id, ns, namespace)
		}
		if sm, ok := obj.(*ServiceMonitor); ok {
			r.Meta = append(r.Meta, KindMeta{res.GetKind(), &sm.Metadata})
		} else {
			r.Meta = append(r.Meta, KindMeta{res.GetKind(), reflectMeta(obj)})
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			r.Namespaces = append(r.Namespaces, o)
		case *corev1.ServiceAccount:
			r.ServiceAccounts[o.Name] = o
		case *corev1.ConfigMap:
			r.ConfigMaps[o.Name] = o
		case *corev1.Service:
			r.Services[o.Name] = o
		case *appsv1.Deployment:
			r.Deployments[o.Name] = o
		case *appsv1.StatefulSet:
			r.StatefulSets[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.HPAs[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.PDBs[o.Name] = o
		case *networkingv1.NetworkPolicy:
			r.NetworkPolicies = append(r.NetworkPolicies, o)
		case *ServiceMonitor:
			r.ServiceMonitors[o.Metadata.Name] = o
		}
	}
	renderCache[dir] = r
	return r
}

// reflectMeta returns the ObjectMeta of a k8s.io/api object.
func reflectMeta(obj any) *metav1.ObjectMeta {
	return obj.(interface{ GetObjectMeta() metav1.Object }).GetObjectMeta().(*metav1.ObjectMeta)
}

// forEach runs f as a subtest for each kustomization.
func forEach(t *testing.T, f func(t *testing.T, r *Rendered)) {
	for _, dir := range targets {
		t.Run(filepath.Base(dir), func(t *testing.T) { f(t, render(t, dir)) })
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

// TestRender renders every kustomization: each object decodes strictly into
// its type (see render), and the set of objects is the one an operator
// expects.
func TestRender(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		if len(r.Namespaces) != 1 || r.Namespaces[0].Name != namespace {
			t.Errorf("want the one Namespace %s", namespace)
		}
		for _, name := range []string{"sessionsvc", "alerter", "auditor"} {
			if r.Deployments[name] == nil {
				t.Errorf("no Deployment %s", name)
			}
		}
		if r.StatefulSets["detector"] == nil {
			t.Errorf("no StatefulSet detector")
		}
		if r.HPAs["sessionsvc"] == nil || r.PDBs["sessionsvc"] == nil {
			t.Errorf("the session service needs a HorizontalPodAutoscaler and a PodDisruptionBudget")
		}
		for _, km := range r.Meta {
			checkMeta(t, km)
		}
		for _, w := range r.Workloads() {
			checkNames(t, w)
			if r.Services[w.Name] == nil {
				t.Errorf("%s has no Service", w)
			}
			if r.ServiceMonitors[w.Name] == nil {
				t.Errorf("%s has no ServiceMonitor", w)
			}
			if r.PDBs[w.Name] == nil {
				t.Errorf("%s has no PodDisruptionBudget", w)
			}
		}
	})
}

// checkMeta validates what the API server would: names and labels.
func checkMeta(t *testing.T, km KindMeta) {
	t.Helper()
	where := km.Kind + "/" + km.Meta.Name
	nameErrs := validation.IsDNS1123Subdomain(km.Meta.Name)
	if km.Kind == "Service" || km.Kind == "Namespace" {
		nameErrs = validation.IsDNS1123Label(km.Meta.Name)
	}
	for _, e := range nameErrs {
		t.Errorf("%s: name: %s", where, e)
	}
	for k, v := range km.Meta.Labels {
		for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s: label %s=%s: %s", where, k, v, e)
		}
	}
}

// checkNames validates the names inside a pod template.
func checkNames(t *testing.T, w Workload) {
	t.Helper()
	bad := func(what string, errs []string) {
		for _, e := range errs {
			t.Errorf("%s: %s: %s", w, what, e)
		}
	}
	for k, v := range w.Pod.Labels {
		bad("pod label "+k, append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...))
	}
	for _, v := range w.Pod.Spec.Volumes {
		bad("volume "+v.Name, validation.IsDNS1123Label(v.Name))
	}
	for _, c := range allContainers(&w.Pod.Spec) {
		bad("container "+c.Name, validation.IsDNS1123Label(c.Name))
		for _, p := range c.Ports {
			bad("port "+p.Name, validation.IsValidPortName(p.Name))
			bad("port "+p.Name, validation.IsValidPortNum(int(p.ContainerPort)))
		}
		for _, e := range c.Env {
			bad("env "+e.Name, validation.IsEnvVarName(e.Name))
		}
	}
}
