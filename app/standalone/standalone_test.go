package standalone

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// start runs the pipeline on free ports in dir and returns what it
// started; the pipeline stops when the test ends, and stop stops it
// earlier, returning Run's error.
func start(t *testing.T, dir string, args ...string) (Started, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &testenv.LogBuffer{}
	args = append([]string{"-data-dir", dir, "-sessionsvc-listen", "127.0.0.1:0", "-detector-listen", "127.0.0.1:0",
		"-auditor-listen", "127.0.0.1:0", "-console-listen", "127.0.0.1:0", "-log-level", "info"}, args...)
	got := make(chan Started, 1)
	done := make(chan error, 1)
	var stdout testenv.LogBuffer
	go func() {
		done <- Run(ctx, args, func(string) string { return "" }, &stdout, log, func(s Started) { got <- s })
	}()
	var st Started
	select {
	case st = <-got:
	case err := <-done:
		cancel()
		t.Fatalf("the pipeline stopped at start: %v\n%s", err, log)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatalf("the pipeline did not start in 2 minutes\n%s", log)
	}
	for _, want := range []string{st.ConsoleURL, "reviewer       " + st.Reviewer, "password       " + st.Password} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the banner lacks %q:\n%s", want, stdout.String())
		}
	}
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = errors.New("the pipeline did not stop within a minute")
			}
			for _, secret := range []string{st.AppKey, st.AdminKey, st.Password} {
				if strings.Contains(log.String(), secret) {
					t.Error("a secret (API key or password) reached the log")
				}
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("pipeline log:\n%s", tail(log.String(), 1<<20))
		}
	})
	return st, stop
}

