package detector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/rules"
)

// sliceSource is a Source over slices: history, then live deliveries.
type sliceSource struct {
	history []events.Event
	live    chan Delivery
	mu      sync.Mutex
	done    []string // IDs (or subjects) acknowledged, in order
}

func (s *sliceSource) History(_ context.Context, since time.Time, fn func(events.Event)) error {
	for _, ev := range s.history {
		if !ev.Time.Before(since) {
			fn(ev)
		}
	}
	return nil
}

func (s *sliceSource) Next(ctx context.Context) (Delivery, error) {
	select {
	case d := <-s.live:
		return d, nil
	case <-ctx.Done():
		return Delivery{}, ctx.Err()
	}
}

func (s *sliceSource) deliver(ev events.Event) {
	s.live <- Delivery{Event: ev, Subject: events.SubjectFor(ev), Done: s.ack(ev.ID)}
}

func (s *sliceSource) ack(id string) func() {
	return func() { s.mu.Lock(); s.done = append(s.done, id); s.mu.Unlock() }
}

func (s *sliceSource) acked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.done)
}

// fakeSink stores alerts and dead letters, failing the first `fail` calls.
type fakeSink struct {
	mu      sync.Mutex
	fail    int
	alerts  []events.Alert
	letters []string
	data    [][]byte // of the letters
	actions []events.Action
}

func (f *fakeSink) try() error {
	if f.fail > 0 {
		f.fail--
		return errors.New("nats: no responders")
	}
	return nil
}

func (f *fakeSink) PublishAlerts(_ context.Context, as []events.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.try(); err != nil {
		return err
	}
	f.alerts = append(f.alerts, as...)
	return nil
}

func (f *fakeSink) DeadLetter(_ context.Context, subject string, data []byte, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.try(); err != nil {
		return err
	}
	f.letters = append(f.letters, subject+": "+reason)
	f.data = append(f.data, data)
	return nil
}

func (f *fakeSink) PublishAction(_ context.Context, a events.Action) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.try(); err != nil {
		return err
	}
	f.actions = append(f.actions, a)
	return nil
}

func (f *fakeSink) snapshot() (alerts []events.Alert, letters []string, actions []events.Action) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.alerts), slices.Clone(f.letters), slices.Clone(f.actions)
}

