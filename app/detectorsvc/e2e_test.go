package detectorsvc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/app/sessionsvc"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

const (
	appSecret   = "shop-secret-0123456789abcdef"
	adminSecret = "detector-secret-0123456789ab"
)

// Addresses of the test GeoIP networks (geo/geodb/networks.csv).
const (
	london    = "192.0.2.10"
	londonV6  = "2001:db8:1::5"
	sydney    = "198.51.100.130"
	newYork   = "198.51.100.10"
	firefox   = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
	chromeMac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/537.36 Chrome/141.0 Safari/537.36"
)

// pipeline is a session service over the test Redis and an in-process
// NATS, with detectors started against them.
type pipeline struct {
	nc      *nats.Conn
	natsURL string
	svcURL  string
	app     *client.Client
	geo     geotest.Paths
	prefix  string // of the Redis keys
}

func newPipeline(t testing.TB) *pipeline {
	t.Helper()
	rdb := testenv.Redis(t)
	ns, nc := testenv.NATS(t)
	p := &pipeline{nc: nc, natsURL: ns.ClientURL(), geo: geotest.MustBuild(t), prefix: testenv.Prefix(t, rdb)}
	p.svcURL = p.startSessionsvc(t, "127.0.0.1:0")
	var err error
	if p.app, err = client.New(p.svcURL, appSecret); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSessionsvc runs a session service on listen, over the pipeline's
// Redis keys and NATS, until the test ends, and returns its URL.
func (p *pipeline) startSessionsvc(t testing.TB, listen string) string {
	t.Helper()
	env := map[string]string{
		"REDIS_URL":           testenv.RedisURL(),
		"NATS_URL":            p.natsURL,
		"SESSIONSVC_API_KEYS": "shop:app:" + appSecret + ",detector:admin:" + adminSecret,
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	log := &testenv.LogBuffer{}
	go func() {
		done <- sessionsvc.Run(ctx, []string{"-listen", listen, "-redis-key-prefix", p.prefix}, func(k string) string { return env[k] }, log, func(a string) { addr <- a })
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addr:
		return "http://" + a
	case err := <-done:
		t.Fatalf("sessionsvc did not start: %v\n%s", err, log.String())
	}
	return ""
}

// detectorProc is a running `detector run`.
type detectorProc struct {
	addr string
	log  *testenv.LogBuffer
	stop func()
}

// startDetector runs a detector and waits until it is ready (warm-up done).
func (p *pipeline) startDetector(t testing.TB, extra map[string]string, args ...string) *detectorProc {
	return p.startDetectorWith(t, runHooks{}, extra, args...)
}

func (p *pipeline) startDetectorWith(t testing.TB, hooks runHooks, extra map[string]string, args ...string) *detectorProc {
	t.Helper()
	env := map[string]string{
		"NATS_URL": p.natsURL, "SESSIONSVC_URL": p.svcURL, "SESSIONSVC_API_KEY": adminSecret,
		"GEOIP_CITY_DB": p.geo.City, "GEOIP_ASN_DB": p.geo.ASN, "GEOIP_ANONYMOUS_DB": p.geo.Anonymous,
	}
	for k, v := range extra {
		env[k] = v
	}
	level := "debug"
	if _, bench := t.(*testing.B); bench {
		level = "warn"
	}
	cfg, err := parseRunConfig(append([]string{"-listen", "127.0.0.1:0", "-log-level", level}, args...), func(k string) string { return env[k] }, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	d := &detectorProc{log: &testenv.LogBuffer{}}
	hooks.listening = func(a string) { addr <- a }
	go func() { done <- serve(ctx, cfg, d.log, hooks) }()
	var once sync.Once
	d.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("detector: %v", err)
			}
		})
	}
	t.Cleanup(d.stop)
	select {
	case d.addr = <-addr:
	case err := <-done:
		t.Fatalf("detector did not start: %v\n%s", err, d.log.String())
	}
	waitUntil(t, "the detector is ready", func() bool {
		resp, err := http.Get("http://" + d.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return d
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *pipeline) login(t testing.TB, user, ip, ua string) *client.Issued {
	t.Helper()
	s, err := p.app.CreateSession(context.Background(), client.CreateRequest{UserID: user, IP: ip, UserAgent: ua})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *pipeline) validate(token, ip, ua string) error {
	_, err := p.app.Validate(context.Background(), client.AccessRequest{Token: token, IP: ip, UserAgent: ua})
	return err
}

func code(err error) string {
	if ce, ok := err.(*client.Error); ok {
		return ce.Code
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// alertsAndActions reads the whole ALERTS stream.
func (p *pipeline) alertsAndActions(t *testing.T) ([]events.Alert, []events.Action) {
	t.Helper()
	js, _ := jetstream.New(p.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.AlertStreamName)
	if err != nil {
		return nil, nil
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var alerts []events.Alert
	var actions []events.Action
	for n := uint64(0); n < info.State.Msgs; {
		batch, err := c.Fetch(int(info.State.Msgs-n), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			n++
			if strings.HasPrefix(m.Subject(), "alerts.") {
				a, err := events.DecodeAlert(m.Data())
				if err != nil {
					t.Fatalf("undecodable alert: %v", err)
				}
				alerts = append(alerts, a)
			} else {
				a, err := events.DecodeAction(m.Data())
				if err != nil {
					t.Fatalf("undecodable action: %v", err)
				}
				actions = append(actions, a)
			}
		}
	}
	return alerts, actions
}

func alertsOf(as []events.Alert, rule, user string) []events.Alert {
	var out []events.Alert
	for _, a := range as {
		if a.Rule == rule && (a.UserID == user || a.IP == user) {
			out = append(out, a)
		}
	}
	return out
}

// The attack scenarios of the issue, through the real session service over
// Redis, real JetStream and the detector: each ends with the alert stored
// and the session refused.
func TestAttacksEndInRefusal(t *testing.T) {
	p := newPipeline(t)
	det := p.startDetector(t, nil)

	// Impossible travel: alice logs in in London, then in Sydney a moment
	// later; the later session must re-authenticate.
	p.login(t, "alice", london, firefox)
	syd := p.login(t, "alice", sydney, firefox)
	waitUntil(t, "alice's Sydney session answers reauth_required", func() bool {
		return code(p.validate(syd.Token, sydney, firefox)) == "reauth_required"
	})

	// Shared session: bob's cookie replayed from a second browser.
	bob := p.login(t, "bob", london, firefox)
	if err := p.validate(bob.Token, london, firefox); err != nil {
		t.Fatal(err)
	}
	if err := p.validate(bob.Token, londonV6, chromeMac); err != nil {
		t.Fatal(err) // the replay itself is served: detection is after the fact
	}
	waitUntil(t, "bob's session answers session_revoked", func() bool {
		return code(p.validate(bob.Token, london, firefox)) == "session_revoked"
	})

	// Burst: carol's session validated 150 times at once.
	carol := p.login(t, "carol", newYork, firefox)
	for range 150 {
		if err := p.validate(carol.Token, newYork, firefox); err != nil {
			t.Fatal(err)
		}
	}

	var alerts []events.Alert
	var actions []events.Action
	waitUntil(t, "the alerts and actions are stored", func() bool {
		alerts, actions = p.alertsAndActions(t)
		return len(alertsOf(alerts, "session-burst", "carol")) == 1 && len(actions) >= 2
	})
	travel := alertsOf(alerts, "impossible-travel", "alice")
	if len(travel) != 1 || travel[0].Action != "reauth" || travel[0].Target != syd.SessionID || travel[0].Evidence.SpeedKmh < 1000 ||
		travel[0].Evidence.Events[0].City != "London" || travel[0].Evidence.Events[1].City != "Sydney" {
		t.Fatalf("travel alerts %+v", travel)
	}
	shared := alertsOf(alerts, "shared-session", "bob")
	if len(shared) != 1 || shared[0].Action != "revoke_session" || shared[0].Target != bob.SessionID ||
		len(shared[0].Evidence.UserAgents) != 2 {
		t.Fatalf("shared-session alerts %+v", shared)
	}
	burst := alertsOf(alerts, "session-burst", "carol")
	if burst[0].Evidence.Count != 101 || burst[0].Action != "alert" || burst[0].ActionResult != "none" {
		t.Fatalf("burst alert %+v", burst[0])
	}
	byAlert := map[string]events.Action{}
	for _, a := range actions {
		byAlert[a.AlertID] = a
	}
	for _, a := range []events.Alert{travel[0], shared[0]} {
		act, ok := byAlert[a.ID]
		if !ok || act.Result != events.ResultDone || act.Actor != "detector" || act.SessionID != a.Target {
			t.Fatalf("action for %s: %+v (%v)", a.Rule, act, ok)
		}
	}
	metrics := get(t, "http://"+det.addr+"/metrics")
	for _, want := range []string{
		`sessionmon_detector_alerts_total{action="reauth",rule="impossible-travel",severity="high"} 1`,
		`sessionmon_detector_actions_total{action="revoke_session",result="done"} 1`,
		`sessionmon_consumer_pending_messages{consumer="detector-g0-of-1",stream="SESSIONS"}`,
		`sessionmon_consumer_pending_messages{consumer="enforcer",stream="ALERTS"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	waitUntil(t, "rule evaluations are exported", func() bool {
		return strings.Contains(get(t, "http://"+det.addr+"/metrics"), `sessionmon_detector_rule_evaluations_total{rule="shared-session"}`)
	})
	if strings.Contains(det.log.String(), syd.Token) || strings.Contains(det.log.String(), bob.Token) {
		t.Fatal("a token in the detector's log")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// A restarted detector rebuilds its windows from the stream before acting:
// an attack that straddles the restart is caught, and what fired before
// the restart does not fire again.
func TestRestartRebuildsWindowsWithoutRefiring(t *testing.T) {
	p := newPipeline(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`
rules:
  - name: burst
    type: request_burst
    scope: session
    threshold: 100
    window: 10m
    cooldown: 1h
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RULES_FILE": rulesFile}
	det := p.startDetector(t, env)

	dave := p.login(t, "dave", newYork, firefox)
	erin := p.login(t, "erin", newYork, firefox)
	for range 60 {
		_ = p.validate(dave.Token, newYork, firefox)
	}
	for range 120 {
		_ = p.validate(erin.Token, newYork, firefox) // fires before the restart
	}
	waitUntil(t, "erin's alert", func() bool {
		alerts, _ := p.alertsAndActions(t)
		return len(alertsOf(alerts, "burst", "erin")) == 1
	})
	p.waitAcked(t)
	det.stop()

	// While no detector runs, dave's session goes on: 60 + 60 > 100.
	for range 60 {
		_ = p.validate(dave.Token, newYork, firefox)
	}
	det2 := p.startDetector(t, env)
	waitUntil(t, "dave's alert after the restart", func() bool {
		alerts, _ := p.alertsAndActions(t)
		return len(alertsOf(alerts, "burst", "dave")) == 1
	})
	p.waitAcked(t)
	alerts, _ := p.alertsAndActions(t)
	if n := len(alertsOf(alerts, "burst", "erin")); n != 1 {
		t.Fatalf("erin's burst raised %d alerts across the restart", n)
	}
	if d := alertsOf(alerts, "burst", "dave"); d[0].Evidence.Count != 101 {
		t.Fatalf("dave's alert counted %d (the warm-up must count the 60 before the restart)", d[0].Evidence.Count)
	}
	// Two logins and 180 validates were handled before the restart.
	if !strings.Contains(get(t, "http://"+det2.addr+"/metrics"), "sessionmon_detector_warmup_events_total 182\n") {
		t.Error("warm-up events not counted")
	}
}

// waitAcked waits until the detector's consumer has acknowledged all it
// was delivered and has nothing pending.
func (p *pipeline) waitAcked(t *testing.T) {
	t.Helper()
	js, _ := jetstream.New(p.nc)
	waitUntil(t, "the detector consumers are caught up", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, events.StreamName, eventbus.DetectorConsumer(0, 1))
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

// A malformed event on the stream goes to the dead letters with its
// reason; the events after it are processed.
func TestMalformedEventIsDeadLettered(t *testing.T) {
	p := newPipeline(t)
	det := p.startDetector(t, nil)
	js, _ := jetstream.New(p.nc)
	ctx := context.Background()
	if _, err := js.Publish(ctx, "sessions.03.session.created", []byte(`{"specversion":"1.0","id":"bad","type":"session.created"}`)); err != nil {
		t.Fatal(err)
	}
	p.login(t, "alice", london, firefox)
	p.login(t, "alice", sydney, firefox)
	waitUntil(t, "the travel alert after the bad event", func() bool {
		alerts, _ := p.alertsAndActions(t)
		return len(alertsOf(alerts, "impossible-travel", "alice")) == 1
	})
	st, err := js.Stream(ctx, eventbus.DeadLetterStreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "deadletter.sessions.03.session.created")
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Header.Get(eventbus.DeadLetterReasonHeader); r != `event: field "source": missing` {
		t.Fatalf("reason %q", r)
	}
	if !strings.Contains(get(t, "http://"+det.addr+"/metrics"), `sessionmon_detector_dead_letters_total{reason="source"} 1`) {
		t.Error("dead letter not counted")
	}
}

// SIGHUP reloads the rules file: a bad file is refused with the rule,
// field and reason, and the running rules stay in force; a good one takes
// over without a restart.
func TestRulesReload(t *testing.T) {
	p := newPipeline(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(rulesFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: burst\n    type: request_burst\n    scope: session\n    threshold: 1000\n    window: 1m\n")
	reload := make(chan struct{})
	det := p.startDetectorWith(t, runHooks{reload: reload}, map[string]string{"RULES_FILE": rulesFile})
	metric := func(name string) string {
		for _, line := range strings.Split(get(t, "http://"+det.addr+"/metrics"), "\n") {
			if strings.HasPrefix(line, name) {
				return line
			}
		}
		return ""
	}
	before := metric("sessionmon_detector_rules_info")

	write("rules:\n  - name: burst\n    type: request_burst\n    scope: session\n    threshold: -1\n    window: 1m\n")
	reload <- struct{}{}
	waitUntil(t, "the failed reload is counted", func() bool {
		return metric(`sessionmon_detector_rules_reloads_total{result="failure"}`) == `sessionmon_detector_rules_reloads_total{result="failure"} 1`
	})
	if !strings.Contains(det.log.String(), `rule \"burst\": threshold: must be at least 1, got -1`) {
		t.Fatalf("the log does not say what is wrong:\n%s", det.log.String())
	}
	if metric("sessionmon_detector_rules_info") != before {
		t.Fatal("a bad file changed the rules in force")
	}

	write("rules:\n  - name: burst\n    type: request_burst\n    scope: session\n    threshold: 3\n    window: 1m\n")
	reload <- struct{}{}
	waitUntil(t, "the reload is counted", func() bool {
		return metric(`sessionmon_detector_rules_reloads_total{result="success"}`) == `sessionmon_detector_rules_reloads_total{result="success"} 2`
	})
	s := p.login(t, "frank", newYork, firefox)
	for range 4 {
		_ = p.validate(s.Token, newYork, firefox)
	}
	waitUntil(t, "the new threshold fires", func() bool {
		alerts, _ := p.alertsAndActions(t)
		return len(alertsOf(alerts, "burst", "frank")) == 1
	})
}

// While the session service the detector calls is down, enforcement is
// retried with backoff and counted; once it is up the session is refused.
func TestEnforcementWaitsForTheSessionService(t *testing.T) {
	p := newPipeline(t)
	// A port for a second session service, not listening yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	later := ln.Addr().String()
	ln.Close()
	det := p.startDetector(t, map[string]string{"SESSIONSVC_URL": "http://" + later})

	p.login(t, "grace", london, firefox)
	syd := p.login(t, "grace", sydney, firefox)
	waitUntil(t, "failed calls are counted", func() bool {
		return strings.Contains(get(t, "http://"+det.addr+"/metrics"), `sessionmon_detector_actions_total{action="reauth",result="retry"} 2`)
	})
	if err := p.validate(syd.Token, sydney, firefox); err != nil {
		t.Fatalf("refused before enforcement: %v", err)
	}
	p.startSessionsvc(t, later)
	waitUntil(t, "the session answers reauth_required", func() bool {
		return code(p.validate(syd.Token, sydney, firefox)) == "reauth_required"
	})
	_, actions := p.alertsAndActions(t)
	if len(actions) != 1 || actions[0].Result != events.ResultDone || actions[0].Attempts < 3 {
		t.Fatalf("actions %+v", actions)
	}
}

// A changed rules file is picked up without a signal (a ConfigMap update
// in Kubernetes, where nothing sends SIGHUP).
func TestRulesFileWatched(t *testing.T) {
	p := newPipeline(t)
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(threshold int) {
		body := fmt.Sprintf("rules:\n  - name: burst\n    type: request_burst\n    scope: session\n    threshold: %d\n    window: 1m\n", threshold)
		if err := os.WriteFile(rulesFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1000)
	det := p.startDetector(t, map[string]string{"RULES_FILE": rulesFile, "RULES_RELOAD_INTERVAL": "50ms"})
	time.Sleep(100 * time.Millisecond) // a later modification time
	write(99)
	waitUntil(t, "the changed file is loaded", func() bool {
		return strings.Contains(get(t, "http://"+det.addr+"/metrics"), `sessionmon_detector_rules_reloads_total{result="success"} 2`)
	})
}
