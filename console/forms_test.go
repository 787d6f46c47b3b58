package console

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
)

func TestParseFilter(t *testing.T) {
	q, _ := url.ParseQuery("severity=high&rule=impossible-travel&state=resolved&user=%20alice%20&from=2026-11-22T10:00&to=2026-11-23T00:00:00Z")
	f, form, problems := parseFilter(q)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	if f.Severity != "high" || f.Rule != "impossible-travel" || len(f.States) != 1 || f.States[0] != alerter.Resolved || f.User != "alice" ||
		!f.From.Equal(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)) || !f.To.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("filter %+v", f)
	}
	if form.To != "2026-11-23T00:00" || form.query() != "from=2026-11-22T10%3A00&rule=impossible-travel&severity=high&state=resolved&to=2026-11-23T00%3A00&user=alice" {
		t.Fatalf("form %+v → %s", form, form.query())
	}
	f, form, _ = parseFilter(url.Values{})
	if len(f.States) != 2 || form.State != stateActive {
		t.Fatalf("default: active incidents, got %+v", f.States)
	}
	f, _, _ = parseFilter(url.Values{"state": {"all"}})
	if len(f.States) != 0 {
		t.Fatalf("all: %+v", f.States)
	}
	_, _, problems = parseFilter(url.Values{"severity": {"urgent"}, "state": {"gone"}, "from": {"yesterday"}, "user": {"a\x00b"},
		"to": {"2000-01-01T00:00"}})
	if got := strings.Join(problems, "; "); got != "severity: want low, medium, high or critical; "+
		"state: want active, open, acknowledged, resolved, false_positive or all; user: too long or not text; "+
		"from: want a date and time such as 2026-11-22T10:00 (UTC)" {
		t.Fatalf("problems: %s", got)
	}
}

