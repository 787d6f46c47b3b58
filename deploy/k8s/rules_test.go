package k8s_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/rules"
)

var update = flag.Bool("update", false, "rewrite base/detector/rules.yaml from rules.Default()")

const rulesPath = "base/detector/rules.yaml"

// ruleFields is the order the settings are written in: Rule's fields.
var ruleFields = []string{
	"name", "type", "severity", "action", "mode", "cooldown", "allow",
	"max_speed_kmh", "min_distance_km", "same_session_action",
	"window", "threshold", "scope", "distinct_users", "user_agent_change", "history",
}

// rulesYAML writes a rule set as a rules file with every setting spelled
// out, defaults included, so that operators see each knob.
func rulesYAML(t *testing.T, set *rules.Set) []byte {
	var b bytes.Buffer
	b.WriteString(`# The detector's rules (RULES_FILE): the built-in rules, rules.Default(),
# with every setting written out. Each rule has a name, a type, severity
# (low, medium, high, critical), action (alert, reauth, revoke_session,
# revoke_user), mode (enforce, or log_only to try a rule), cooldown and
# allow (cidrs, users, asns); the other settings belong to the rule's type
# (README, Detector).
#
# A change here renames the ConfigMap (kustomize adds a hash of the
# content), so the detectors restart with it: their warm-up replays the
# recent history without acting, so no window or cooldown is lost. Keep
# your own rules in an overlay (configMapGenerator detector-rules,
# behavior: replace) rather than editing this file, which
# go test ./deploy/k8s -run TestRulesFile -update regenerates.
rules:
`)
	for _, r := range set.Rules {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for i, f := range ruleFields {
			v, ok := m[f]
			if !ok {
				continue
			}
			delete(m, f)
			if f == "allow" {
				if a, _ := v.(map[string]any); len(a) == 0 {
					continue
				}
				t.Fatalf("rule %s: built-in rules have no allow-list; teach rulesYAML to write one", r.Name)
			}
			prefix := "    "
			if i == 0 {
				prefix = "  - "
			}
			fmt.Fprintf(&b, "%s%s: %s\n", prefix, f, yamlScalar(t, f, v))
		}
		if len(m) > 0 {
			t.Fatalf("rule %s: fields %v are not in ruleFields", r.Name, m)
		}
	}
	return b.Bytes()
}

func yamlScalar(t *testing.T, field string, v any) string {
	switch v := v.(type) {
	case string:
		if d, err := time.ParseDuration(v); err == nil && strings.ContainsAny(v, "hms") {
			return shortDuration(d)
		}
		if _, err := strconv.ParseFloat(v, 64); err == nil || v == "" || strings.ContainsAny(v, ":#{}[],&*?|<>=!%@`'\"") {
			return strconv.Quote(v)
		}
		return v
	case json.Number, bool:
		return fmt.Sprint(v)
	}
	t.Fatalf("%s: cannot write %T", field, v)
	return ""
}

// shortDuration writes 10m rather than 10m0s, 720h rather than 720h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TestRulesFile: the base ships the built-in rules as a file that
// rules.Parse accepts, rule for rule the same settings (the same versions)
// as rules.Default(); every rendered rules ConfigMap parses.
func TestRulesFile(t *testing.T) {
	want := rules.Default()
	if *update {
		if err := os.WriteFile(rulesPath, rulesYAML(t, want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rules.Parse(rulesPath, data)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	if len(got.Rules) != len(want.Rules) {
		t.Fatalf("%s has %d rules, the built-in set %d (regenerate with -update)", rulesPath, len(got.Rules), len(want.Rules))
	}
	for i, w := range want.Rules {
		if g := got.Rules[i]; g.Name != w.Name || g.Version != w.Version {
			t.Errorf("%s: rule %d is %s version %s, the built-in %s version %s (regenerate with -update)",
				rulesPath, i, g.Name, g.Version, w.Name, w.Version)
		}
	}
	if got.Version() != want.Version() {
		t.Errorf("%s: set version %s, built-in %s", rulesPath, got.Version(), want.Version())
	}

	forEach(t, func(t *testing.T, r *Rendered) {
		n := 0
		for name, cm := range r.ConfigMaps {
			if !strings.HasPrefix(name, "detector-rules") {
				continue
			}
			n++
			if _, err := rules.Parse(name+"/rules.yaml", []byte(cm.Data["rules.yaml"])); err != nil {
				t.Errorf("ConfigMap %s: %v", name, err)
			}
		}
		if n != 1 {
			t.Errorf("%d rules ConfigMaps, want 1", n)
		}
	})
}
