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