// TestDemoEndToEnd runs the one-command pipeline with its simulated users
// and attacks, and waits for what the README promises: alerts of every
// attack, sessions revoked by the detector, the console showing them to
// the demo reviewer, and the audit log holding the revocations.
func TestDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	st, stop := start(t, dir, "-users", "40", "-rate", "30", "-attack-every", "10s")
	began := time.Now()
	if st.Simulator == nil || st.Audit == nil {
		t.Fatal("simulation or file audit log missing")
	}

	// Every rule an attack should trip, and the detector's revocations,
	// read from the ALERTS stream of the embedded server.
	nc, err := nats.Connect(st.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	want := []string{"impossible-travel", "shared-session", "session-burst", "brute-force", "credential-stuffing"}
	var (
		mu      sync.Mutex
		fired   = map[string]time.Duration{}
		revoked []events.Action
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			c, err := js.OrderedConsumer(ctx, events.AlertStreamName, jetstream.OrderedConsumerConfig{})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			it, err := c.Messages()
			if err != nil {
				continue
			}
			for {
				m, err := it.Next()
				if err != nil {
					break
				}
				mu.Lock()
				if a, err := events.DecodeAlert(m.Data()); err == nil {
					if _, ok := fired[a.Rule]; !ok {
						fired[a.Rule] = time.Since(began)
					}
				} else if a, err := events.DecodeAction(m.Data()); err == nil && a.Actor == "detector" && a.Result == events.ResultDone {
					revoked = append(revoked, a)
				}
				mu.Unlock()
			}
			it.Stop()
			return
		}
	}()
	waitFor(t, 3*time.Minute, "an alert of every attack and a revocation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range want {
			if _, ok := fired[r]; !ok {
				return false
			}
		}
		return len(revoked) > 0
	})
	mu.Lock()
	t.Logf("first alerts after the start: %v; %d enforcements done", fired, len(revoked))
	victim := revoked[0]
	mu.Unlock()

	// The demo reviewer signs in to the console and sees the alerts.
	b := newBrowser(t, st.ConsoleURL)
	b.signIn(t, st.Reviewer, st.Password)
	var list string
	waitFor(t, time.Minute, "the console to list every attack's alert", func() bool {
		_, list = b.get(t, "/alerts")
		for _, r := range want {
			if !strings.Contains(list, r) {
				return false
			}
		}
		return true
	})
	// An alert's page shows the user's timeline from the file audit log,
	// with the detector's enforcement.
	ids := regexp.MustCompile(`href="/alerts/([A-Za-z0-9_-]+)"`).FindAllStringSubmatch(list, -1)
	if len(ids) == 0 {
		t.Fatalf("no alert links in the list:\n%.2000s", list)
	}
	waitFor(t, time.Minute, "the audit timeline of a revoked user", func() bool {
		es, err := st.Audit.UserTimeline(context.Background(), victim.UserID, time.Time{}, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range es {
			types = append(types, e.Type)
		}
		return slices.Contains(types, victim.Action) && (slices.Contains(types, string(events.SessionRevoked)) ||
			slices.Contains(types, string(events.SessionReauthRequired)))
	})
	found := false
	for _, id := range ids {
		code, page := b.get(t, "/alerts/"+id[1])
		if code == http.StatusOK && strings.Contains(page, victim.UserID) &&
			(strings.Contains(page, "session.revoked") || strings.Contains(page, "session.reauth_required")) {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("no alert page of %s shows the revocation in the user's timeline", victim.UserID)
	}

	stats := st.Simulator.Stats()
	if stats.Logins == 0 || stats.Validates == 0 || stats.Logouts == 0 {
		t.Errorf("simulation stats %+v", stats)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	rows := st.Audit.Rows()
	if rows == 0 {
		t.Fatal("nothing in the audit log")
	}

	// A restart on the same data directory finds the streams, incidents
	// and audit log again.
	st2, _ := start(t, dir, "-simulate=false")
	if got := st2.Audit.Rows(); got < rows {
		t.Fatalf("after a restart the audit log holds %d entries, had %d", got, rows)
	}
	b2 := newBrowser(t, st2.ConsoleURL)
	b2.signIn(t, st2.Reviewer, st2.Password)
	waitFor(t, time.Minute, "the incidents to be listed after a restart", func() bool {
		_, list := b2.get(t, "/alerts")
		return strings.Contains(list, "shared-session")
	})
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-users", "0"}, "SESSIONMON_USERS (-users): must be 1 to 100000"},
		{[]string{"-console-listen", "nowhere"}, "ALERTER_LISTEN (-console-listen):"},
		{[]string{"-clickhouse-url", "http://x"}, "CLICKHOUSE_URL (-clickhouse-url):"},
		{[]string{"-attack-every", "10ms"}, "SESSIONMON_ATTACK_EVERY (-attack-every): must be at least 1s"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, c := range cases {
		err := Run(context.Background(), c.args, func(string) string { return "" }, io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
	}
}

// browser is an HTTP client that keeps the console's cookies. Go's cookie
// jar does not send Secure cookies over plain HTTP, as browsers do to
// 127.0.0.1, so it keeps them itself.
type browser struct {
	base    string
	hc      *http.Client
	cookies map[string]string
}

func newBrowser(t *testing.T, base string) *browser {
	return &browser{base: base, cookies: map[string]string{}, hc: &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(t *testing.T, method, path string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
	}
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) sessionmon-test")
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return resp.StatusCode, string(data), resp
}

func (b *browser) get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, body, resp := b.do(t, http.MethodGet, path, nil)
	if code == http.StatusSeeOther || code == http.StatusFound {
		return b.get(t, resp.Header.Get("Location"))
	}
	return code, body
}

func (b *browser) signIn(t *testing.T, name, password string) {
	t.Helper()
	code, page, _ := b.do(t, http.MethodGet, "/login", nil)
	m := regexp.MustCompile(`name="login_csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if code != http.StatusOK || m == nil {
		t.Fatalf("sign-in page: %d", code)
	}
	code, _, resp := b.do(t, http.MethodPost, "/login", url.Values{"name": {name}, "password": {password}, "login_csrf": {m[1]}, "next": {"/alerts"}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/alerts" {
		t.Fatalf("sign-in: %d to %q", code, resp.Header.Get("Location"))
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