// burstRules fire on the third validate of a session within a minute.
func burstRules(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.Parse("burst.yaml", []byte(`
rules:
  - name: burst
    type: request_burst
    scope: session
    threshold: 2
    window: 1m
    cooldown: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startService(t *testing.T, src *sliceSource, sink *fakeSink, set *rules.Set, now time.Time) (*Service, context.CancelFunc, chan error) {
	t.Helper()
	svc := NewService(ServiceConfig{Engine: New(set, nil), Source: src, Sink: sink, Warmup: time.Hour, Now: func() time.Time { return now }})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return svc, cancel, errc
}

// Events replayed at start rebuild the windows and cooldowns without
// raising alerts again; the live events then act on the rebuilt state.
func TestServiceWarmupDoesNotRefire(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sid := "03AAAAAAAAAAAAAAAAAAAAAA"
	access := func(i int, user, sid string) events.Event {
		return ev(fmt.Sprint("e", i), events.SessionAccessed, user, sid, "192.0.2.1", t0.Add(time.Duration(i)*time.Second))
	}
	src := &sliceSource{live: make(chan Delivery)}
	// History: three accesses of one session (the burst fired before the
	// restart), two of another (one short of firing), and one too old.
	src.history = []events.Event{access(-7200, "old", "04OLDOLDOLDOLDOLDOLDOLDO"), access(1, "u", sid), access(2, "u", sid),
		access(3, "u", sid), access(4, "v", "05BBBBBBBBBBBBBBBBBBBBBB"), access(5, "v", "05BBBBBBBBBBBBBBBBBBBBBB")}
	sink := &fakeSink{}
	svc, _, _ := startService(t, src, sink, burstRules(t), t0.Add(time.Minute))
	<-svc.Ready()
	if a, _, _ := sink.snapshot(); len(a) != 0 {
		t.Fatalf("warm-up raised %d alerts", len(a))
	}
	st, _ := svc.Stats(context.Background())
	if st.Sessions != 2 {
		t.Fatalf("state after warm-up: %+v (the event older than the warm-up must not count)", st)
	}
	src.deliver(access(6, "u", sid))                        // in cooldown: no second alert
	src.deliver(access(7, "v", "05BBBBBBBBBBBBBBBBBBBBBB")) // third within the window: fires
	waitFor(t, "two acks", func() bool { return len(src.acked()) == 2 })
	alerts, _, _ := sink.snapshot()
	if len(alerts) != 1 || alerts[0].UserID != "v" || alerts[0].Evidence.Count != 3 {
		t.Fatalf("alerts %+v", alerts)
	}
}

// A malformed message goes to the dead letters with the field that was
// wrong, is acknowledged, and the consumer goes on.
func TestServiceDeadLetters(t *testing.T) {
	src := &sliceSource{live: make(chan Delivery)}
	sink := &fakeSink{fail: 2}
	svc, _, _ := startService(t, src, sink, burstRules(t), time.Now())
	<-svc.Ready()
	_, err := events.Decode([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"session.created","time":"2026-01-01T00:00:00Z","dataschema":"urn:sessionmon:events:v1","data":{"user_id":7}}`))
	src.live <- Delivery{Err: err, Subject: "sessions.01.session.created", Data: []byte("raw"), Done: src.ack("bad")}
	src.deliver(ev("good", events.SessionCreated, "u", "01AAAAAAAAAAAAAAAAAAAAAA", "192.0.2.1", time.Now()))
	waitFor(t, "both acked", func() bool { return len(src.acked()) == 2 })
	_, letters, _ := sink.snapshot()
	if got := src.acked(); got[0] != "bad" || got[1] != "good" {
		t.Fatalf("ack order %v", got)
	}
	if len(letters) != 1 || !strings.HasPrefix(letters[0], `sessions.01.session.created: event: field "data.user_id": `) {
		t.Fatalf("dead letters %q", letters)
	}
}

// When alerts cannot be stored the event is not acknowledged until they
// are: the stream waits, nothing is lost.
func TestServiceRetriesAlertsBeforeAck(t *testing.T) {
	src := &sliceSource{live: make(chan Delivery)}
	sink := &fakeSink{}
	svc, _, _ := startService(t, src, sink, burstRules(t), time.Now())
	<-svc.Ready()
	t0 := time.Now()
	sid := "03AAAAAAAAAAAAAAAAAAAAAA"
	for i := range 2 {
		src.deliver(ev(fmt.Sprint(i), events.SessionAccessed, "u", sid, "192.0.2.1", t0))
	}
	waitFor(t, "two acks", func() bool { return len(src.acked()) == 2 })
	sink.mu.Lock()
	sink.fail = 2
	sink.mu.Unlock()
	src.deliver(ev("2", events.SessionAccessed, "u", sid, "192.0.2.1", t0))
	waitFor(t, "the third ack", func() bool { return len(src.acked()) == 3 })
	alerts, _, _ := sink.snapshot()
	if len(alerts) != 1 {
		t.Fatalf("alerts %+v", alerts)
	}
}

