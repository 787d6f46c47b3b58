package alertersvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/alerter/notify"
	"github.com/sessionmon/sessionmon/app/sessionsvc"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

const (
	adminKey   = "alerter-secret-0123456789abcdef"
	shopKey    = "shop-secret-0123456789abcdef"
	socSecret  = "soc-webhook-secret-0123456789"
	password   = "correct horse battery staple"
	viewerPass = "another long passphrase here"
)

// receiver is a webhook receiver recording what it gets.
type receiver struct {
	mu   sync.Mutex
	reqs []received
}

type received struct {
	header http.Header
	body   []byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, received{req.Header.Clone(), b})
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// stack is the session service and the alerter, both the real programs
// in-process, over the test Redis and an in-process JetStream server.
type stack struct {
	url       string // the alerter
	sessions  string // the session service
	nats      string // the NATS server's URL
	js        jetstream.JetStream
	shop      *client.Client
	hook      *receiver
	log       *testenv.LogBuffer
	publisher *eventbus.AlertPublisher
}

// writeConfig writes the alerter's configuration file.
func writeConfig(t *testing.T, hookURL string) string {
	t.Helper()
	hash := func(pw string) string {
		h, err := console.HashPassword(pw, console.Argon2Params{Memory: 64, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	cfg := fmt.Sprintf(`reviewers:
  - name: alice
    password_hash: %s
  - name: vic
    role: viewer
    password_hash: %s
notifiers:
  - name: soc
    type: webhook
    url: %s
    secret_env: SOC_SECRET
routes:
  high: [soc]
  critical: [soc]
retry: {attempts: 3, initial: 50ms, max: 200ms}
`, hash(password), hash(viewerPass), hookURL)
	path := filepath.Join(t.TempDir(), "alerter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startStack starts the stack; alerterArgs are added to the alerter's
// flags (a later flag wins: -clickhouse-url URL replaces off).
func startStack(t *testing.T, alerterArgs ...string) *stack {
	t.Helper()
	_, nc := testenv.NATS(t)
	natsURL := nc.ConnectedUrl()
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The session service.
	svcEnv := map[string]string{"REDIS_URL": testenv.RedisURL(), "NATS_URL": natsURL,
		"SESSIONSVC_API_KEYS": "alerter:admin:" + adminKey + ",shop:app:" + shopKey}
	addr := make(chan string, 1)
	svcLog := &testenv.LogBuffer{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := sessionsvc.Run(ctx, []string{"-listen", "127.0.0.1:0", "-redis-key-prefix", prefix, "-log-level", "warn"},
			func(k string) string { return svcEnv[k] }, svcLog, func(a string) { addr <- a })
		if err != nil && ctx.Err() == nil {
			t.Errorf("sessionsvc: %v\n%s", err, svcLog.String())
		}
	}()
	var svcURL string
	select {
	case a := <-addr:
		svcURL = "http://" + a
	case <-time.After(15 * time.Second):
		t.Fatalf("sessionsvc did not start:\n%s", svcLog.String())
	}

	hook := &receiver{}
	hookSrv := httptest.NewServer(hook)
	t.Cleanup(hookSrv.Close)
	st := &stack{sessions: svcURL, nats: natsURL, js: js, hook: hook, log: &testenv.LogBuffer{}, publisher: eventbus.NewAlertPublisher(js, "detector")}
	if st.shop, err = client.New(svcURL, shopKey); err != nil {
		t.Fatal(err)
	}

	// The alerter.
	env := map[string]string{"NATS_URL": natsURL, "SESSIONSVC_URL": svcURL, "ALERTER_SESSIONSVC_API_KEY": adminKey,
		"SOC_SECRET": socSecret, "ALERTER_CONFIG": writeConfig(t, hookSrv.URL+"/hook")}
	args := append([]string{"-listen", "127.0.0.1:0", "-clickhouse-url", "off", "-janitor-interval", "100ms",
		"-log-level", "debug", "-console-url", "http://127.0.0.1:1"}, alerterArgs...)
	cfg, err := ParseConfig(args, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr = make(chan string, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := serve(ctx, cfg, st.log, hooks{listening: func(a string) { addr <- a }}); err != nil && ctx.Err() == nil {
			t.Errorf("alerter: %v", err)
		}
	}()
	select {
	case a := <-addr:
		st.url = "http://" + a
	case <-time.After(15 * time.Second):
		t.Fatalf("alerter did not start:\n%s", st.log.String())
	}
	waitFor(t, "alerter ready", func() bool {
		resp, err := http.Get(st.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return st
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (st *stack) publish(t *testing.T, as ...events.Alert) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.publisher.PublishAlerts(ctx, as); err != nil {
		t.Fatal(err)
	}
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

// actions reads the reviewers' actions from the ALERTS stream.
func (st *stack) actions(t *testing.T) []events.Action {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := st.js.Stream(ctx, events.AlertStreamName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.ActionSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.ActionSubjects))
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Action
	total := 0
	for _, v := range info.State.Subjects {
		total += int(v)
	}
	for range total {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		a, err := events.DecodeAction(m.Data())
		if err != nil {
			t.Fatalf("action on %s does not decode: %v", m.Subject(), err)
		}
		if m.Subject() != events.ActionSubject(a) {
			t.Fatalf("action on %s, want %s", m.Subject(), events.ActionSubject(a))
		}
		out = append(out, a)
	}
	return out
}

func TestAlertToNotificationAndMetrics(t *testing.T) {
	st := startStack(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	st.publish(t, alertertest.TravelAlert("e2e1", "bob", now), alertertest.TravelAlert("e2e2", "bob", now.Add(time.Minute)))
	ctx := context.Background()
	if _, err := st.js.Publish(ctx, "alerts.05.junk", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// The detector's enforcement of the second alert, as its enforcer
	// publishes it.
	if err := st.publisher.PublishAction(ctx, events.Action{ID: "enf-e2e2", Time: now, Kind: events.KindEnforcement,
		Actor: "detector", Action: "reauth", AlertID: "e2e2", Rule: "impossible-travel", UserID: "bob", SessionID: "07bbbb",
		Result: events.ResultDone, Attempts: 1}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "the webhook", func() bool { return len(st.hook.got()) == 1 })
	r := st.hook.got()[0]
	if err := notify.Verify([]byte(socSecret), r.header.Get(notify.SignatureHeader), r.body, time.Now(), time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
	var p notify.WebhookPayload
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != notify.EventOpened || p.Incident.ID != "e2e1" || p.URL != "http://127.0.0.1:1/alerts/e2e1" || p.Alert.Evidence.Events[1].City != "Sydney" {
		t.Fatalf("payload: %+v", p)
	}

	metric := func(body, line string) bool {
		for l := range strings.SplitSeq(body, "\n") {
			if l == line {
				return true
			}
		}
		return false
	}
	var body string
	waitFor(t, "metrics", func() bool {
		_, body = get(t, st.url+"/metrics")
		return metric(body, `sessionmon_alerter_alerts_received_total{severity="high"} 2`) &&
			metric(body, `sessionmon_alerter_alerts_invalid_total 1`) &&
			metric(body, `sessionmon_alerter_notifications_sent_total{notifier="soc"} 1`) &&
			metric(body, `sessionmon_alerter_enforcements_total{result="done"} 1`) &&
			metric(body, `sessionmon_consumer_pending_messages{consumer="alerter",stream="ALERTS"} 0`)
	})
	for _, want := range []string{`sessionmon_alerter_incidents{severity="high",state="open"} 1`, `sessionmon_alerter_incidents_opened_total{severity="high"} 1`} {
		if !metric(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(body, `sessionmon_build_info{go_version="go`) {
		t.Error("metrics lack sessionmon_build_info")
	}
	code, ready := get(t, st.url+"/readyz")
	if code != 200 || !strings.Contains(ready, `"incidents":"loaded"`) || !strings.Contains(ready, `"sessionsvc":"ok"`) {
		t.Fatalf("readyz %d %s", code, ready)
	}
	if code, _ := get(t, st.url+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	code, login := get(t, st.url+"/login")
	if code != 200 || !strings.Contains(login, `name="login_csrf"`) {
		t.Fatalf("console login page: %d", code)
	}
	if strings.Contains(st.log.String(), adminKey) || strings.Contains(st.log.String(), socSecret) {
		t.Fatal("a secret reached the log")
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("reviewers:\n  - name: alice\n    password_hash: plain\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{nil, nil, []string{"ALERTER_CONFIG (-config): required", "ALERTER_SESSIONSVC_API_KEY (-sessionsvc-api-key): required"}},
		{[]string{"-config", bad}, map[string]string{"ALERTER_SESSIONSVC_API_KEY": "k"},
			[]string{`ALERTER_CONFIG (-config): ` + bad + `:2: reviewer "alice": password_hash: not an argon2id`}},
		{[]string{"-config", filepath.Join(dir, "missing.yaml")}, map[string]string{"ALERTER_SESSIONSVC_API_KEY": "k"},
			[]string{"ALERTER_CONFIG (-config): open "}},
		{nil, map[string]string{"ALERTER_GROUP_WINDOW": "soon"}, []string{`ALERTER_GROUP_WINDOW: invalid value "soon"`}},
		{[]string{"-clickhouse-url", "http://x"}, nil, []string{"CLICKHOUSE_URL (-clickhouse-url): scheme \"http\""}},
		{[]string{"-trusted-proxies", "10.0.0.0/8,nope"}, nil, []string{`ALERTER_TRUSTED_PROXIES (-trusted-proxies): "nope" is not a CIDR`}},
		{[]string{"-tls-cert", "x.pem"}, nil, []string{"ALERTER_TLS_CERT (-tls-cert): give both"}},
		{[]string{"-sessionsvc-url", "ftp://x"}, nil, []string{"SESSIONSVC_URL (-sessionsvc-url): want http(s)://host:port"}},
		{[]string{"-retention", "-1h"}, nil, []string{"ALERTER_RETENTION (-retention): must be positive"}},
		{[]string{"-nats-url", ""}, map[string]string{"NATS_TLS_CERT": "a.crt", "NATS_TLS_KEY": "/nonexistent/a.key"}, []string{
			"NATS_URL (-nats-url): required", "NATS_TLS_KEY (-nats-tls-key): stat /nonexistent/a.key"}},
	}
	for _, c := range cases {
		_, err := ParseConfig(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil {
			t.Errorf("%v %v: no error", c.args, c.env)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v:\n got %v\n want it to contain %q", c.args, c.env, err, w)
			}
		}
	}
}

// -version prints the build and exits without error, whatever else is
// missing.
func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-version"}, func(string) string { return "" }, io.Discard, &out); err != nil || !strings.HasPrefix(out.String(), "alerter ") {
		t.Fatalf("-version: %v %q", err, out.String())
	}
}

func TestHashPassword(t *testing.T) {
	var out bytes.Buffer
	if err := HashPassword([]string{"-memory", "64", "-time", "1", "-threads", "1"}, strings.NewReader("a long enough password\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	h, err := console.ParseHash(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Verify("a long enough password") {
		t.Fatal("the printed hash does not verify the password")
	}
	if err := HashPassword(nil, strings.NewReader("short\n"), io.Discard, io.Discard); err == nil {
		t.Fatal("a short password was hashed")
	}
}
