package memstore_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/sessions"
)

var _ memstore.Publisher = (*eventbus.Publisher)(nil)

func b64Decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recorder is a broker in memory: it stores what it is given, drops
// duplicates by event ID as JetStream's duplicate window does, and can be
// told to fail, after storing part of a batch, all of it (the ack was
// lost), or nothing.
type recorder struct {
	mu    sync.Mutex
	byP   [events.Partitions][]events.Event
	seen  map[string]bool
	calls int
	// fail, when set, decides for each call how many of the n events are
	// stored before it fails; a negative count means no failure.
	fail func(call int, n int) int
	// lose, when set, names for each call the one event of the n that is
	// lost while the others are stored, and the call fails; a negative
	// index means no loss. It is a connection dying with an event in it
	// while later ones wait in the client's reconnect buffer.
	lose func(call int, n int) int
}

func (r *recorder) Publish(ctx context.Context, evs []events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	keep, lost := -1, -1
	if r.fail != nil {
		keep = r.fail(r.calls, len(evs))
	}
	if r.lose != nil {
		lost = r.lose(r.calls, len(evs))
	}
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	for i, e := range evs {
		if keep >= 0 && i >= keep {
			break
		}
		if i == lost {
			continue
		}
		if !r.seen[e.ID] {
			r.seen[e.ID] = true
			p := events.PartitionOf(e.Data.UserID)
			r.byP[p] = append(r.byP[p], e)
		}
	}
	if keep >= 0 {
		return fmt.Errorf("broker down after storing %d of %d", min(keep, len(evs)), len(evs))
	}
	if lost >= 0 {
		return fmt.Errorf("event %d of %d lost", lost, len(evs))
	}
	return nil
}

func (r *recorder) all() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, evs := range r.byP {
		out = append(out, evs...)
	}
	return out
}

// commits records the commit order of a store, per partition.
type commits struct {
	mu  sync.Mutex
	byP [events.Partitions][]string
}

func tap(st *memstore.Store) *commits {
	c := &commits{}
	st.Tap(func(p int, e events.Event) {
		c.mu.Lock()
		c.byP[p] = append(c.byP[p], e.ID)
		c.mu.Unlock()
	})
	return c
}

// same fails unless every partition's published events are its committed
// events, each once, in commit order.
func (c *commits) same(t *testing.T, published [events.Partitions][]events.Event) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	total := 0
	for p := range events.Partitions {
		var ids []string
		for _, e := range published[p] {
			ids = append(ids, e.ID)
		}
		if !slices.Equal(ids, c.byP[p]) {
			t.Fatalf("partition %d: published %d events, committed %d, not the same in the same order", p, len(ids), len(c.byP[p]))
		}
		total += len(ids)
	}
	if total == 0 {
		t.Fatal("nothing committed")
	}
}