func TestParseDecision(t *testing.T) {
	d, err := parseDecision(url.Values{"decision": {"false_positive"}, "note": {"  VPN\r\nexit  "}})
	if err != nil || d.Decision != alerter.MarkFalsePositive || d.Note != "VPN\nexit" {
		t.Fatalf("%+v %v", d, err)
	}
	for _, bad := range []url.Values{
		{"decision": {"delete"}},
		{"decision": {"resolve"}, "note": {strings.Repeat("x", 2001)}},
		{"decision": {"resolve"}, "note": {"\x1b[31m"}},
		{"decision": {"resolve"}, "note": {"\xff"}},
	} {
		if _, err := parseDecision(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if _, err := parseSessionAction(url.Values{"session_id": {"../x"}}, true); err == nil {
		t.Error("bad session ID accepted")
	}
	if sf, err := parseSessionAction(url.Values{"session_id": {"07AbC-_x.1"}}, true); err != nil || sf.SessionID != "07AbC-_x.1" {
		t.Errorf("%+v %v", sf, err)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/alerts/x?state=all":  "/alerts/x?state=all",
		"":                     "/alerts",
		"//evil.example/":      "/alerts",
		"/\\evil.example":      "/alerts",
		"https://evil.example": "/alerts",
		"javascript:alert(1)":  "/alerts",
		"/ok\r\nSet-Cookie: x": "/alerts",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTrustedProxyIP(t *testing.T) {
	ip := TrustedProxyIP([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.5:1234", "198.51.100.1", "203.0.113.5"},                  // not from a proxy: the header is ignored
		{"10.0.0.2:1234", "198.51.100.1", "198.51.100.1"},                    // one trusted proxy
		{"10.0.0.2:1234", "6.6.6.6, 198.51.100.1, 10.0.0.9", "198.51.100.1"}, // the client's own prefix is ignored
		{"10.0.0.2:1234", "", "10.0.0.2"},
		{"10.0.0.2:1234", "garbage", "10.0.0.2"},
		{"[::ffff:10.0.0.2]:1234", "2001:db8::1", "2001:db8::1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := ip(r); got != c.want {
			t.Errorf("%s + %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("s3cret", Argon2Params{Memory: 64, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	ph, err := ParseHash(h)
	if err != nil {
		t.Fatal(err)
	}
	if !ph.Verify("s3cret") || ph.Verify("s3cret ") || ph.Verify("") {
		t.Fatal("argon2id verify")
	}
	// bcrypt, cost 10, of "s3cret" (made with bcrypt.GenerateFromPassword).
	bc, err := ParseHash("$2a$10$AZ0TvUdKPbiDdm3.hA/9yu7CqQiYgWLS/47mrXJcNbFH0Gg1NA.ha")
	if err != nil {
		t.Fatal(err)
	}
	if !bc.Verify("s3cret") || bc.Verify("S3cret") {
		t.Fatal("bcrypt verify")
	}
	for hash, want := range map[string]string{
		"plaintext": "not an argon2id ($argon2id$...) or bcrypt ($2b$...) hash (make one with: alerter hash-password)",
		"$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA":        "use argon2id, not argon2i or argon2d",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA":       `argon2id hash: version "v=16": want v=19`,
		"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA":  "argon2id hash: m=4194304: want 8 to 1048576 KiB",
		"$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA":           "argon2id hash: want m, t and p",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA":            "argon2id hash: salt: want 8 to 64 bytes of unpadded base64",
		"$2a$04$lbt14aYxvGjgoOfBhlgRWOP3VJtdaVXJ2XD/WvVrYqZzWikNbEnEW":         "bcrypt cost 4 is below 10",
		"$argon2id$v=19$m=64,t=1,p=1,p=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA":   `argon2id hash: parameter "p=2"`,
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA$extra": "argon2id hash: want $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>",
	} {
		_, err := ParseHash(hash)
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got  %v\n want %s", hash, err, want)
		}
	}
}

func TestNewAccountsErrors(t *testing.T) {
	_, err := NewAccounts([]alerter.ReviewerSpec{{Name: "a", Role: "responder", PasswordHash: "nope", File: "c.yaml", Line: 3}})
	if err == nil || !strings.HasPrefix(err.Error(), `c.yaml:3: reviewer "a": password_hash: not an argon2id`) {
		t.Fatalf("error: %v", err)
	}
	if _, err := NewAccounts(nil); err == nil {
		t.Fatal("no reviewers accepted")
	}
}

func FuzzParseFilter(f *testing.F) {
	f.Add("severity=high&rule=impossible-travel&state=open&user=alice&from=2026-11-22T10:00&to=2026-11-23T00:00:00Z")
	f.Add("state=all&from=x&to=%ff")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, form, _ := parseFilter(q)
		if fl.Severity != "" && alerter.SeverityRank(fl.Severity) == 0 {
			t.Fatalf("accepted severity %q", fl.Severity)
		}
		for _, s := range fl.States {
			if !s.Valid() {
				t.Fatalf("accepted state %q", s)
			}
		}
		if !okText(fl.User) || !okText(fl.Rule) {
			t.Fatalf("accepted text %q %q", fl.User, fl.Rule)
		}
		// What the form renders back parses to the same filter.
		q2, err := url.ParseQuery(form.query())
		if err != nil {
			t.Fatal(err)
		}
		f2, _, problems := parseFilter(q2)
		if len(problems) > 0 && !(len(problems) == 1 && problems[0] == "to: before from") {
			t.Fatalf("rendered filter %q does not parse: %v", form.query(), problems)
		}
		if f2.Severity != fl.Severity || f2.Rule != fl.Rule || f2.User != fl.User || len(f2.States) != len(fl.States) {
			t.Fatalf("round trip: %+v → %+v", fl, f2)
		}
	})
}

func FuzzParseDecision(f *testing.F) {
	f.Add("decision=resolve&note=ok", true)
	f.Add("decision=false_positive&note=%0D%0Ax&session_id=07ab", false)
	f.Fuzz(func(t *testing.T, raw string, needID bool) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if d, err := parseDecision(q); err == nil {
			if !d.Decision.Valid() || alerter.CheckNote(d.Note) != nil {
				t.Fatalf("accepted %+v", d)
			}
		}
		if sf, err := parseSessionAction(q, needID); err == nil {
			if needID && !validSessionID(sf.SessionID) || alerter.CheckNote(sf.Note) != nil {
				t.Fatalf("accepted %+v", sf)
			}
		}
	})
}

func FuzzParseHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$2a$10$AZ0TvUdKPbiDdm3.hA/9yu7CqQiYgWLS/47mrXJcNbFH0Gg1NA.ha")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if h.kind == "argon2id" && (h.params.Memory > maxArgonMemory || h.params.Time > maxArgonTime || h.params.Threads < 1) {
			t.Fatalf("accepted costs %+v", h.params)
		}
	})
}

func FuzzSafeNext(f *testing.F) {
	f.Add("/alerts/x")
	f.Add("//evil")
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") {
			t.Fatalf("safeNext(%q) = %q", s, got)
		}
	})
}
