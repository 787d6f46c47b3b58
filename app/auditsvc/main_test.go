package auditsvc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/app/sessionsvc"
	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// TestMain doubles as the auditor binary for the tests that kill it: with
// AUDITOR_TEST_MAIN set, the test binary is the auditor.
func TestMain(m *testing.M) {
	if os.Getenv("AUDITOR_TEST_MAIN") != "" {
		os.Exit(testMain())
	}
	os.Exit(m.Run())
}

// testMain is cmd/auditor's main: Run until SIGINT or SIGTERM, exit
// status 1 on an error (2 for violations).
func testMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintln(os.Stderr, "auditor:", err)
	var v *ViolationsError
	if errors.As(err, &v) {
		return 2
	}
	return 1
}

// startedAddr finds the HTTP address in the "auditor started" log line.
func startedAddr(log string) string {
	for line := range strings.Lines(log) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "auditor started" {
			return rec.Addr
		}
	}
	return ""
}

type auditor struct {
	addr string
	log  *testenv.LogBuffer
	stop func() error
}

// start runs `auditor serve` in-process with env and args.
func start(t *testing.T, env map[string]string, args ...string) *auditor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &testenv.LogBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append([]string{"serve", "-listen", "127.0.0.1:0"}, args...), func(k string) string { return env[k] }, io.Discard, log)
	}()
	a := &auditor{log: log}
	var once sync.Once
	var runErr error
	a.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = a.stop() })
	deadline := time.Now().Add(10 * time.Second)
	for a.addr = startedAddr(log.String()); a.addr == ""; a.addr = startedAddr(log.String()) {
		select {
		case err := <-done:
			t.Fatalf("auditor exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("auditor did not start\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// env is a test's NATS, ClickHouse database and settings.
type env struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	ch   driver.Conn
	db   string
	vars map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, testenv.ClickHouseAddr(), testenv.ClickHouse(t))
}

// newEnvOn is newEnv on a given ClickHouse.
func newEnvOn(t *testing.T, addr string, ch driver.Conn) *env {
	t.Helper()
	srv, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbus.EnsureStreamsExist(ctx, js, eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	db := testenv.ClickHouseDatabase(t, ch)
	return &env{nc: nc, js: js, ch: ch, db: db, vars: map[string]string{
		"NATS_URL":       srv.ClientURL(),
		"CLICKHOUSE_URL": "clickhouse://" + addr + "/" + db,
		"LOG_LEVEL":      "debug",
	}}
}

func (e *env) count(t *testing.T, query string) uint64 {
	t.Helper()
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.ch.QueryRow(ctx, strings.ReplaceAll(query, "{db}", "`"+e.db+"`")).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// publish publishes events (each with its ID as Nats-Msg-Id).
func (e *env) publish(t *testing.T, evs []events.Event) {
	t.Helper()
	if err := e.tryPublish(evs); err != nil {
		t.Fatal(err)
	}
}

func (e *env) tryPublish(evs []events.Event) error {
	pub, err := eventbus.NewPublisher(e.nc, 10*time.Second)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(evs) > 0 {
		n := min(len(evs), 1000)
		if err := pub.Publish(ctx, evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// rows counts, or returns 0 while the table is not there yet.
func (e *env) rows(query string) uint64 {
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = e.ch.QueryRow(ctx, strings.ReplaceAll(query, "{db}", "`"+e.db+"`")).Scan(&n)
	return n
}

// sessionEvents makes n sessions of users u0..u9: created, accessed,
// terminated.
func sessionEvents(n int, at time.Time) []events.Event {
	var out []events.Event
	for i := range n {
		sid := fmt.Sprintf("%02dsess%017d", i%16, i)
		for j, typ := range []events.Type{events.SessionCreated, events.SessionAccessed, events.SessionTerminated} {
			out = append(out, events.Event{ID: events.NewID(), Type: typ, Source: "sessionsvc", Time: at.Add(time.Duration(i*3+j) * time.Millisecond),
				Data: events.Data{SessionID: sid, UserID: fmt.Sprintf("u%d", i%10), App: "shop", IP: "198.51.100.7", UserAgent: "Firefox", Reason: "logout"}})
		}
	}
	return out
}

func TestConfigErrors(t *testing.T) {
	key := strings.Repeat("k", 32)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"nope"}, nil, []string{`unknown command "nope"`, "usage: auditor"}},
		{[]string{"serve", "extra"}, nil, []string{`unexpected argument "extra"`}},
		{nil, map[string]string{"AUDITOR_BATCH_SIZE": "abc"}, []string{"AUDITOR_BATCH_SIZE: invalid value \"abc\""}},
		{nil, map[string]string{"AUDITOR_BATCH_SIZE": "0", "AUDITOR_BATCH_INTERVAL": "2m"}, []string{
			"AUDITOR_BATCH_SIZE (-batch-size): must be 1 to 1000000, got 0",
			"AUDITOR_BATCH_INTERVAL (-batch-interval): must be positive and at most 1m, got 2m0s"}},
		{[]string{"-ack-wait", "1s"}, nil, []string{"AUDITOR_ACK_WAIT (-ack-wait): must exceed the batch interval (1s)"}},
		{nil, map[string]string{"CLICKHOUSE_URL": "http://127.0.0.1:8123/x"}, []string{`CLICKHOUSE_URL (-clickhouse-url): scheme "http": want clickhouse://`}},
		{nil, map[string]string{"CLICKHOUSE_URL": "clickhouse://u:hunter2@127.0.0.1:9000"}, []string{"CLICKHOUSE_URL (-clickhouse-url): no database"}},
		{nil, map[string]string{"AUDITOR_RETENTION_MONTHS": "-1", "AUDITOR_LISTEN": "nope", "NATS_URL": ""}, []string{
			"AUDITOR_RETENTION_MONTHS (-retention-months): must be 0 (forever) to 1200, got -1", "AUDITOR_LISTEN (-listen):"}},
		{nil, map[string]string{"AUDITOR_PSEUDONYMIZE_IPS": "true"}, []string{"AUDITOR_PSEUDONYMIZE_IPS (-pseudonymize-ips): needs a key: AUDITOR_IP_KEY (-ip-key) or AUDITOR_IP_KEY_FILE (-ip-key-file)"}},
		{nil, map[string]string{"AUDITOR_PSEUDONYMIZE_IPS": "yes"}, []string{"AUDITOR_PSEUDONYMIZE_IPS: invalid value \"yes\""}},
		{nil, map[string]string{"AUDITOR_IP_KEY": key}, []string{"AUDITOR_IP_KEY (-ip-key): a key is set but AUDITOR_PSEUDONYMIZE_IPS (-pseudonymize-ips) is off"}},
		{nil, map[string]string{"AUDITOR_PSEUDONYMIZE_IPS": "true", "AUDITOR_IP_KEY": "short"}, []string{"AUDITOR_IP_KEY (-ip-key): the key is 5 bytes, want at least 32"}},
		{[]string{"-pseudonymize-ips", "-ip-key-file", keyFile}, nil, []string{"AUDITOR_IP_KEY_FILE (-ip-key-file): the key is 5 bytes, want at least 32"}},
		{[]string{"-pseudonymize-ips", "-ip-key-file", "/nonexistent"}, nil, []string{"AUDITOR_IP_KEY_FILE (-ip-key-file): open /nonexistent"}},
		{[]string{"-pseudonymize-ips", "-ip-key", key, "-ip-key-file", keyFile}, nil, []string{"AUDITOR_IP_KEY (-ip-key): give the key or AUDITOR_IP_KEY_FILE (-ip-key-file), not both"}},
		{nil, map[string]string{"GEOIP_OVERRIDES": "x.yaml"}, []string{"GEOIP_OVERRIDES (-geoip-overrides): needs GEOIP_CITY_DB (-geoip-city)"}},
		{nil, map[string]string{"GEOIP_RELOAD_INTERVAL": "-1m"}, []string{"GEOIP_RELOAD_INTERVAL (-geoip-reload-interval): must not be negative"}},
		{nil, map[string]string{"LOG_LEVEL": "loud"}, []string{`log level "loud"`}},
		{nil, map[string]string{"AUDITOR_CONSUMER": "a.b"}, []string{`AUDITOR_CONSUMER (-consumer): "a.b": want a name`}},
		{[]string{"export"}, nil, []string{"-user: required"}},
		{[]string{"export", "-user", "u", "-format", "xml"}, nil, []string{`-format: "xml": want json or csv`}},
		{[]string{"export", "-user", "u", "-from", "yesterday"}, nil, []string{`invalid value "yesterday" for flag -from: want RFC 3339`}},
		{[]string{"export", "-user", "u", "-from", "2026-11-02", "-to", "2026-11-01"}, nil, []string{"-to: must be after -from"}},
		{[]string{"check-endings", "-window", "8h"}, nil, []string{"AUDITOR_ENDINGS_WINDOW (-window): must exceed the absolute timeout and the grace (8h15m0s)"}},
		{[]string{"check-endings"}, map[string]string{"SESSIONSVC_ABSOLUTE_TIMEOUT": "0s"}, []string{"SESSIONSVC_ABSOLUTE_TIMEOUT (-absolute-timeout): must be positive"}},
		{[]string{"events"}, nil, []string{"-from: required"}},
		{[]string{"migrate", "-retention-months", "2000"}, nil, []string{"AUDITOR_RETENTION_MONTHS (-retention-months): must be 0 (forever) to 1200, got 2000"}},
		{nil, map[string]string{"NATS_TLS_CA": keyFile, "NATS_URL": "nats://auditor:hunter2@nats:4222", "NATS_CREDS": keyFile}, []string{
			"NATS_TLS_CA (-nats-tls-ca): " + keyFile + " holds no PEM certificate",
			"NATS_URL (-nats-url): a user or token in the URL, and NATS_CREDS (-nats-creds) or NATS_NKEY_SEED (-nats-nkey-seed): give one way to authenticate"}},
	}
	for _, c := range cases {
		err := Run(context.Background(), c.args, func(k string) string { return c.env[k] }, io.Discard, io.Discard)
		if err == nil {
			t.Errorf("%v %v: no error", c.args, c.env)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v:\n got %v\n want %q", c.args, c.env, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), key) {
			t.Errorf("%v: the error shows a secret: %v", c.args, err)
		}
	}
	// -h is not an error.
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"export", "-h"}, func(string) string { return "" }, io.Discard, &out); err != nil || !strings.Contains(out.String(), "-user") {
		t.Fatalf("-h: %v %s", err, out.String())
	}
	// Nor is -version, which prints the build.
	out.Reset()
	if err := Run(context.Background(), []string{"-version"}, func(string) string { return "" }, io.Discard, &out); err != nil || !strings.HasPrefix(out.String(), "auditor serve ") {
		t.Fatalf("-version: %v %q", err, out.String())
	}
}

// TestServe runs the real auditor against in-process JetStream and the
// test ClickHouse: events, alerts and actions land in their tables, a
// malformed message is dead-lettered and counted, the probes and metrics
// answer, and SIGTERM (ctx) stops it cleanly.
func TestServe(t *testing.T) {
	e := newEnv(t)
	a := start(t, e.vars, "-batch-interval", "100ms", "-pending-interval", "100ms")
	base := "http://" + a.addr
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("healthz %d %s", code, body)
	}
	eventually(t, "ready", 20*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	_, body := get(t, base+"/readyz")
	for _, want := range []string{`"clickhouse":"ok"`, `"consumer_alerts":"reading"`, `"consumer_sessions":"reading"`, `"nats":"CONNECTED"`, `"schema":"migrated"`} {
		if !strings.Contains(body, want) {
			t.Errorf("readyz %s lacks %s", body, want)
		}
	}

	evs := sessionEvents(100, time.Now().Add(-time.Hour))
	e.publish(t, evs)
	pub := eventbus.NewAlertPublisher(e.js, "detector")
	ctx := context.Background()
	alert := events.Alert{ID: "al-1", Time: time.Now(), Rule: "brute-force", RuleType: "brute_force", Severity: "medium", UserID: "u1", Action: "alert", Mode: "enforce", ActionResult: "none", Summary: "10 failed logins"}
	if err := pub.PublishAlerts(ctx, []events.Alert{alert}); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishAction(ctx, events.Action{ID: "ac-1", Time: time.Now(), Kind: events.KindReview, Actor: "rita", Action: "resolve", AlertID: "al-1", UserID: "u1", Result: "done"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "sessions.03.session.created", []byte(`{"specversion":"1.0","id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rows", 30*time.Second, func() bool {
		return e.count(t, "SELECT count() FROM {db}.session_events FINAL") == uint64(len(evs)) &&
			e.count(t, "SELECT count() FROM {db}.alerts FINAL") == 1 && e.count(t, "SELECT count() FROM {db}.actions FINAL") == 1
	})
	eventually(t, "metrics", 10*time.Second, func() bool {
		_, m := get(t, base+"/metrics")
		return strings.Contains(m, fmt.Sprintf(`sessionmon_audit_rows_written_total{table="session_events"} %d`, len(evs))) &&
			strings.Contains(m, `sessionmon_audit_dead_letters_total{reason="bad_source",stream="SESSIONS"} 1`) &&
			strings.Contains(m, `sessionmon_audit_consumer_pending{stream="SESSIONS"} 0`)
	})
	_, m := get(t, base+"/metrics")
	for _, want := range []string{
		`sessionmon_audit_rows_written_total{table="alerts"} 1`,
		`sessionmon_audit_rows_written_total{table="actions"} 1`,
		`sessionmon_audit_batch_duration_seconds_count{table="session_events"}`,
		`sessionmon_audit_clickhouse_errors_total{op="insert"} 0`,
		`sessionmon_audit_lag_seconds_bucket{stream="SESSIONS",le="2"}`,
		`sessionmon_audit_consumer_ack_pending{stream="ALERTS"}`,
		`sessionmon_consumer_pending_messages{consumer="auditor-sessions",stream="SESSIONS"} 0`,
		"go_goroutines",
		`sessionmon_build_info{go_version="go`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := a.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(a.log.String(), "auditor stopped") {
		t.Fatal("no stop message")
	}
}

// TestServeWaitsForClickHouse: an auditor that starts before ClickHouse
// answers is alive but not ready, and catches up when it can.
func TestServeWaitsForClickHouse(t *testing.T) {
	e := newEnv(t)
	vars := map[string]string{}
	for k, v := range e.vars {
		vars[k] = v
	}
	// Nothing listens there.
	vars["CLICKHOUSE_URL"] = "clickhouse://127.0.0.1:1/" + e.db + "?dial_timeout=200ms"
	a := start(t, vars)
	base := "http://" + a.addr
	e.publish(t, sessionEvents(5, time.Now()))
	time.Sleep(time.Second)
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, `"clickhouse":"down"`) || !strings.Contains(body, `"schema":"pending"`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	if !strings.Contains(a.log.String(), "cannot migrate the ClickHouse schema; retrying") {
		t.Fatalf("log:\n%s", a.log.String())
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestKillAndRestart kills the auditor process (SIGKILL) while it writes,
// restarts it, and counts rows per event ID: exactly one each.
func TestKillAndRestart(t *testing.T) {
	// A ClickHouse of its own: the embedded server has been seen to stop
	// with a fatal error when a client dies in the middle of an insert; it
	// is restarted, and the shared one is not affected.
	addr, ch := testenv.PrivateClickHouse(t)
	e := newEnvOn(t, addr, ch)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	startProc := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "-listen", "127.0.0.1:0", "-batch-size", "500", "-batch-interval", "50ms", "-ack-wait", "2s")
		cmd.Env = append(os.Environ(), "AUDITOR_TEST_MAIN=1")
		for k, v := range e.vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stderr = &testenv.LogBuffer{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	const total = 30000
	evs := sessionEvents(total/3, time.Now().Add(-time.Hour))
	// Publish while the writer runs, in the background.
	published := make(chan error, 1)
	go func() { published <- e.tryPublish(evs) }()
	proc := startProc()
	// Kill it once it has written some batches and holds others.
	eventually(t, "some rows", 60*time.Second, func() bool { return e.rows("SELECT count() FROM {db}.session_events") >= 5000 })
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	killedAt := e.rows("SELECT count() FROM {db}.session_events")
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	startProc()
	eventually(t, "all rows", 120*time.Second, func() bool { return e.rows("SELECT count() FROM {db}.session_events FINAL") == total })
	// Exactly one event per ID, and only the published IDs.
	if n := e.count(t, "SELECT count() FROM (SELECT id FROM {db}.session_events FINAL GROUP BY id HAVING count() != 1)"); n != 0 {
		t.Fatalf("%d IDs with other than one row", n)
	}
	if n := e.count(t, "SELECT uniqExact(id) FROM {db}.session_events"); n != total {
		t.Fatalf("%d distinct IDs, want %d", n, total)
	}
	raw := e.count(t, "SELECT count() FROM {db}.session_events")
	t.Logf("killed with %d rows stored; %d rows for %d events (%d written twice, collapsed by FINAL)", killedAt, raw, total, raw-total)
}

func TestExportCheckEndingsAndEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := clickhouse.Open(clickhouse.Config{URL: e.vars["CLICKHOUSE_URL"]})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	evs := sessionEvents(20, at)
	// u3's sessions never end.
	var kept []events.Event
	for _, ev := range evs {
		if !(ev.Data.UserID == "u3" && ev.Type.Ending()) {
			kept = append(kept, ev)
		}
	}
	b := s.NewEventBatch(clickhouse.WriterOptions{})
	for _, ev := range kept {
		if err := b.AddEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Write(ctx); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return e.vars[k] }

	var out bytes.Buffer
	if err := Run(ctx, []string{"export", "-user", "u1", "-format", "csv"}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][1] != evs[3].Data.SessionID || rows[1][8] != "session.terminated" || rows[1][9] != "logout" {
		t.Fatalf("csv %q %v", rows, err)
	}
	path := filepath.Join(t.TempDir(), "u3.json")
	if err := Run(ctx, []string{"export", "-user", "u3", "-out", path, "-from", at.Add(-time.Hour).Format(time.RFC3339)}, getenv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	var h audit.History
	if err := json.Unmarshal(raw, &h); err != nil || h.UserID != "u3" || len(h.Sessions) != 2 || h.Sessions[0].Endings != 0 || h.Sessions[0].Addresses[0].IP != "198.51.100.7" {
		t.Fatalf("json %s %v", raw, err)
	}

	out.Reset()
	err = Run(ctx, []string{"check-endings"}, getenv, &out, io.Discard)
	var v *ViolationsError
	if !errors.As(err, &v) || v.N != 2 {
		t.Fatalf("check-endings: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "checked 20 sessions") || strings.Count(out.String(), audit.ProblemNoEnding) != 2 || !strings.Contains(out.String(), `"u3"`) {
		t.Fatalf("check-endings output:\n%s", out.String())
	}
	out.Reset()
	if err := Run(ctx, []string{"check-endings", "-format", "json"}, getenv, &out, io.Discard); !errors.As(err, &v) {
		t.Fatal(err)
	}
	var res audit.EndingCheck
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Violations) != 2 || res.Checked != 20 {
		t.Fatalf("json: %s %v", out.String(), err)
	}

	out.Reset()
	if err := Run(ctx, []string{"events", "-from", at.Add(-time.Minute).Format(time.RFC3339)}, getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	n := 0
	for sc.Scan() {
		ev, err := events.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		if ev.ID != kept[n].ID {
			t.Fatalf("line %d: %s, want %s", n+1, ev.ID, kept[n].ID)
		}
		n++
	}
	if n != len(kept) {
		t.Fatalf("%d events, want %d", n, len(kept))
	}

	out.Reset()
	if err := Run(ctx, []string{"migrate"}, getenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), "0001 session_events") {
		t.Fatalf("migrate: %v %s", err, out.String())
	}
}

// TestNoTokenInTheAuditLog runs the real session service (Redis, JetStream)
// and the auditor: sessions are created, used, regenerated and ended, an
// app even passes a token in a request path, and no token's secret
// reaches ClickHouse or an export.
func TestNoTokenInTheAuditLog(t *testing.T) {
	e := newEnv(t)
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	const appKey = "shop:app:shop-secret-0123456789abcdef"
	svcEnv := map[string]string{"REDIS_URL": testenv.RedisURL(), "NATS_URL": e.vars["NATS_URL"], "SESSIONSVC_API_KEYS": appKey}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- sessionsvc.Run(ctx, []string{"-listen", "127.0.0.1:0", "-redis-key-prefix", prefix, "-log-level", "warn"},
			func(k string) string { return svcEnv[k] }, io.Discard, func(a string) { addr <- a })
	}()
	t.Cleanup(func() { cancel(); <-done })
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("sessionsvc: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("sessionsvc did not start")
	}
	call := func(path string, body map[string]any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+appKey[strings.LastIndexByte(appKey, ':')+1:])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	var secrets []string
	remember := func(out map[string]any) string {
		tok, _ := out["token"].(string)
		if i := strings.IndexByte(tok, '.'); i > 0 {
			secrets = append(secrets, tok[i+1:])
		}
		if csrf, _ := out["csrf_token"].(string); csrf != "" {
			secrets = append(secrets, csrf)
		}
		return tok
	}
	for i := range 3 {
		user := fmt.Sprintf("tok-user-%d", i)
		tok := remember(call("/v1/sessions", map[string]any{"user_id": user, "ip": "203.0.113.7", "user_agent": "Firefox"}))
		// A careless app puts the token in the path it reports.
		call("/v1/sessions/validate", map[string]any{"token": tok, "ip": "203.0.113.7", "user_agent": "Firefox", "path": "/callback?session=" + tok})
		tok = remember(call("/v1/sessions/regenerate", map[string]any{"token": tok, "ip": "203.0.113.7", "user_agent": "Firefox " + tok}))
		call("/v1/sessions/logout", map[string]any{"token": tok})
	}
	if len(secrets) != 12 {
		t.Fatalf("%d secrets", len(secrets))
	}

	a := start(t, e.vars, "-batch-interval", "100ms")
	// 3 × created, accessed, regenerated, terminated.
	eventually(t, "events stored", 30*time.Second, func() bool { return e.rows("SELECT count() FROM {db}.session_events FINAL") == 12 })
	_ = a
	for _, table := range []string{"session_events", "alerts", "actions"} {
		for _, sec := range secrets {
			if n := e.count(t, "SELECT count() FROM {db}."+table+" WHERE position(toString(tuple(*)), '"+sec+"') > 0"); n != 0 {
				t.Fatalf("%s: a token secret in %d rows", table, n)
			}
		}
	}
	if n := e.count(t, "SELECT count() FROM {db}.session_events WHERE position(path, '"+audit.Redacted+"') > 0"); n != 3 {
		t.Fatalf("%d redacted paths, want 3", n)
	}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"export", "-user", "tok-user-1"}, func(k string) string { return e.vars[k] }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets {
		if strings.Contains(out.String(), sec) {
			t.Fatal("a token secret in an export")
		}
	}
}

// TestServePseudonymizes: with -pseudonymize-ips, the audit log keeps a
// keyed hash and the country and city of each address, never the address.
func TestServePseudonymizes(t *testing.T) {
	e := newEnv(t)
	keyFile := filepath.Join(t.TempDir(), "ip.key")
	if err := os.WriteFile(keyFile, []byte("a key of at least thirty-two bytes, kept out of git\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"GEOIP_CITY_DB": geotest.MustBuild(t).City, "AUDITOR_PSEUDONYMIZE_IPS": "true", "AUDITOR_IP_KEY_FILE": keyFile}
	for k, v := range e.vars {
		vars[k] = v
	}
	start(t, vars, "-batch-interval", "100ms")
	evs := sessionEvents(4, time.Now().Add(-time.Hour)) // from 198.51.100.7: New York
	e.publish(t, evs)
	eventually(t, "rows", 30*time.Second, func() bool { return e.rows("SELECT count() FROM {db}.session_events") == uint64(len(evs)) })
	if n := e.count(t, "SELECT count() FROM {db}.session_events WHERE ip = toIPv6('::') AND length(ip_hash) = 32 AND country = 'US' AND city = 'New York'"); n != uint64(len(evs)) {
		t.Fatalf("%d of %d rows pseudonymized with their place", n, len(evs))
	}
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"export", "-user", "u1"}, func(k string) string { return vars[k] }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "198.51.100.7") || !strings.Contains(out.String(), `"ip": "hmac:`) || !strings.Contains(out.String(), `"city": "New York"`) {
		t.Fatalf("export:\n%s", out.String())
	}
}