// A reload swaps the rules between events and keeps the state.
func TestServiceReload(t *testing.T) {
	src := &sliceSource{live: make(chan Delivery)}
	sink := &fakeSink{}
	svc, _, _ := startService(t, src, sink, rules.Default(), time.Now())
	<-svc.Ready()
	t0 := time.Now()
	sid := "03AAAAAAAAAAAAAAAAAAAAAA"
	for i := range 2 {
		src.deliver(ev(fmt.Sprint(i), events.SessionAccessed, "u", sid, "192.0.2.1", t0))
	}
	if err := svc.Reload(context.Background(), burstRules(t)); err != nil {
		t.Fatal(err)
	}
	st, _ := svc.Stats(context.Background())
	if st.RulesVersion != burstRules(t).Version() || st.Sessions != 1 {
		t.Fatalf("after reload: %+v", st)
	}
	// The new rule counts from its own start: the third access after the
	// reload fires it.
	for i := range 3 {
		src.deliver(ev(fmt.Sprint("r", i), events.SessionAccessed, "u", sid, "192.0.2.1", t0))
	}
	waitFor(t, "the alert", func() bool { a, _, _ := sink.snapshot(); return len(a) == 1 })
	if a, _, _ := sink.snapshot(); a[0].Rule != "burst" || a[0].Evidence.Count != 3 {
		t.Fatalf("alert %+v", a[0])
	}
}

func TestPartitions(t *testing.T) {
	for _, c := range []struct {
		group, groups int
		want          []int
	}{
		{0, 1, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
		{1, 4, []int{1, 5, 9, 13}},
		{15, 16, []int{15}},
		{2, 3, []int{2, 5, 8, 11, 14}},
	} {
		got, err := Partitions(c.group, c.groups)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Partitions(%d, %d) = %v, %v", c.group, c.groups, got, err)
		}
	}
	// Every partition is owned by exactly one group.
	for groups := 1; groups <= events.Partitions; groups++ {
		seen := map[int]int{}
		for g := range groups {
			ps, _ := Partitions(g, groups)
			for _, p := range ps {
				seen[p]++
			}
		}
		for p := range events.Partitions {
			if seen[p] != 1 {
				t.Fatalf("groups=%d: partition %d owned %d times", groups, p, seen[p])
			}
		}
	}
	for _, c := range [][2]int{{0, 0}, {1, 1}, {-1, 2}, {0, 17}} {
		if _, err := Partitions(c[0], c[1]); err == nil {
			t.Errorf("Partitions(%d, %d) accepted", c[0], c[1])
		}
	}
}

// fakeAPI answers the enforcer's calls with the errors queued for it.
type fakeAPI struct {
	mu    sync.Mutex
	errs  []error
	calls []string
}

func (f *fakeAPI) call(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}

func (f *fakeAPI) RevokeSession(_ context.Context, sid, reason, rule string) error {
	return f.call("revoke " + sid + " " + reason + " " + rule)
}

func (f *fakeAPI) ForceReauth(_ context.Context, sid, reason, rule string) error {
	return f.call("reauth " + sid + " " + reason + " " + rule)
}

func (f *fakeAPI) RevokeUserSessions(_ context.Context, user, reason, _ string) (int, error) {
	return 3, f.call("revoke-user " + user + " " + reason)
}

func alertFor(action rules.Action, mode rules.Mode) events.Alert {
	a := events.Alert{ID: "a1", Rule: "travel", RuleType: "impossible_travel", Severity: "high", UserID: "u",
		Action: string(action), Mode: string(mode), ActionResult: "pending", Target: "03AAAAAAAAAAAAAAAAAAAAAA"}
	if action == rules.ActionRevokeUser {
		a.Target = "u"
	}
	return a
}

