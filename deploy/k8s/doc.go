// Package k8s holds sessionmon's Kubernetes manifests (a kustomize base,
// a GeoIP component, an opt-in NATS TLS component and a production
// overlay) and their tests: every
// object rendered by kustomize is decoded strictly into the Kubernetes API
// types, the pods are checked for their security settings and probes, the
// environment each container sets is checked against the variables its
// program reads, and the network policies are evaluated pod to pod.
//
//	go test ./deploy/k8s/
//	go test ./deploy/k8s/ -run TestRulesFile -update   # rewrite base/detector/rules.yaml
package k8s
