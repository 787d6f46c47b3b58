package k8s_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pod is a pod somewhere in the cluster, for evaluating policies.
type Pod struct {
	Name      string
	Namespace map[string]string // the namespace's labels, kubernetes.io/metadata.name included
	Labels    map[string]string
}

func ns(name string, extra ...string) map[string]string {
	m := map[string]string{"kubernetes.io/metadata.name": name}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// The data services' pods, with the labels their operators and charts give
// them (see the comments in base/networkpolicies), and other pods.
var (
	redisPod      = Pod{"redis-0", ns(namespace), map[string]string{"app": "redis", "redis_setup_type": "replication", "role": "replication", "redis-role": "master"}}
	sentinelPod   = Pod{"redis-sentinel-0", ns(namespace), map[string]string{"app": "redis-sentinel", "redis_setup_type": "sentinel", "role": "sentinel"}}
	natsPod       = Pod{"nats-0", ns(namespace), map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats"}}
	natsBoxPod    = Pod{"nats-box", ns(namespace), map[string]string{"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats", "app.kubernetes.io/component": "nats-box"}}
	clickhousePod = Pod{"chi-sessionmon-0-0-0", ns(namespace), map[string]string{"clickhouse.altinity.com/chi": "sessionmon", "clickhouse.altinity.com/app": "chop"}}
	// An unlabelled pod of this namespace, and one of another namespace.
	strayPod   = Pod{"stray", ns(namespace), map[string]string{"app": "stray"}}
	foreignPod = Pod{"foreign", ns("elsewhere"), map[string]string{"app": "foreign"}}
	// Apps allowed to call the session service: a labelled pod here, any
	// pod of a labelled namespace.
	clientPod    = Pod{"shop-here", ns(namespace), map[string]string{"app": "shop", "sessionmon.io/sessionsvc-client": "true"}}
	clientNSPod  = Pod{"shop", ns("shop", "sessionmon.io/sessionsvc-client", "true"), map[string]string{"app": "shop"}}
	prometheus   = Pod{"prometheus", ns("monitoring"), map[string]string{"app.kubernetes.io/name": "prometheus"}}
	grafana      = Pod{"grafana", ns("monitoring"), map[string]string{"app.kubernetes.io/name": "grafana"}}
	ingressNginx = Pod{"ingress-nginx", ns("ingress-nginx"), map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
	coreDNS      = Pod{"coredns", ns("kube-system"), map[string]string{"k8s-app": "kube-dns"}}
)

// Reach evaluates the NetworkPolicies of the namespace for a TCP or UDP
// connection from one pod to another: the source's egress and the
// destination's ingress must both allow it (pods outside the namespace are
// not restricted by these policies).
func Reach(t *testing.T, pols []*networkingv1.NetworkPolicy, from, to Pod, port int32, proto corev1.Protocol) bool {
	return allows(t, pols, from, to, port, proto, networkingv1.PolicyTypeEgress) &&
		allows(t, pols, to, from, port, proto, networkingv1.PolicyTypeIngress)
}

// allows reports whether the policies selecting pod let it talk to peer in
// the given direction: true when none of them isolates it.
func allows(t *testing.T, pols []*networkingv1.NetworkPolicy, pod, peer Pod, port int32, proto corev1.Protocol, dir networkingv1.PolicyType) bool {
	if pod.Namespace["kubernetes.io/metadata.name"] != namespace {
		return true
	}
	isolated := false
	for _, p := range pols {
		if !selects(t, &p.Spec.PodSelector, pod.Labels) || !slices.Contains(policyTypes(p), dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, rule := range p.Spec.Ingress {
				if peersMatch(t, p, rule.From, peer) && portsMatch(t, p, rule.Ports, port, proto) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Egress {
				if peersMatch(t, p, rule.To, peer) && portsMatch(t, p, rule.Ports, port, proto) {
					return true
				}
			}
		}
	}
	return !isolated
}

func policyTypes(p *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(p.Spec.PolicyTypes) > 0 {
		return p.Spec.PolicyTypes
	}
	types := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(p.Spec.Egress) > 0 {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return types
}

func peersMatch(t *testing.T, p *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, pod Pod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			// Pods have cluster (private) addresses: checked apart, in
			// TestNetworkPolicyIPBlocks, that the blocks leave them out.
			continue
		}
		nsOK := pod.Namespace["kubernetes.io/metadata.name"] == p.Namespace
		if peer.NamespaceSelector != nil {
			nsOK = selects(t, peer.NamespaceSelector, pod.Namespace)
		}
		podOK := peer.PodSelector == nil || selects(t, peer.PodSelector, pod.Labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func portsMatch(t *testing.T, p *networkingv1.NetworkPolicy, ports []networkingv1.NetworkPolicyPort, port int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		want := corev1.ProtocolTCP
		if pp.Protocol != nil {
			want = *pp.Protocol
		}
		if want != proto {
			continue
		}
		if pp.Port == nil {
			return true
		}
		if pp.Port.Type != intstr.Int {
			t.Fatalf("NetworkPolicy %s: port %q: use numbers, so the policy reads the same for every pod", p.Name, pp.Port.StrVal)
		}
		end := pp.Port.IntVal
		if pp.EndPort != nil {
			end = *pp.EndPort
		}
		if port >= pp.Port.IntVal && port <= end {
			return true
		}
	}
	return false
}

// TestNetworkPolicies evaluates the policies pod to pod: only the right
// programs reach Redis, NATS and ClickHouse, only the right callers reach
// the session service, and the rest of the namespace reaches nothing.
func TestNetworkPolicies(t *testing.T) {
	forEach(t, func(t *testing.T, r *Rendered) {
		app := map[string]Pod{}
		for _, w := range r.Workloads() {
			app[w.Name] = Pod{w.Name, ns(namespace), w.Pod.Labels}
		}
		sessionsvc, detector, alerterPod, auditor := app["sessionsvc"], app["detector"], app["alerter"], app["auditor"]
		tcp := corev1.ProtocolTCP
		cases := []struct {
			from, to Pod
			port     int32
			want     bool
		}{
			// Redis: the session service only (and its own replication).
			{sessionsvc, redisPod, 6379, true},
			{detector, redisPod, 6379, false},
			{alerterPod, redisPod, 6379, false},
			{auditor, redisPod, 6379, false},
			{strayPod, redisPod, 6379, false},
			{foreignPod, redisPod, 6379, false},
			{clientPod, redisPod, 6379, false},
			{redisPod, redisPod, 6379, true},
			{sentinelPod, redisPod, 6379, true},
			{prometheus, redisPod, 6379, false},
			{prometheus, redisPod, 9121, true},
			// NATS: the four programs.
			{sessionsvc, natsPod, 4222, true},
			{detector, natsPod, 4222, true},
			{alerterPod, natsPod, 4222, true},
			{auditor, natsPod, 4222, true},
			{natsBoxPod, natsPod, 4222, true},
			{natsPod, natsPod, 6222, true},
			{strayPod, natsPod, 4222, false},
			{foreignPod, natsPod, 4222, false},
			{clientPod, natsPod, 4222, false},
			{sessionsvc, natsPod, 6222, false},
			{prometheus, natsPod, 7777, true},
			// ClickHouse: the audit writer and the alerter (timelines).
			{auditor, clickhousePod, 9000, true},
			{alerterPod, clickhousePod, 9000, true},
			{sessionsvc, clickhousePod, 9000, false},
			{detector, clickhousePod, 9000, false},
			{strayPod, clickhousePod, 9000, false},
			{foreignPod, clickhousePod, 9000, false},
			{prometheus, clickhousePod, 9000, false},
			{grafana, clickhousePod, 9000, true},
			// The session service: the detector, the alerter, the apps.
			{detector, sessionsvc, 8080, true},
			{alerterPod, sessionsvc, 8080, true},
			{clientPod, sessionsvc, 8080, true},
			{clientNSPod, sessionsvc, 8080, true},
			{auditor, sessionsvc, 8080, false},
			{strayPod, sessionsvc, 8080, false},
			{foreignPod, sessionsvc, 8080, false},
			{prometheus, sessionsvc, 8080, false},
			{prometheus, sessionsvc, 9090, true},
			{clientPod, sessionsvc, 9090, false},
			{detector, sessionsvc, 9090, false},
			// The others: Prometheus, and the console through the ingress.
			{prometheus, detector, 8081, true},
			{prometheus, auditor, 8082, true},
			{prometheus, alerterPod, 8090, true},
			{ingressNginx, alerterPod, 8090, true},
			{strayPod, alerterPod, 8090, false},
			{clientPod, detector, 8081, false},
			{sessionsvc, detector, 8081, false},
			{strayPod, auditor, 8082, false},
			// The programs between themselves: only what they use.
			{sessionsvc, alerterPod, 8090, false},
			{detector, auditor, 8082, false},
		}
		for _, c := range cases {
			if got := Reach(t, r.NetworkPolicies, c.from, c.to, c.port, tcp); got != c.want {
				t.Errorf("%s -> %s:%d allowed = %v, want %v", c.from.Name, c.to.Name, c.port, got, c.want)
			}
		}
		for _, p := range app {
			// Isolated both ways: what is not allowed above is denied.
			for _, dir := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
				isolated := false
				for _, pol := range r.NetworkPolicies {
					isolated = isolated || (selects(t, &pol.Spec.PodSelector, p.Labels) && slices.Contains(policyTypes(pol), dir))
				}
				if !isolated {
					t.Errorf("%s: no policy isolates its %s", p.Name, dir)
				}
			}
			if !Reach(t, r.NetworkPolicies, p, coreDNS, 53, corev1.ProtocolUDP) {
				t.Errorf("%s cannot resolve names (UDP 53 to kube-dns)", p.Name)
			}
		}
	})
}

// TestNetworkPolicyIPBlocks: egress to addresses (webhooks, MaxMind) is
// HTTPS to public addresses only, never into the cluster's private ranges.
func TestNetworkPolicyIPBlocks(t *testing.T) {
	private := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"}
	forEach(t, func(t *testing.T, r *Rendered) {
		for _, p := range r.NetworkPolicies {
			if len(p.Spec.Ingress) > 0 {
				for _, rule := range p.Spec.Ingress {
					for _, peer := range rule.From {
						if peer.IPBlock != nil {
							t.Errorf("NetworkPolicy %s: ingress from an ipBlock", p.Name)
						}
					}
				}
			}
			for _, rule := range p.Spec.Egress {
				for _, peer := range rule.To {
					b := peer.IPBlock
					if b == nil {
						continue
					}
					where := fmt.Sprintf("NetworkPolicy %s: egress to %s", p.Name, b.CIDR)
					if _, err := netip.ParsePrefix(b.CIDR); err != nil {
						t.Errorf("%s: %v", where, err)
					}
					for _, priv := range private {
						if !slices.Contains(b.Except, priv) {
							t.Errorf("%s: must except %s", where, priv)
						}
					}
					if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntVal != 443 {
						t.Errorf("%s: only port 443", where)
					}
				}
			}
		}
	})
}
