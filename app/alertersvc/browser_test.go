package alertersvc

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/app/auditsvc"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// chromium finds the browser: $CHROMIUM, else Debian's /usr/bin/chromium
// (scripts/test.sh installs it). Under CI a missing browser fails the test;
// elsewhere it skips with how to get one.
func chromium(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := "no Chromium (set CHROMIUM, or apt-get install chromium; scripts/test.sh installs it)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where the test keeps its screenshot: $SESSIONMON_ARTIFACTS,
// else testdata/artifacts at the repository's root (ignored by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SESSIONMON_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "testdata", "artifacts")
				break
			}
			if filepath.Dir(d) == d {
				t.Fatal("no go.mod above the test's directory")
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// auditWriter runs the audit writer (app/auditsvc, the real program)
// in-process against the stack's NATS and a ClickHouse database of the
// test's ClickHouse database (chURL), and waits until it is ready; it
// stops when the test ends.
func auditWriter(t *testing.T, natsURL, chURL string) {
	t.Helper()
	env := map[string]string{"NATS_URL": natsURL, "CLICKHOUSE_URL": chURL}
	cfg, err := auditsvc.ParseServeConfig([]string{"-listen", "127.0.0.1:0", "-batch-interval", "100ms", "-log-level", "debug"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	log := &testenv.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- auditsvc.Serve(ctx, cfg, log, auditsvc.Options{Listening: func(a string) { addr <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit writer: %v\n%s", err, log.String())
		}
	})
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		done <- err
		t.Fatalf("audit writer exited: %v\n%s", err, log.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("audit writer did not start:\n%s", log.String())
	}
	waitFor(t, "audit writer ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// auditAction is a row of the audit log's actions table.
type auditAction struct {
	Kind, Actor, Action, AlertID, Rule, UserID, Result, Note string
}

// TestConsoleInChromium signs in to the console in a real headless
// Chromium, filters the list, opens an impossible-travel alert, reads its
// evidence and the user's timeline from the audit log, resolves it with a
// note, and checks the action that the decision published on the ALERTS
// stream and the row the audit writer (running in-process, into a
// ClickHouse database of the test's own) stored of it; the page, reloaded,
// shows that row in its timeline. It keeps a screenshot of the resolved
// alert.
func TestConsoleInChromium(t *testing.T) {
	bin := chromium(t)
	ch := testenv.ClickHouse(t) // under CI=true, no ClickHouse fails the test
	db := testenv.ClickHouseDatabase(t, ch)
	chURL := "clickhouse://" + testenv.ClickHouseAddr() + "/" + db
	st := startStack(t, "-clickhouse-url", chURL)
	auditWriter(t, st.nats, chURL)
	count := func(query string, args ...any) uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var n uint64
		if err := ch.QueryRow(ctx, strings.ReplaceAll(query, "{db}", "`"+db+"`"), args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	now := time.Now().UTC().Truncate(time.Second)
	travel := alertertest.TravelAlert("br-travel", "bob", now)
	brute := events.Alert{ID: "br-brute", Time: now.Add(-time.Minute), Rule: "brute-force", RuleType: "brute_force",
		Severity: "medium", UserID: "carol", Action: "alert", Mode: "enforce", ActionResult: "none",
		Summary: "10 failed logins for carol in 5 min", Evidence: events.Evidence{Count: 10, Threshold: 10, WindowSeconds: 300}}
	st.publish(t, travel, brute)
	ctx := context.Background()
	if _, err := st.shop.CreateSession(ctx, client.CreateRequest{UserID: "bob", IP: "203.0.113.80", UserAgent: "Firefox/140"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both alerts in the alerter", func() bool {
		_, body := get(t, st.url+"/metrics")
		return strings.Contains(body, `sessionmon_alerter_alerts_received_total{severity="medium"} 1`) &&
			strings.Contains(body, `sessionmon_alerter_alerts_received_total{severity="high"} 1`)
	})
	// bob's timeline has something to show: his alert and his session.
	waitFor(t, "bob's alert and session in the audit log", func() bool {
		return count("SELECT count() FROM {db}.alerts FINAL WHERE user_id = 'bob'") == 1 &&
			count("SELECT count() FROM {db}.session_events FINAL WHERE user_id = 'bob' AND type = 'session.created'") == 1
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // starts the browser, with no timeout
		t.Fatalf("start %s: %v", bin, err)
	}
	// Whatever the page writes to its console: CSP violations and script
	// errors land here and fail the test.
	var mu sync.Mutex
	var console []string
	msgs := chromedp.Console(bctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, string(m.Type)+": "+m.Text)
			mu.Unlock()
		}
	}()

	tctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}

	// Signed out: the console sends us to sign in, and back afterwards.
	do("open the console", chromedp.Navigate(st.url+"/alerts"), chromedp.WaitVisible(chromedp.ID("signin")))
	if loc := eval(`location.pathname + location.search`); loc != "/login?next=%2Falerts" {
		t.Fatalf("redirected to %s", loc)
	}
	do("sign in",
		chromedp.SendKeys(chromedp.ID("name"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("alerts")),
	)
	if who := text("#who"); who != "alice · responder" {
		t.Fatalf("signed in as %q", who)
	}
	if got := eval(`String(document.querySelectorAll('#alerts tbody tr[data-id]').length)`); got != "2" {
		t.Fatalf("%s alerts listed, want 2", got)
	}
	// The session cookie is not readable by scripts (HttpOnly).
	if c := eval(`document.cookie`); strings.Contains(c, "sessionmon") {
		t.Fatalf("a script can read the session cookie: %q", c)
	}

	// Filter by rule: chromedp's SetValue fires the select's change event,
	// on which console.js submits the filter form.
	do("filter by rule",
		chromedp.SetValue(chromedp.ID("f-rule"), "impossible-travel"),
		chromedp.WaitReady(chromedp.CSS(`#f-rule option[value="impossible-travel"][selected]`)),
	)
	if loc := eval(`location.search`); !strings.Contains(loc, "rule=impossible-travel") {
		t.Fatalf("filter not applied: %s", loc)
	}
	if got := eval(`Array.from(document.querySelectorAll('#alerts tbody tr[data-id]')).map(r => r.dataset.id).join(',')`); got != "br-travel" {
		t.Fatalf("filtered list: %q", got)
	}

	// The alert: both places, distance, speed and the time between.
	do("open the alert", chromedp.Click(chromedp.CSS(`#alerts a.open`)), chromedp.WaitVisible(chromedp.ID("travel")))
	places := text("#travel tbody")
	for _, want := range []string{"Paris, FR", "Sydney, AU", "198.51.100.7", "203.0.113.80"} {
		if !strings.Contains(places, want) {
			t.Errorf("travel evidence lacks %q: %s", want, places)
		}
	}
	if d, s, e := text("#distance"), text("#speed"), text("#elapsed"); !strings.HasPrefix(d, "16,960 km") || s != "16,920 km/h" || e != "1 h 0 min" {
		t.Errorf("distance %q, speed %q, time between %q", d, s, e)
	}
	if n := eval(`String(document.querySelectorAll('#sessions tbody tr[data-session]').length)`); n != "1" {
		t.Errorf("%s live sessions of bob shown, want 1", n)
	}
	// The timeline from the audit log: bob's alert and session.
	if kinds := eval(`Array.from(document.querySelectorAll('#timeline tbody tr[class^="kind-"]')).map(r => r.className).join(',')`); !strings.Contains(kinds, "kind-alert") || !strings.Contains(kinds, "kind-event") {
		t.Errorf("timeline rows %q, want bob's alert and his session's creation", kinds)
	}
	if tl := text("#timeline tbody"); !strings.Contains(tl, "impossible-travel") || !strings.Contains(tl, "session.created") {
		t.Errorf("timeline: %s", tl)
	}
	// The script ran (CSP allows it from 'self'): times have local titles.
	if title := eval(`document.querySelector('time[datetime]').title`); title == "" {
		t.Error("console.js did not run")
	}
	// A false positive without a note is stopped in the page.
	do("false positive without a note", chromedp.Click(chromedp.ID("decision-false_positive")))
	if msg := eval(`document.getElementById('note').validationMessage`); msg == "" {
		t.Error("the page let a false positive go without a note")
	}

	do("resolve",
		chromedp.SendKeys(chromedp.ID("note"), "bob confirmed the trip by phone"),
		chromedp.Click(chromedp.ID("decision-resolve")),
		chromedp.WaitVisible(chromedp.ID("flash")),
	)
	if s := text("#state"); s != "resolved" {
		t.Fatalf("state after resolving: %q", s)
	}
	if h := text("#history tbody"); !strings.Contains(h, "alice") || !strings.Contains(h, "bob confirmed the trip by phone") {
		t.Fatalf("review history: %s", h)
	}

	// The decision is an action on the stream, for the audit log.
	var resolved *events.Action
	waitFor(t, "the resolve action", func() bool {
		for _, a := range st.actions(t) {
			if a.Action == "resolve" {
				resolved = &a
				return true
			}
		}
		return false
	})
	if resolved.Kind != events.KindReview || resolved.Actor != "alice" || resolved.AlertID != "br-travel" || resolved.UserID != "bob" ||
		resolved.Rule != "impossible-travel" || resolved.Result != events.ResultDone || resolved.Note != "bob confirmed the trip by phone" {
		t.Fatalf("action: %+v", resolved)
	}

	// ... which the audit writer stores: one row, the reviewer's decision.
	var row auditAction
	waitFor(t, "the resolve action in the audit log", func() bool {
		return count("SELECT count() FROM {db}.actions FINAL WHERE alert_id = 'br-travel' AND action = 'resolve'") == 1
	})
	ctx10, cancel10 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel10()
	if err := ch.QueryRow(ctx10, "SELECT toString(kind), toString(actor), toString(action), alert_id, toString(rule), user_id, toString(result), note FROM `"+db+
		"`.actions FINAL WHERE alert_id = 'br-travel' AND action = 'resolve'").Scan(
		&row.Kind, &row.Actor, &row.Action, &row.AlertID, &row.Rule, &row.UserID, &row.Result, &row.Note); err != nil {
		t.Fatal(err)
	}
	want := auditAction{Kind: events.KindReview, Actor: "alice", Action: "resolve", AlertID: "br-travel", Rule: "impossible-travel",
		UserID: "bob", Result: events.ResultDone, Note: "bob confirmed the trip by phone"}
	if row != want {
		t.Fatalf("audit row:\n got %+v\nwant %+v", row, want)
	}
	if n := count("SELECT count() FROM {db}.actions FINAL WHERE id = ?", resolved.ID); n != 1 {
		t.Errorf("%d audit rows with the action's ID %s, want 1", n, resolved.ID)
	}
	// The page, reloaded, shows the decision in the timeline too.
	do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("timeline")))
	if tl := eval(`Array.from(document.querySelectorAll('#timeline tbody tr.kind-action')).map(r => r.textContent).join('|')`); !strings.Contains(tl, "resolve") ||
		!strings.Contains(tl, "by alice: bob confirmed the trip by phone") {
		t.Errorf("the timeline lacks the decision: %q", tl)
	}
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(artifactDir(t), "console-resolved.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)

	// Sign out ends the session at the service.
	do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin")))
	sessions, err := client.New(st.sessions, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	if live, err := sessions.ListUserSessions(ctx, "reviewer:alice"); err != nil || len(live) != 0 {
		t.Fatalf("console sessions after sign-out: %+v %v", live, err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, m := range console {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, "exception") || strings.HasPrefix(m, "error") {
			t.Errorf("browser console: %s", m)
		}
	}
}
