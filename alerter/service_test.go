package alerter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/events"
)

func TestMemStoreContract(t *testing.T) {
	alertertest.RunStoreTests(t, func(*testing.T) alerter.Store { return alertertest.NewMemStore() })
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a notifier that fails as told and records what it got.
type recorder struct {
	mu    sync.Mutex
	got   []alerter.Notification
	fails []error // returned by the first attempts, in order
}

func (r *recorder) Notify(_ context.Context, n alerter.Notification) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, n)
	if len(r.fails) > 0 {
		err := r.fails[0]
		r.fails = r.fails[1:]
		return err
	}
	return nil
}

func (r *recorder) calls() []alerter.Notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]alerter.Notification(nil), r.got...)
}

type env struct {
	svc     *alerter.Service
	store   *alertertest.MemStore
	actions *alertertest.Actions
	clock   *clock
	hook    *recorder
	m       *alerter.Metrics
	cancel  func()
}

func newEnv(t *testing.T, mod ...func(*alerter.Config)) *env {
	t.Helper()
	e := &env{store: alertertest.NewMemStore(), actions: &alertertest.Actions{}, hook: &recorder{},
		clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, m: alerter.NewMetrics(prometheus.NewRegistry())}
	router, err := alerter.NewRouter(map[string]alerter.Notifier{"hook": e.hook},
		map[string][]string{"high": {"hook"}, "critical": {"hook"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := alerter.Config{
		Store: e.store, Router: router, Actions: e.actions, Window: time.Hour,
		Retry:           alerter.Retry{Attempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		JanitorInterval: 20 * time.Millisecond, ConsoleURL: "https://alerts.example/",
		Now: e.clock.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: e.m,
	}
	for _, f := range mod {
		f(&cfg)
	}
	e.svc, err = alerter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.start(t)
	return e
}

func (e *env) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	e.cancel = stop
	t.Cleanup(stop)
	waitFor(t, "index loaded", e.svc.Ready)
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) handle(t *testing.T, a events.Alert) {
	t.Helper()
	if err := e.svc.HandleAlert(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

func (e *env) get(t *testing.T, id string) *alerter.Incident {
	t.Helper()
	inc, err := e.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return inc
}

func TestGrouping(t *testing.T) {
	e := newEnv(t)
	t0 := e.clock.Now()
	e.handle(t, alertertest.TravelAlert("a1", "alice", t0))
	e.handle(t, alertertest.TravelAlert("a2", "alice", t0.Add(30*time.Minute)))
	e.handle(t, alertertest.TravelAlert("a3", "bob", t0))
	// Beyond the window of the latest alert: a new incident.
	e.handle(t, alertertest.TravelAlert("a4", "alice", t0.Add(30*time.Minute+61*time.Minute)))

	inc := e.get(t, "a1")
	if inc.Count != 2 || len(inc.Alerts) != 2 || !inc.LastSeen.Equal(t0.Add(30*time.Minute)) || inc.State != alerter.Open {
		t.Fatalf("alice's first incident: count %d, alerts %d, last seen %v, state %s", inc.Count, len(inc.Alerts), inc.LastSeen, inc.State)
	}
	if got := e.get(t, "a4"); got.Count != 1 {
		t.Fatalf("the alert after the window joined an incident: %+v", got)
	}
	if got := e.get(t, "a3"); got.UserID != "bob" || got.Count != 1 {
		t.Fatalf("bob's incident: %+v", got)
	}
	if n := len(e.svc.List(alerter.Filter{})); n != 3 {
		t.Fatalf("%d incidents listed, want 3", n)
	}

	// A closed incident takes no repeats.
	if _, err := e.svc.Decide(context.Background(), "a4", "carol", alerter.Resolve, ""); err != nil {
		t.Fatal(err)
	}
	e.handle(t, alertertest.TravelAlert("a5", "alice", t0.Add(92*time.Minute)))
	if got := e.get(t, "a5"); got.Count != 1 || got.State != alerter.Open {
		t.Fatalf("repeat after resolve: %+v", got)
	}

	// Alerts about an IP group by IP.
	ip := func(id string, at time.Time) events.Alert {
		return events.Alert{ID: id, Time: at, Rule: "credential-stuffing", RuleType: "credential_stuffing",
			Severity: "high", IP: "198.51.100.9", Action: "alert", Summary: "stuffing",
			Evidence: events.Evidence{Count: 20, Users: []string{"u1", "u2"}}}
	}
	e.handle(t, ip("s1", t0))
	e.handle(t, ip("s2", t0.Add(time.Minute)))
	if got := e.get(t, "s1"); got.Count != 2 || got.IP != "198.51.100.9" {
		t.Fatalf("IP incident: %+v", got)
	}
}

func TestRedeliveredAlertIsIgnored(t *testing.T) {
	e := newEnv(t)
	a := alertertest.TravelAlert("r1", "alice", e.clock.Now())
	e.handle(t, a)
	e.handle(t, a)
	b := alertertest.TravelAlert("r2", "alice", e.clock.Now().Add(time.Minute))
	e.handle(t, b)
	e.handle(t, b)
	e.handle(t, a)
	if inc := e.get(t, "r1"); inc.Count != 2 {
		t.Fatalf("count %d after redeliveries, want 2", inc.Count)
	}
	if got := value(e.m.AlertsDuplicate); got != 3 {
		t.Fatalf("duplicates metric %v, want 3", got)
	}
	waitFor(t, "one notification", func() bool { return len(e.hook.calls()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(e.hook.calls()); n != 1 {
		t.Fatalf("%d notifications, want 1", n)
	}
}

func TestNotificationsAndEscalation(t *testing.T) {
	e := newEnv(t)
	low := alertertest.TravelAlert("n1", "alice", e.clock.Now())
	low.Severity = "medium" // not routed
	e.handle(t, low)
	time.Sleep(30 * time.Millisecond)
	if n := len(e.hook.calls()); n != 0 {
		t.Fatalf("medium incident notified %d times; it has no route", n)
	}
	high := alertertest.TravelAlert("n2", "alice", e.clock.Now().Add(time.Minute))
	e.handle(t, high)
	waitFor(t, "escalation notified", func() bool { return len(e.hook.calls()) == 1 })
	n := e.hook.calls()[0]
	if n.Reason != alerter.ReasonEscalated || n.Incident.ID != "n1" || n.Incident.Severity != "high" || n.Incident.Count != 2 ||
		n.Alert.ID != "n2" || n.URL != "https://alerts.example/alerts/n1" || n.DeliveryID == "" {
		t.Fatalf("notification: %+v", n)
	}
	waitFor(t, "delivery recorded as sent", func() bool {
		inc := e.get(t, "n1")
		return len(inc.Deliveries) == 1 && inc.Deliveries[0].Status == alerter.DeliverySent
	})
	waitFor(t, "sent metric", func() bool { return value(e.m.NotificationsSent.WithLabelValues("hook")) == 1 })
}

func TestNotificationRetries(t *testing.T) {
	e := newEnv(t)
	e.hook.fails = []error{errors.New("503 Service Unavailable"), errors.New("connection refused")}
	e.handle(t, alertertest.TravelAlert("t1", "alice", e.clock.Now()))
	waitFor(t, "sent after two failures", func() bool {
		inc := e.get(t, "t1")
		return len(inc.Deliveries) == 1 && inc.Deliveries[0].Status == alerter.DeliverySent
	})
	d := e.get(t, "t1").Deliveries[0]
	if d.Attempts != 3 || d.LastError != "" || len(e.hook.calls()) != 3 {
		t.Fatalf("delivery %+v after %d calls", d, len(e.hook.calls()))
	}
	for i, c := range e.hook.calls() {
		if c.DeliveryID != d.ID {
			t.Fatalf("attempt %d has delivery ID %q, want the same %q each time", i, c.DeliveryID, d.ID)
		}
	}
	if got := value(e.m.NotificationTries.WithLabelValues("hook", "retry")); got != 2 {
		t.Fatalf("retry attempts metric %v, want 2", got)
	}

	// Out of attempts: failed, and the error kept for the console.
	e.hook.mu.Lock()
	e.hook.fails = []error{errors.New("boom 1"), errors.New("boom 2"), errors.New("boom 3")}
	e.hook.mu.Unlock()
	e.handle(t, alertertest.TravelAlert("t2", "bob", e.clock.Now()))
	waitFor(t, "failed after 3 attempts", func() bool {
		inc := e.get(t, "t2")
		return len(inc.Deliveries) == 1 && inc.Deliveries[0].Status == alerter.DeliveryFailed
	})
	if d := e.get(t, "t2").Deliveries[0]; d.Attempts != 3 || d.LastError != "boom 3" {
		t.Fatalf("failed delivery: %+v", d)
	}
	// The metric follows the record.
	waitFor(t, "failed metric", func() bool { return value(e.m.NotificationsFailed.WithLabelValues("hook")) == 1 })

	// A refusal is not retried.
	e.hook.mu.Lock()
	e.hook.fails = []error{alerter.Permanent(errors.New("400 Bad Request"))}
	e.hook.mu.Unlock()
	before := len(e.hook.calls())
	e.handle(t, alertertest.TravelAlert("t3", "carol", e.clock.Now()))
	waitFor(t, "refused", func() bool {
		inc := e.get(t, "t3")
		return len(inc.Deliveries) == 1 && inc.Deliveries[0].Status == alerter.DeliveryFailed
	})
	if d := e.get(t, "t3").Deliveries[0]; d.Attempts != 1 || len(e.hook.calls()) != before+1 {
		t.Fatalf("refused delivery retried: %+v", d)
	}
}

func TestOldAlertsAreNotNotified(t *testing.T) {
	e := newEnv(t, func(c *alerter.Config) { c.NotifyMaxAge = time.Hour })
	e.handle(t, alertertest.TravelAlert("o1", "alice", e.clock.Now().Add(-2*time.Hour)))
	inc := e.get(t, "o1")
	if len(inc.Deliveries) != 1 || inc.Deliveries[0].Status != alerter.DeliverySkipped {
		t.Fatalf("deliveries of an old alert: %+v", inc.Deliveries)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(e.hook.calls()); n != 0 {
		t.Fatalf("old alert notified %d times", n)
	}
}

func TestPendingDeliveryResumesAfterRestart(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	var calls int
	var mu sync.Mutex
	slow := alerter.NotifierFunc(func(ctx context.Context, n alerter.Notification) error {
		mu.Lock()
		calls++
		mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-block:
			return nil
		}
	})
	router, _ := alerter.NewRouter(map[string]alerter.Notifier{"hook": slow}, map[string][]string{"default": {"hook"}})
	svc, err := alerter.New(alerter.Config{Store: e.store, Router: router, Actions: e.actions, Now: e.clock.Now,
		Retry: alerter.Retry{Attempts: 3, Initial: time.Millisecond, Max: time.Millisecond}, JanitorInterval: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.cancel()
	e.svc = svc
	e.start(t)
	e.handle(t, alertertest.TravelAlert("p1", "alice", e.clock.Now()))
	waitFor(t, "attempt started", func() bool { mu.Lock(); defer mu.Unlock(); return calls == 1 })
	e.cancel() // shut down mid-attempt: the attempt does not count
	inc := e.get(t, "p1")
	if d := inc.Deliveries[0]; d.Status != alerter.DeliveryPending || d.Attempts != 0 {
		t.Fatalf("after shutdown: %+v", d)
	}

	// The next instance takes over once the lease has run out.
	close(block)
	svc2, _ := alerter.New(alerter.Config{Store: e.store, Router: router, Actions: e.actions, Now: e.clock.Now,
		Instance: "other", JanitorInterval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e.svc = svc2
	e.start(t)
	time.Sleep(50 * time.Millisecond)
	if d := e.get(t, "p1").Deliveries[0]; d.Status != alerter.DeliveryPending {
		t.Fatalf("taken over before the lease ran out: %+v", d)
	}
	e.clock.Advance(10 * time.Minute)
	waitFor(t, "sent by the new instance", func() bool { return e.get(t, "p1").Deliveries[0].Status == alerter.DeliverySent })
}

func TestDecisions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.handle(t, alertertest.TravelAlert("d1", "alice", e.clock.Now()))

	if _, err := e.svc.Decide(ctx, "d1", "carol", alerter.Reopen, ""); !errors.Is(err, alerter.ErrTransition) ||
		err.Error() != "transition not allowed: cannot reopen an incident that is open" {
		t.Fatalf("reopen an open incident: %v", err)
	}
	if _, err := e.svc.Decide(ctx, "d1", "carol", alerter.MarkFalsePositive, "  "); !errors.Is(err, alerter.ErrInvalid) ||
		err.Error() != "invalid: note: required to mark a false positive" {
		t.Fatalf("false positive without a note: %v", err)
	}
	if _, err := e.svc.Decide(ctx, "d1", "carol", alerter.Acknowledge, "bad\x00note"); !errors.Is(err, alerter.ErrInvalid) {
		t.Fatalf("note with NUL: %v", err)
	}
	if _, err := e.svc.Decide(ctx, "nope", "carol", alerter.Acknowledge, ""); !errors.Is(err, alerter.ErrNotFound) {
		t.Fatalf("unknown incident: %v", err)
	}
	steps := []struct {
		d    alerter.Decision
		note string
		want alerter.State
	}{
		{alerter.Acknowledge, "", alerter.Acknowledged},
		{alerter.MarkFalsePositive, "VPN exit node of the Paris office", alerter.FalsePositive},
		{alerter.Reopen, "not the VPN after all", alerter.Open},
		{alerter.Resolve, "user confirmed the trip; password reset", alerter.Resolved},
	}
	for _, s := range steps {
		e.clock.Advance(time.Minute)
		inc, err := e.svc.Decide(ctx, "d1", "carol", s.d, s.note)
		if err != nil {
			t.Fatalf("%s: %v", s.d, err)
		}
		c := inc.Changes[len(inc.Changes)-1]
		if inc.State != s.want || c.Actor != "carol" || c.To != s.want || !c.Time.Equal(e.clock.Now()) || c.Note != s.note || !c.Recorded {
			t.Fatalf("%s: state %s, change %+v", s.d, inc.State, c)
		}
	}
	acts := e.actions.List()
	if len(acts) != 4 {
		t.Fatalf("%d actions published, want 4", len(acts))
	}
	a := acts[1]
	if a.Kind != events.KindReview || a.Actor != "carol" || a.Action != "false_positive" || a.AlertID != "d1" ||
		a.Rule != "impossible-travel" || a.UserID != "alice" || a.Result != events.ResultDone || a.Note != "VPN exit node of the Paris office" {
		t.Fatalf("action: %+v", a)
	}
	b, err := events.EncodeAction(a, "alerter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.DecodeAction(b); err != nil {
		t.Fatalf("the published action does not decode: %v", err)
	}
	if got := events.ActionSubject(a); got != fmt.Sprintf("actions.%02d.false_positive", events.PartitionOf("alice")) {
		t.Fatalf("subject %s", got)
	}
}

func TestUnpublishedActionsAreRetried(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.handle(t, alertertest.TravelAlert("u1", "alice", e.clock.Now()))
	e.actions.SetFail(errors.New("nats: timeout"))
	inc, err := e.svc.Decide(ctx, "u1", "carol", alerter.Acknowledge, "")
	if err != nil {
		t.Fatalf("a decision must be kept when the action cannot be published yet: %v", err)
	}
	if inc.State != alerter.Acknowledged || inc.Changes[0].Recorded {
		t.Fatalf("after a failed publish: %+v", inc.Changes)
	}
	inc, err = e.svc.Record(ctx, "u1", alerter.Change{Actor: "carol", Action: alerter.ActionRevokeUser, Count: 2, Note: "contain"})
	if err != nil {
		t.Fatal(err)
	}
	e.actions.SetFail(nil)
	e.clock.Advance(10 * time.Second)
	waitFor(t, "both actions republished", func() bool { return len(e.actions.List()) == 2 })
	waitFor(t, "marked recorded", func() bool {
		inc := e.get(t, "u1")
		return inc.Changes[0].Recorded && inc.Changes[1].Recorded
	})
	acts := e.actions.List()
	if acts[0].ID != inc.Changes[0].ActionID || acts[1].Action != "revoke_user" || acts[1].Count != 2 {
		t.Fatalf("republished: %+v", acts)
	}
}

func TestRecordSessionAction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.handle(t, alertertest.TravelAlert("s1", "alice", e.clock.Now()))
	if _, err := e.svc.Record(ctx, "s1", alerter.Change{Actor: "carol", Action: "resolve"}); !errors.Is(err, alerter.ErrInvalid) {
		t.Fatalf("a decision through Record: %v", err)
	}
	inc, err := e.svc.Record(ctx, "s1", alerter.Change{Actor: "carol", Action: alerter.ActionRevokeSession, SessionID: "07bbbb",
		Result: events.ResultFailed, Error: "not_found"})
	if err != nil {
		t.Fatal(err)
	}
	if inc.State != alerter.Open {
		t.Fatalf("a session action changed the state to %s", inc.State)
	}
	a := e.actions.List()[0]
	if a.Action != "revoke_session" || a.SessionID != "07bbbb" || a.Result != "failed" || a.Error != "not_found" {
		t.Fatalf("action: %+v", a)
	}
}

func TestRetention(t *testing.T) {
	e := newEnv(t, func(c *alerter.Config) { c.Retention = 24 * time.Hour })
	ctx := context.Background()
	e.handle(t, alertertest.TravelAlert("k1", "alice", e.clock.Now()))
	e.handle(t, alertertest.TravelAlert("k2", "bob", e.clock.Now()))
	waitFor(t, "notified", func() bool { return len(e.hook.calls()) == 2 })
	waitFor(t, "deliveries done", func() bool {
		return e.get(t, "k1").Deliveries[0].Status == alerter.DeliverySent && e.get(t, "k2").Deliveries[0].Status == alerter.DeliverySent
	})
	if _, err := e.svc.Decide(ctx, "k1", "carol", alerter.Resolve, ""); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(25 * time.Hour)
	waitFor(t, "resolved incident deleted", func() bool {
		_, err := e.svc.Get(ctx, "k1")
		return errors.Is(err, alerter.ErrNotFound)
	})
	if _, err := e.svc.Get(ctx, "k2"); err != nil {
		t.Fatalf("an open incident was deleted: %v", err)
	}
	waitFor(t, "index updated", func() bool { return len(e.svc.List(alerter.Filter{})) == 1 })
}

func TestListFilters(t *testing.T) {
	e := newEnv(t)
	t0 := e.clock.Now()
	e.handle(t, alertertest.TravelAlert("f1", "alice", t0))
	b := alertertest.TravelAlert("f2", "Bob@example.com", t0.Add(-3*time.Hour))
	b.Rule, b.Severity = "shared-session", "critical"
	e.handle(t, b)
	if _, err := e.svc.Decide(context.Background(), "f2", "carol", alerter.Acknowledge, ""); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		f    alerter.Filter
		want string
	}{
		{alerter.Filter{}, "[f1 f2]"},
		{alerter.Filter{Severity: "critical"}, "[f2]"},
		{alerter.Filter{Rule: "impossible-travel"}, "[f1]"},
		{alerter.Filter{States: []alerter.State{alerter.Open}}, "[f1]"},
		{alerter.Filter{States: []alerter.State{alerter.Open, alerter.Acknowledged}}, "[f1 f2]"},
		{alerter.Filter{User: "bob@"}, "[f2]"},
		{alerter.Filter{From: t0.Add(-time.Hour)}, "[f1]"},
		{alerter.Filter{To: t0.Add(-time.Hour)}, "[f2]"},
		{alerter.Filter{Limit: 1}, "[f1]"},
	}
	for _, c := range cases {
		var got []string
		for _, inc := range e.svc.List(c.f) {
			got = append(got, inc.ID)
		}
		if fmt.Sprint(got) != c.want {
			t.Errorf("%+v: got %v, want %s", c.f, got, c.want)
		}
	}
	if got := fmt.Sprint(e.svc.Rules()); got != "[impossible-travel shared-session]" {
		t.Fatalf("rules %s", got)
	}
	if got := value(e.m.Incidents.WithLabelValues("critical", "acknowledged")); got != 1 {
		t.Fatalf("incidents gauge %v", got)
	}
}

func TestStateMachine(t *testing.T) {
	want := map[alerter.State]string{
		alerter.Open:          "[acknowledge resolve false_positive]",
		alerter.Acknowledged:  "[resolve false_positive reopen]",
		alerter.Resolved:      "[reopen]",
		alerter.FalsePositive: "[reopen]",
	}
	for s, w := range want {
		if got := fmt.Sprint(alerter.Allowed(s)); got != w {
			t.Errorf("from %s: %s, want %s", s, got, w)
		}
	}
	if _, err := alerter.Decision("delete").From(alerter.Open); !errors.Is(err, alerter.ErrInvalid) {
		t.Fatalf("unknown decision: %v", err)
	}
}

func TestRetryDelay(t *testing.T) {
	r := alerter.Retry{Attempts: 8, Initial: time.Second, Max: time.Minute}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: time.Minute, 20: time.Minute} {
		d := r.Delay(n, errors.New("x"))
		if d < want*8/10 || d > want*12/10 {
			t.Errorf("delay after %d attempts: %v, want %v ±20%%", n, d, want)
		}
	}
	if d := r.Delay(1, alerter.RetryAfter(errors.New("429"), 30*time.Second)); d != 30*time.Second {
		t.Errorf("Retry-After 30s: %v", d)
	}
	if d := r.Delay(1, alerter.RetryAfter(errors.New("429"), time.Hour)); d != time.Minute {
		t.Errorf("Retry-After capped at max: %v", d)
	}
}

func TestEnforcementOutcome(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	t0 := e.clock.Now()
	a1 := alertertest.TravelAlert("x1", "alice", t0)
	a1.ActionResult = "pending"
	a2 := alertertest.TravelAlert("x2", "alice", t0.Add(time.Minute))
	a2.ActionResult = "pending"
	e.handle(t, a1)
	e.handle(t, a2)
	act := events.Action{ID: "enf-2", Time: t0.Add(2 * time.Minute), Kind: events.KindEnforcement, Actor: "detector",
		Action: "reauth", AlertID: "x2", Rule: a2.Rule, UserID: "alice", SessionID: "07bbbb", Result: events.ResultFailed,
		Error: "not_found", Attempts: 3}
	if err := e.svc.HandleAction(ctx, act); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleAction(ctx, act); err != nil { // redelivered
		t.Fatal(err)
	}
	inc := e.get(t, "x1")
	if len(inc.Enforcements) != 1 || inc.Enforcements[0].Result != "failed" || inc.Enforcements[0].Error != "not_found" ||
		inc.Latest().ActionResult != "failed" || inc.Alerts[0].ActionResult != "pending" {
		t.Fatalf("enforcements %+v, latest alert's result %q", inc.Enforcements, inc.Latest().ActionResult)
	}
	// Reviewers' actions (ours) are not enforcement.
	if err := e.svc.HandleAction(ctx, events.Action{ID: "r", Kind: events.KindReview, AlertID: "x1"}); err != nil {
		t.Fatal(err)
	}
	// An action about an alert no incident holds (yet).
	err := e.svc.HandleAction(ctx, events.Action{ID: "o", Kind: events.KindEnforcement, AlertID: "nope", Rule: "r", UserID: "u"})
	if !errors.Is(err, alerter.ErrNotFound) {
		t.Fatalf("orphan action: %v", err)
	}
	if got := value(e.m.Enforcements.WithLabelValues("failed")); got != 1 {
		t.Fatalf("enforcements metric %v", got)
	}
}
