package alerter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
)

const goodConfig = `# alerter configuration
reviewers:
  - name: alice
    password_hash: $argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA
  - name: bob.ops
    role: viewer
    password_hash: $2a$10$abcdefghijklmnopqrstuuvwxyzabcdefghijklmnopqrstuvwxyz12
notifiers:
  - name: soc
    type: webhook
    url: https://soc.example.com/hooks/sessionmon
    secret_env: SOC_SECRET
  - name: chat
    type: slack
    url_env: SLACK_URL
  - name: local
    type: webhook
    url: http://127.0.0.1:9999/hook
    secret: a-literal-secret-0123456789
routes:
  critical: [soc, chat]
  high: [soc]
  default: [chat]
retry:
  attempts: 5
  initial: 2s
  max: 30s
`

func testenv(k string) string {
	return map[string]string{"SOC_SECRET": "soc-secret-0123456789abcdef", "SLACK_URL": "https://hooks.slack.com/services/T/B/secret"}[k]
}

func TestParseConfig(t *testing.T) {
	c, err := alerter.ParseConfig("alerter.yaml", []byte(goodConfig), testenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Reviewers) != 2 || c.Reviewers[0].Role != alerter.RoleResponder || c.Reviewers[1].Role != alerter.RoleViewer ||
		c.Reviewers[1].Line != 5 || c.Reviewers[1].File != "alerter.yaml" {
		t.Fatalf("reviewers: %+v", c.Reviewers)
	}
	if len(c.Notifiers) != 3 || string(c.Notifiers[0].Secret) != "soc-secret-0123456789abcdef" ||
		c.Notifiers[1].URL.String() != "https://hooks.slack.com/services/T/B/secret" || c.Notifiers[1].Secret != nil {
		t.Fatalf("notifiers: %+v", c.Notifiers)
	}
	if got := strings.Join(c.Routes["critical"], ","); got != "soc,chat" || len(c.Routes["default"]) != 1 {
		t.Fatalf("routes: %v", c.Routes)
	}
	if c.Retry != (alerter.Retry{Attempts: 5, Initial: 2 * time.Second, Max: 30 * time.Second}) {
		t.Fatalf("retry: %+v", c.Retry)
	}
	r, err := alerter.NewRouter(map[string]alerter.Notifier{"soc": nil, "chat": nil, "local": nil}, c.Routes)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Route("low"), ","); got != "chat" {
		t.Fatalf("low falls back to default: %q", got)
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"empty", "", "c.yaml: empty file"},
		{"unknown top", "reviewer: []\n", "c.yaml:1: reviewer: unknown setting (want reviewers, notifiers, routes, retry)"},
		{"unknown field", "reviewers:\n  - name: a\n    password: x\n", "c.yaml:3: field password not found in a reviewer"},
		{"bad name", "reviewers:\n  - name: Alice Smith\n    password_hash: x\n",
			`c.yaml:2: reviewer "Alice Smith": name: must be 1 to 64 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit), got "Alice Smith"`},
		{"dup reviewer", "reviewers:\n  - name: a\n    password_hash: x\n  - name: a\n    password_hash: y\n",
			`c.yaml:4: reviewer "a": name: used twice (first on line 2)`},
		{"no hash", "reviewers:\n  - name: a\n", `c.yaml:2: reviewer "a": password_hash: required (make one with: alerter hash-password)`},
		{"bad role", "reviewers:\n  - name: a\n    role: admin\n    password_hash: x\n", `c.yaml:3: reviewer "a": role: must be responder or viewer, got "admin"`},
		{"bad type", "notifiers:\n  - name: n\n    type: email\n    url: https://x.example\n",
			`c.yaml:3: notifier "n": type: must be webhook or slack, got "email"`},
		{"http url", "notifiers:\n  - name: n\n    type: slack\n    url: http://hooks.example/x\n",
			`c.yaml:4: notifier "n": url: plain http only to loopback, or with allow_http: true`},
		{"both url", "notifiers:\n  - name: n\n    type: slack\n    url: https://a.example\n    url_env: X\n",
			`c.yaml:5: notifier "n": url_env: give url or url_env, not both`},
		{"empty env", "notifiers:\n  - name: n\n    type: slack\n    url_env: NOPE\n",
			`c.yaml:4: notifier "n": url_env: environment variable NOPE is empty`},
		{"no secret", "notifiers:\n  - name: n\n    type: webhook\n    url: https://a.example\n",
			`c.yaml:2: notifier "n": secret_env: required: the webhook signs each request with HMAC-SHA256 of this secret`},
		{"short secret", "notifiers:\n  - name: n\n    type: webhook\n    url: https://a.example\n    secret: short\n",
			`c.yaml:5: notifier "n": secret: the secret must be at least 24 bytes, got 5`},
		{"slack secret", "notifiers:\n  - name: n\n    type: slack\n    url: https://a.example\n    secret_env: SOC_SECRET\n",
			`c.yaml:5: notifier "n": secret_env: a slack notifier has no signing secret (its URL is the secret)`},
		{"route severity", "routes:\n  urgent: []\n", "c.yaml:2: routes: urgent: not a severity (want low, medium, high, critical or default)"},
		{"route notifier", "routes:\n  high: [pager]\n", `c.yaml:2: routes: high: no notifier named "pager"`},
		{"retry", "retry:\n  attempts: 0\n  initial: 1s\n  max: 1s\n", "c.yaml:2: retry: attempts: must be 1 to 100, got 0"},
		{"retry duration", "retry:\n  initial: soon\n", `c.yaml:2: "soon" is not a duration such as 500ms, 1s or 1m`},
		{"not yaml", "reviewers: [\n", "c.yaml:1: did not find expected node content"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := alerter.ParseConfig("c.yaml", []byte(c.yaml), testenv)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestParseConfigNeverEchoesURLs(t *testing.T) {
	_, err := alerter.ParseConfig("c.yaml", []byte("notifiers:\n  - name: n\n    type: slack\n    url: ftp://hooks.example/services/SECRET\n"), testenv)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("error %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("reviewers:\n  - name: a\n    password_hash: x\nroutes:\n  high: [a]\n"))
	f.Add([]byte("notifiers:\n  - {name: n, type: webhook, url: 'http://[::1]:80/x', secret: '012345678901234567890123'}\n"))
	f.Add([]byte("retry: {attempts: 3, initial: 1ms, max: 1h}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := alerter.ParseConfig("f.yaml", data, testenv)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Retry.Validate(); err != nil {
			t.Fatalf("accepted a bad retry: %v", err)
		}
		names := map[string]alerter.Notifier{}
		for _, n := range c.Notifiers {
			if n.URL == nil || (n.URL.Scheme != "https" && n.URL.Scheme != "http") {
				t.Fatalf("accepted notifier %q with URL %v", n.Name, n.URL)
			}
			if n.Type == alerter.TypeWebhook && len(n.Secret) < alerter.MinSecretLen {
				t.Fatalf("accepted webhook %q with a short secret", n.Name)
			}
			names[n.Name] = nil
		}
		if _, err := alerter.NewRouter(names, c.Routes); err != nil {
			t.Fatalf("accepted routes the router refuses: %v", err)
		}
		for _, r := range c.Reviewers {
			if r.Name == "" || r.PasswordHash == "" || (r.Role != alerter.RoleResponder && r.Role != alerter.RoleViewer) {
				t.Fatalf("accepted reviewer %+v", r)
			}
		}
	})
}