func TestEnforce(t *testing.T) {
	down := &client.Error{Status: http.StatusServiceUnavailable, Code: "unavailable"}
	gone := &client.Error{Status: http.StatusNotFound, Code: "not_found"}
	badKey := &client.Error{Status: http.StatusUnauthorized, Code: "unauthorized"}
	cases := []struct {
		name             string
		alert            events.Alert
		errs             []error
		attempt          int
		wantRetry        bool
		wantResult, want string
		wantCall         string
	}{
		{"reauth", alertFor(rules.ActionReauth, rules.Enforce), nil, 1, false, "done", "", "reauth 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
		{"revoke", alertFor(rules.ActionRevokeSession, rules.Enforce), nil, 1, false, "done", "", "revoke 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
		{"revoke user", alertFor(rules.ActionRevokeUser, rules.Enforce), nil, 1, false, "done", "", "revoke-user u impossible_travel"},
		{"service down", alertFor(rules.ActionReauth, rules.Enforce), []error{down}, 1, true, "", "", "reauth 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
		{"bad api key", alertFor(rules.ActionReauth, rules.Enforce), []error{badKey}, 1, true, "", "", "reauth 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
		{"session gone", alertFor(rules.ActionRevokeSession, rules.Enforce), []error{gone}, 1, false, "failed", "not_found", "revoke 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
		{"gave up", alertFor(rules.ActionReauth, rules.Enforce), []error{down}, 200, false, "failed", "gave_up", "reauth 03AAAAAAAAAAAAAAAAAAAAAA impossible_travel travel"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := &fakeAPI{errs: c.errs}
			e := NewEnforcer(api, nil, nil, nil, nil)
			act, retry := e.Enforce(context.Background(), c.alert, c.attempt)
			if retry != c.wantRetry || (!retry && (act.Result != c.wantResult || act.Error != c.want)) {
				t.Fatalf("retry %v, action %+v", retry, act)
			}
			if len(api.calls) != 1 || api.calls[0] != c.wantCall {
				t.Fatalf("calls %q", api.calls)
			}
			if !retry && (act.Kind != events.KindEnforcement || act.Actor != "detector" || act.AlertID != "a1" || act.Attempts != c.attempt) {
				t.Fatalf("action %+v", act)
			}
		})
	}
}

// alertQueue is an AlertSource over a channel; Retry puts the alert back.
type alertQueue struct {
	ch     chan AlertDelivery
	mu     sync.Mutex
	acks   int
	delays []time.Duration
}

func (q *alertQueue) Next(ctx context.Context) (AlertDelivery, error) {
	select {
	case d := <-q.ch:
		return d, nil
	case <-ctx.Done():
		return AlertDelivery{}, ctx.Err()
	}
}

func (q *alertQueue) push(a events.Alert, attempt int) {
	d := AlertDelivery{Alert: a, Attempt: attempt}
	d.Ack = func() error { q.mu.Lock(); q.acks++; q.mu.Unlock(); return nil }
	d.Retry = func(delay time.Duration) error {
		q.mu.Lock()
		q.delays = append(q.delays, delay)
		q.mu.Unlock()
		go q.push(a, attempt+1)
		return nil
	}
	q.ch <- d
}

// The enforcer retries with backoff while the session service is down,
// records one action when the call goes through, and skips alerts that ask
// for nothing (alert-only, log-only).
func TestEnforcerRun(t *testing.T) {
	down := &client.Error{Status: http.StatusServiceUnavailable, Code: "unavailable"}
	api := &fakeAPI{errs: []error{down, down}}
	q := &alertQueue{ch: make(chan AlertDelivery)}
	sink := &fakeSink{}
	e := NewEnforcer(api, q, sink, nil, nil)
	e.Backoff = Backoff(time.Millisecond, 4*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	q.push(alertFor(rules.ActionAlert, rules.Enforce), 1)
	q.push(alertFor(rules.ActionReauth, rules.LogOnly), 1)
	q.push(alertFor(rules.ActionRevokeSession, rules.Enforce), 1)
	waitFor(t, "three acks", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.acks == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, _, actions := sink.snapshot()
	if len(actions) != 1 || actions[0].Result != "done" || actions[0].Attempts != 3 || actions[0].Action != "revoke_session" {
		t.Fatalf("actions %+v", actions)
	}
	if !slices.Equal(q.delays, []time.Duration{time.Millisecond, 2 * time.Millisecond}) {
		t.Fatalf("backoff %v", q.delays)
	}
	if len(api.calls) != 3 {
		t.Fatalf("calls %q", api.calls)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff(250*time.Millisecond, 30*time.Second)
	var got []time.Duration
	for i := 1; i <= 10; i++ {
		got = append(got, b(i))
	}
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("backoff %v", got)
	}
}
