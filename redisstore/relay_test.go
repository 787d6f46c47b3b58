package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// When the instance relaying the outbox stops, another takes its leases
// over and nothing is lost or published twice.
func TestRelayFailover(t *testing.T) {
	st, rdb, _ := newStore(t)
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := eventbus.EnsureSessionStream(ctx, pub.JetStream(), eventbus.DefaultStreamOptions())
	if err != nil {
		t.Fatal(err)
	}
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
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
	waitMsgs(t, stream, 40)

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
	waitMsgs(t, stream, 80)
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 80 {
		t.Fatalf("stream holds %d events, want 80", info.State.Msgs)
	}
}

func waitMsgs(t *testing.T, s jetstream.Stream, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		info, err := s.Info(context.Background())
		if err == nil && info.State.Msgs >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("stream did not reach %d events", n)
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
			stream, err := eventbus.EnsureSessionStream(ctx, pub.JetStream(), eventbus.DefaultStreamOptions())
			if err != nil {
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
			waitMsgs(t, stream, want)
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string][]string{}
			for range want {
				m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
				if err != nil {
					t.Fatal(err)
				}
				e, err := events.Decode(m.Data())
				if err != nil {
					t.Fatal(err)
				}
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
			if info, err := stream.Info(ctx); err != nil || info.State.Msgs != want {
				t.Fatalf("stream: %v, %+v", err, info)
			}
			for p := range events.Partitions {
				if n := rdb.XLen(ctx, st.OutboxKey(p)).Val(); n != 0 {
					t.Fatalf("partition %d outbox holds %d entries", p, n)
				}
			}
		})
	}
}
