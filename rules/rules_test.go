package rules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/rules"
)

func TestDefaults(t *testing.T) {
	s := rules.Default()
	want := map[string]rules.Type{
		"impossible-travel": rules.ImpossibleTravel, "shared-session": rules.SharedSession,
		"session-burst": rules.RequestBurst, "ip-burst": rules.RequestBurst, "brute-force": rules.BruteForce,
		"credential-stuffing": rules.CredentialStuffing, "new-country": rules.NewCountry,
	}
	if len(s.Rules) != len(want) {
		t.Fatalf("%d built-in rules", len(s.Rules))
	}
	for _, r := range s.Rules {
		if want[r.Name] != r.Type || r.Version == "" || r.Mode != rules.Enforce {
			t.Errorf("rule %+v", r)
		}
	}
	it := s.ByType(rules.ImpossibleTravel)[0]
	if it.MaxSpeedKmh != 1000 || it.MinDistanceKm != 100 || it.Action != rules.ActionReauth || it.SameSessionAction != rules.ActionRevokeSession {
		t.Errorf("impossible travel %+v", it)
	}
	bf := s.ByType(rules.BruteForce)[0]
	if bf.Threshold != 10 || bf.Window.D() != 5*time.Minute {
		t.Errorf("brute force %+v", bf)
	}
	cs := s.ByType(rules.CredentialStuffing)[0]
	if cs.DistinctUsers != 20 || cs.Window.D() != 5*time.Minute {
		t.Errorf("credential stuffing %+v", cs)
	}
	if nc := s.ByType(rules.NewCountry)[0]; nc.History.D() != 30*24*time.Hour || nc.Severity != rules.Low {
		t.Errorf("new country %+v", nc)
	}
	for _, b := range s.ByType(rules.RequestBurst) {
		if b.Threshold != 100 || b.Window.D() != 10*time.Second {
			t.Errorf("burst %+v", b)
		}
	}
	if sh := s.ByType(rules.SharedSession)[0]; sh.Window.D() != 5*time.Minute || !*sh.UserAgentChange {
		t.Errorf("shared session %+v", sh)
	}
}

func TestParse(t *testing.T) {
	s, err := rules.Parse("r.yaml", []byte(`
rules:
  - name: travel
    type: impossible_travel
    severity: critical
    action: revoke_session
    mode: log_only
    cooldown: 1h
    max_speed_kmh: 800
    allow:
      cidrs: [10.0.0.0/8, 192.0.2.7]
      users: [svc-backup]
      asns: [9009]
  - name: bursts
    type: request_burst
    scope: ip
    threshold: 50
    window: 1s
`))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rules[0]
	if r.Line != 3 || r.MaxSpeedKmh != 800 || r.MinDistanceKm != 100 || r.Mode != rules.LogOnly || r.Cooldown.D() != time.Hour || r.SameSessionAction != rules.ActionRevokeSession {
		t.Fatalf("rule %+v", r)
	}
	if !r.Allow.AllowsUser("svc-backup") || !r.Allow.AllowsASN(9009) || r.Allow.AllowsASN(0) {
		t.Fatal("allow list")
	}
	b := s.Rules[1]
	if b.Scope != rules.ScopeIP || b.Threshold != 50 || b.Window.D() != time.Second || b.Severity != rules.Medium || b.Action != rules.ActionAlert {
		t.Fatalf("burst %+v", b)
	}
	// The version changes with any setting.
	s2, _ := rules.Parse("r.yaml", []byte("rules:\n  - {name: bursts, type: request_burst, scope: ip, threshold: 51, window: 1s}\n"))
	if s2.Rules[0].Version == b.Version {
		t.Fatal("version did not change with the threshold")
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{``, `r.yaml: empty file`},
		{`rules: []`, `r.yaml: no rules: the file must have a non-empty 'rules' list`},
		{`rulez: []`, `r.yaml:1: field rulez not found at the top level (want 'rules')`},
		{"rules:\n  - name: a\n    type: teleport\n", `r.yaml:3: rule "a": type: must be one of [impossible_travel shared_session request_burst brute_force credential_stuffing new_country], got "teleport"`},
		{"rules:\n  - type: brute_force\n", `r.yaml:2: name: required`},
		{"rules:\n  - name: a\n    type: brute_force\n    threshhold: 3\n", `r.yaml:4: field threshhold not found in a rule`},
		{"rules:\n  - name: a\n    type: brute_force\n    threshold: -1\n", `r.yaml:4: rule "a": threshold: must be at least 1, got -1`},
		{"rules:\n  - name: a\n    type: brute_force\n    threshold: many\n", "r.yaml:4: cannot unmarshal !!str `many` into int"},
		{"rules:\n  - name: a\n    type: brute_force\n    window: soon\n", `r.yaml:4: "soon" is not a duration such as 30s, 5m or 720h`},
		{"rules:\n  - name: a\n    type: brute_force\n    window: -5m\n", `r.yaml:4: rule "a": window: must be positive`},
		{"rules:\n  - name: a\n    type: brute_force\n    severity: urgent\n", `r.yaml:4: rule "a": severity: must be low, medium, high or critical, got "urgent"`},
		{"rules:\n  - name: a\n    type: brute_force\n    action: ban\n", `r.yaml:4: rule "a": action: must be alert, reauth, revoke_session or revoke_user, got "ban"`},
		{"rules:\n  - name: a\n    type: brute_force\n    mode: dry\n", `r.yaml:4: rule "a": mode: must be enforce or log_only, got "dry"`},
		{"rules:\n  - name: a\n    type: brute_force\n    max_speed_kmh: 5\n", `r.yaml:4: rule "a": max_speed_kmh: does not apply to rules of type brute_force`},
		{"rules:\n  - name: a\n    type: request_burst\n    scope: user\n", `r.yaml:4: rule "a": scope: must be session or ip, got "user"`},
		{"rules:\n  - name: a\n    type: impossible_travel\n    max_speed_kmh: -1\n", `r.yaml:4: rule "a": max_speed_kmh: must be positive`},
		{"rules:\n  - name: a\n    type: impossible_travel\n    same_session_action: nuke\n", `r.yaml:4: rule "a": same_session_action: must be alert, reauth, revoke_session or revoke_user, got "nuke"`},
		{"rules:\n  - name: a\n    type: credential_stuffing\n    distinct_users: 1\n", `r.yaml:4: rule "a": distinct_users: must be at least 2, got 1`},
		{"rules:\n  - name: a\n    type: new_country\n    allow:\n      cidrs: [10.0.0.0/33]\n", `r.yaml:4: rule "a": allow.cidrs: "10.0.0.0/33" is not a CIDR or an IP address`},
		{"rules:\n  - name: a\n    type: new_country\n  - name: a\n    type: brute_force\n", `r.yaml:4: rule "a": name: used twice (first on line 2)`},
		{"rules:\n  - name: a\n   type: x\n", `r.yaml:1: did not find expected '-' indicator`},
	}
	for _, c := range cases {
		_, err := rules.Parse("r.yaml", []byte(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("%q:\n got  %v\n want %s", c.in, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("rules:\n  - name: a\n    type: brute_force\n    threshold: 3\n    window: 1m\n"))
	f.Add([]byte("rules:\n  - {name: t, type: impossible_travel, allow: {cidrs: [10.0.0.0/8], asns: [1]}}\n"))
	f.Add([]byte("rules: [{name: b, type: request_burst, scope: ip}]"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := rules.Parse("f.yaml", in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, r := range s.Rules {
			if err := r.Validate(); err != nil {
				t.Fatalf("accepted rule does not re-validate: %v", err)
			}
		}
	})
}
