package k8s_test

import (
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// credential names variables whose values are secrets (or URLs that carry
// them): they come from Secrets, never from literals or ConfigMaps.
var credential = regexp.MustCompile(`^(REDIS_URL|NATS_URL|CLICKHOUSE_URL|SLACK_WEBHOOK_URL)$|SECRET|PASSWORD|TOKEN|(API|LICENSE|IP)_KEY$|ACCOUNT_ID$`)

// SecretRef is a key of a Secret that a pod uses.
type SecretRef struct{ Secret, Key string }

// secretRefs lists the Secret keys the workloads use, with whether each is
// optional, from variables and volumes.
func secretRefs(t *testing.T, r *Rendered) map[SecretRef]bool {
	refs := map[SecretRef]bool{}
	for _, w := range r.Workloads() {
		for _, c := range allContainers(&w.Pod.Spec) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					s := e.ValueFrom.SecretKeyRef
					refs[SecretRef{s.Name, s.Key}] = s.Optional != nil && *s.Optional
				}
			}
		}
		for _, v := range w.Pod.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if len(v.Secret.Items) == 0 {
				t.Errorf("%s: volume %s mounts all of Secret %s: list the keys (items)", w, v.Name, v.Secret.SecretName)
			}
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
				t.Errorf("%s: volume %s: Secret files must not be world-readable (defaultMode 0440)", w, v.Name)
			}
			for _, it := range v.Secret.Items {
				refs[SecretRef{v.Secret.SecretName, it.Key}] = v.Secret.Optional != nil && *v.Secret.Optional
			}
		}
	}
	return refs
}

// readmeSection returns a "## " section of the repository's README.
func readmeSection(t *testing.T, title string) string {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

var createSecret = regexp.MustCompile(`kubectl(?: -n \S+)? create secret generic (\S+)([^\n]*)`)
var fromKey = regexp.MustCompile(`--from-(?:literal|file)=([^ =]+)=`)

// documentedSecrets reads the kubectl create secret commands of the README's
// Kubernetes section: Secret name -> keys.
func documentedSecrets(t *testing.T) map[string]map[string]bool {
	text := strings.ReplaceAll(readmeSection(t, "Deploying to Kubernetes"), "\\\n", " ")
	text = regexp.MustCompile(` +`).ReplaceAllString(text, " ")
	out := map[string]map[string]bool{}
	for _, m := range createSecret.FindAllStringSubmatch(text, -1) {
		keys := map[string]bool{}
		for _, k := range fromKey.FindAllStringSubmatch(m[2], -1) {
			keys[k[1]] = true
		}
		out[m[1]] = keys
	}
	return out
}

// TestSecrets: no Secret is in the manifests (render refuses them); every
// Secret key a pod uses is created by the README's instructions; secrets
// reach containers only by secretKeyRef or volumes, never as literals or
// ConfigMap values; ConfigMaps hold no URL with credentials.
func TestSecrets(t *testing.T) {
	documented := documentedSecrets(t)
	if len(documented) == 0 {
		t.Fatal("the README's Kubernetes section creates no Secret")
	}
	forEach(t, func(t *testing.T, r *Rendered) {
		refs := secretRefs(t, r)
		var missing []string
		for ref := range refs {
			if !documented[ref.Secret][ref.Key] {
				missing = append(missing, ref.Secret+"/"+ref.Key)
			}
		}
		sort.Strings(missing)
		for _, m := range missing {
			t.Errorf("Secret key %s is used but the README (Deploying to Kubernetes) does not create it", m)
		}
		for _, w := range r.Workloads() {
			for _, c := range allContainers(&w.Pod.Spec) {
				for name, v := range containerEnv(t, r, c) {
					if credential.MatchString(name) && v.Secret == nil {
						t.Errorf("%s container %s: %s comes from %s; secrets come from a Secret", w, c.Name, name, v.From)
					}
				}
			}
		}
		for _, cm := range r.ConfigMaps {
			for k, v := range cm.Data {
				if credential.MatchString(k) {
					t.Errorf("ConfigMap %s: %s belongs in a Secret", cm.Name, k)
				}
				if u, err := url.Parse(v); err == nil && u.User != nil {
					t.Errorf("ConfigMap %s: %s is a URL with credentials", cm.Name, k)
				}
			}
		}
	})
	// Every documented Secret is one some render uses: no stale instructions.
	used := map[string]bool{}
	for _, dir := range targets {
		for ref := range secretRefs(t, render(t, dir)) {
			used[ref.Secret+"/"+ref.Key] = true
		}
	}
	for name, keys := range documented {
		for k := range keys {
			if !used[name+"/"+k] {
				t.Errorf("the README creates %s/%s, which no manifest uses", name, k)
			}
		}
	}
}