// runRelay starts a relay and returns its stop function, which waits for
// Run to return.
func runRelay(t *testing.T, st *memstore.Store, pub memstore.Publisher, cfg memstore.RelayConfig) (stop func()) {
	t.Helper()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- memstore.NewRelay(st, pub, discard(), nil, cfg).Run(rctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// relayUntilEmpty relays the store's outbox until it is empty.
func relayUntilEmpty(t *testing.T, st *memstore.Store, pub memstore.Publisher) {
	t.Helper()
	stop := runRelay(t, st, pub, memstore.RelayConfig{})
	waitFor(t, "an empty outbox", func() bool { return st.Depth() == 0 })
	stop()
}

// A broker that fails, often after storing part of a batch, gets every
// event once and in commit order: the relay retries the whole batch and
// the broker drops what it already has.
func TestRelayRetriesInOrder(t *testing.T) {
	st := newStore(t, memstore.Options{})
	c := tap(st)
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	pub := &recorder{fail: func(call, n int) int {
		if call%3 == 0 {
			return call % (n + 1) // store some or all, then fail
		}
		return -1
	}}
	m := memstore.NewMetrics(nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- memstore.NewRelay(st, pub, discard(), m, memstore.RelayConfig{Batch: 7}).Run(rctx)
	}()
	for i := range 300 {
		is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("u%d", i%40), IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1", Path: "/"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "an empty outbox", func() bool { return st.Depth() == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.same(t, pub.byP)
	if got := len(pub.all()); int64(got) != st.Committed() {
		t.Fatalf("published %d, committed %d", got, st.Committed())
	}
}

// A broker that loses an event while it stores later ones (a connection
// dying with the event in it, the later ones in the reconnect buffer) gets
// no event out of order: none is sent before the earlier ones are stored.
func TestRelayOrderSurvivesLostEvent(t *testing.T) {
	st := newStore(t, memstore.Options{})
	c := tap(st)
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	for i := range 120 {
		if _, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("u%d", i%20), IP: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &recorder{lose: func(call, n int) int {
		if call%5 == 0 {
			return n / 2
		}
		return -1
	}}
	relayUntilEmpty(t, st, pub)
	c.same(t, pub.byP)
}

// Only one relay runs on a store at a time.
func TestSecondRelayRefused(t *testing.T) {
	st := newStore(t, memstore.Options{})
	stop := runRelay(t, st, &recorder{}, memstore.RelayConfig{})
	time.Sleep(50 * time.Millisecond)
	err := memstore.NewRelay(st, &recorder{}, discard(), nil, memstore.RelayConfig{}).Run(ctx)
	if !errors.Is(err, memstore.ErrRelayRunning) {
		t.Fatalf("second relay: %v", err)
	}
	stop()
	// Once the first stopped, another may run.
	runRelay(t, st, &recorder{}, memstore.RelayConfig{})()
}

// The sweeper in the relay ends sessions nobody touches again.
func TestRelaySweeps(t *testing.T) {
	st := newStore(t, memstore.Options{})
	p := sessions.DefaultPolicy()
	p.IdleTimeout = 50 * time.Millisecond
	svc, _ := sessions.NewService(st, p, nil)
	is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "idle", IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	stop := runRelay(t, st, pub, memstore.RelayConfig{SweepInterval: 20 * time.Millisecond})
	waitFor(t, "the expiry", func() bool { return len(pub.all()) == 2 })
	stop()
	e := pub.all()[1]
	if e.Type != events.SessionExpired || e.Data.SessionID != is.Session.ID || e.Data.Reason != "idle_timeout" || e.Data.Actor != "sweeper" {
		t.Fatalf("second event %+v", e)
	}
}

// natsConn connects to url and keeps reconnecting while the server is away.
func natsConn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// streamEvents reads the whole SESSIONS stream, checks each subject, and
// returns the events by partition, in stream order.
func streamEvents(t *testing.T, nc *nats.Conn) (byP [events.Partitions][]events.Event, total int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Msgs)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for total < n {
		batch, err := c.Fetch(min(n-total, 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			e, err := events.Decode(m.Data())
			if err != nil {
				t.Fatalf("stream holds an undecodable event: %v", err)
			}
			if m.Subject() != events.SubjectFor(e) {
				t.Fatalf("event %s on subject %s", e.Type, m.Subject())
			}
			p := events.PartitionOf(e.Data.UserID)
			byP[p] = append(byP[p], e)
			total++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return byP, total
}

func streamMsgs(nc *nats.Conn) uint64 {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// Stop NATS, keep serving, start NATS again: every event reaches the
// stream once, in commit order per partition, and the outbox ends empty.
func TestNoEventLostWhileNATSIsDown(t *testing.T) {
	dir := t.TempDir()
	ns := testenv.StartNATS(t, testenv.NATSOptions(dir))
	port := ns.Addr().(*net.TCPAddr).Port
	nc := natsConn(t, ns.ClientURL())
	pub, err := eventbus.NewPublisher(nc, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventbus.EnsureSessionStream(ctx, pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	st := newStore(t, memstore.Options{})
	c := tap(st)
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	m := memstore.NewMetrics(nil)
	rctx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	done := make(chan error, 1)
	go func() { done <- memstore.NewRelay(st, pub, discard(), m, memstore.RelayConfig{}).Run(rctx) }()

	round := 0
	traffic := func(users int) {
		round++
		for i := range users {
			is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("user-%d-%d", round, i), IP: "203.0.113.9"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "203.0.113.9", Path: "/"}); err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				if err := svc.Logout(ctx, shop, is.Token); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	traffic(50)
	ns.Shutdown()
	ns.WaitForShutdown()
	traffic(50) // the store keeps serving with NATS down
	time.Sleep(1500 * time.Millisecond)
	traffic(50)
	if st.Depth() == 0 {
		t.Fatal("nothing waited in the outbox while NATS was down")
	}

	opts := testenv.NATSOptions(dir)
	opts.Port = port
	testenv.StartNATS(t, opts)
	traffic(50)
	want := st.Committed()
	waitFor(t, "every event in the stream", func() bool { return st.Depth() == 0 && streamMsgs(nc) >= uint64(want) })
	stopRelay()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	byP, total := streamEvents(t, nc)
	if int64(total) != want {
		t.Fatalf("stream holds %d events, committed %d", total, want)
	}
	c.same(t, byP)
	if st.Depth() != 0 {
		t.Fatalf("outbox holds %d events", st.Depth())
	}
}

// On shutdown the relay flushes what the outbox holds before Run returns.
func TestShutdownFlushesOutbox(t *testing.T) {
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventbus.EnsureSessionStream(ctx, pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	st := newStore(t, memstore.Options{})
	c := tap(st)
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	for i := range 2500 { // more than two batches in some partitions
		if _, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("u%d", i), IP: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	// A relay started after the end: all it does is flush.
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := memstore.NewRelay(st, pub, discard(), nil, memstore.RelayConfig{}).Run(stopped); err != nil {
		t.Fatal(err)
	}
	if st.Depth() != 0 {
		t.Fatalf("outbox holds %d events after shutdown", st.Depth())
	}
	byP, total := streamEvents(t, nc)
	if total != 2500 {
		t.Fatalf("stream holds %d events, want 2500", total)
	}
	c.same(t, byP)
}

// A flush that cannot finish within DrainTimeout leaves the events in the
// store, where a later relay finds them.
func TestShutdownFlushTimesOut(t *testing.T) {
	st := newStore(t, memstore.Options{})
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if _, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	down := &recorder{fail: func(int, int) int { return 0 }}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if err := memstore.NewRelay(st, down, discard(), nil, memstore.RelayConfig{DrainTimeout: 300 * time.Millisecond}).Run(stopped); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	if st.Depth() != 1 {
		t.Fatalf("outbox holds %d events, want 1", st.Depth())
	}
	up := &recorder{}
	relayUntilEmpty(t, st, up)
	if len(up.all()) != 1 {
		t.Fatal("the event left behind was not published later")
	}
}
