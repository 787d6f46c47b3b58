package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// relayEnv is a store, a publisher with the SESSIONS stream in place,
// and a session service on the store.
func relayEnv(t *testing.T) (*redisstore.Store, *redis.Client, *eventbus.Publisher, *sessions.Service) {
	t.Helper()
	st, rdb, _ := newStore(t)
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventbus.EnsureSessionStream(context.Background(), pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, rdb, pub, svc
}

// When the instance relaying the outbox stops, another takes its leases
// over and nothing is lost or published twice.
func TestRelayFailover(t *testing.T) {
	st, rdb, pub, svc := relayEnv(t)
	ctx := context.Background()
	login := func(n int, tag string) {
		for i := range n {
			if _, err := svc.Create(ctx, sessions.Caller{Name: "shop"}, sessions.CreateRequest{UserID: fmt.Sprintf("%s-%d", tag, i), IP: "192.0.2.1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := redisstore.RelayConfig{LeaseTTL: 600 * time.Millisecond}
	ctxA, stopA := context.WithCancel(ctx)
	doneA := make(chan error, 1)
	go func() { doneA <- redisstore.NewRelay(st, rdb, pub, log, nil, cfg).Run(ctxA) }()
	login(40, "a")
	testenv.WaitSessionEvents(t, pub.JetStream(), 40)

	// B starts while A holds every lease: B relays nothing until A stops.
	ctxB, stopB := context.WithCancel(ctx)
	defer stopB()
	mB := redisstore.NewMetrics(nil)
	go func() { _ = redisstore.NewRelay(st, rdb, pub, log, mB, cfg).Run(ctxB) }()
	time.Sleep(300 * time.Millisecond)
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	login(40, "b")
	testenv.WaitSessionEvents(t, pub.JetStream(), 80)
	time.Sleep(200 * time.Millisecond) // room for a duplicate to arrive
	if n := len(testenv.SessionEvents(t, pub.JetStream())); n != 80 {
		t.Fatalf("stream holds %d events, want 80", n)
	}
}

// One relay loop carries every partition: all events reach the stream,
// each user's in the order Redis committed them, whether the outboxes are
// read with one XREAD or one each (as on a cluster), and in batches smaller
// than what is waiting.
func TestRelayOrderAcrossPartitions(t *testing.T) {
	for _, perStream := range []bool{false, true} {
		t.Run(fmt.Sprintf("perStream=%v", perStream), func(t *testing.T) {
			st, rdb, _ := newStore(t)
			_, nc := testenv.NATS(t)
			pub, err := eventbus.NewPublisher(nc, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := eventbus.EnsureSessionStream(ctx, pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
				t.Fatal(err)
			}
			svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
			shop := sessions.Caller{Name: "shop"}
			const users, validates = 120, 3
			for i := range users {
				is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("u%d", i), IP: "192.0.2.1"})
				if err != nil {
					t.Fatal(err)
				}
				for v := range validates {
					if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: fmt.Sprintf("192.0.2.%d", v+2)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			relay := redisstore.NewRelay(st, rdb, pub, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, redisstore.RelayConfig{Batch: 100})
			if perStream {
				redisstore.ReadPerStream(relay)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- relay.Run(rctx) }()
			const want = users * (1 + validates)
			testenv.WaitSessionEvents(t, pub.JetStream(), want)
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			all := testenv.SessionEvents(t, pub.JetStream())
			seen := map[string][]string{}
			for _, e := range all {
				seen[e.Data.UserID] = append(seen[e.Data.UserID], string(e.Type)+" "+e.Data.IP)
			}
			for i := range users {
				got := seen[fmt.Sprintf("u%d", i)]
				if len(got) != 1+validates || got[0] != "session.created 192.0.2.1" {
					t.Fatalf("user %d: %q", i, got)
				}
				for v := range validates {
					if want := fmt.Sprintf("session.accessed 192.0.2.%d", v+2); got[1+v] != want {
						t.Fatalf("user %d: event %d is %q, want %q", i, 1+v, got[1+v], want)
					}
				}
			}
			if len(all) != want {
				t.Fatalf("stream holds %d events, want %d", len(all), want)
			}
			for p := range events.Partitions {
				if n := rdb.XLen(ctx, st.OutboxKey(p)).Val(); n != 0 {
					t.Fatalf("partition %d outbox holds %d entries", p, n)
				}
			}
		})
	}
}

// lostAck publishes, then reports a failure once, as when JetStream's acks
// are lost on the way back; meanwhile more events reach the outbox.
type lostAck struct {
	pub    *eventbus.Publisher
	during func()
	failed bool
}

func (l *lostAck) Publish(ctx context.Context, evs []events.Event) error {
	if err := l.pub.Publish(ctx, evs); err != nil {
		return err
	}
	if !l.failed {
		l.failed = true
		l.during()
		return fmt.Errorf("acks lost")
	}
	return nil
}

// A relay whose publish failed after the events were stored retries the
// same outbox entries, though more arrived meanwhile: they form the same
// messages, which the stream drops as duplicates, and every event is in
// the stream once.
func TestRelayRetryPublishesTheSameMessages(t *testing.T) {
	st, rdb, pub, svc := relayEnv(t)
	ctx := context.Background()
	login := func(tag string) {
		for i := range 64 { // four users a partition: runs of session.created
			if _, err := svc.Create(ctx, sessions.Caller{Name: "shop"}, sessions.CreateRequest{UserID: fmt.Sprintf("%s-%d", tag, i), IP: "192.0.2.1"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	login("a")
	lost := &lostAck{pub: pub, during: func() { login("b") }}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = redisstore.NewRelay(st, rdb, lost, slog.New(slog.DiscardHandler), nil, redisstore.RelayConfig{}).Run(rctx)
	}()
	testenv.WaitSessionEvents(t, pub.JetStream(), 128)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to arrive
	seen := map[string]int{}
	for _, e := range testenv.SessionEvents(t, pub.JetStream()) {
		seen[e.ID]++
		if seen[e.ID] > 1 {
			t.Errorf("event %s of %s stored twice", e.ID, e.Data.UserID)
		}
	}
	if len(seen) != 128 {
		t.Fatalf("%d events stored, want 128", len(seen))
	}
}
