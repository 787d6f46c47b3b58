package memstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// BenchmarkValidate measures one validation through the service and the
// store (lookup, constant-time check, idle slide, outbox entry), with
// concurrent callers as under load: redisstore's BenchmarkValidate, in
// memory. Nothing relays the outbox, as in redisstore's; it is sized to
// hold every event.
func BenchmarkValidate(b *testing.B) {
	st := newStore(b, memstore.Options{MaxOutbox: b.N + 10_000})
	benchValidate(b, st)
}

// BenchmarkValidateRelayed is BenchmarkValidate with the relay running,
// handing every event to a publisher that discards it: the store's whole
// cost per validation, outbox bound and relay included.
func BenchmarkValidateRelayed(b *testing.B) {
	st := newStore(b, memstore.Options{})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- memstore.NewRelay(st, nopPublisher{}, discard(), nil, memstore.RelayConfig{}).Run(rctx)
	}()
	defer func() { cancel(); <-done }()
	benchValidate(b, st)
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, []events.Event) error { return nil }

func benchValidate(b *testing.B, st *memstore.Store) {
	svc, err := sessions.NewService(st, sessions.Policy{
		IdleTimeout: sessions.DefaultPolicy().IdleTimeout, AbsoluteTimeout: sessions.DefaultPolicy().AbsoluteTimeout,
		LimitMode: sessions.LimitEvictOldest, CookieName: "__Host-sid",
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	app := sessions.Caller{Name: "shop"}
	toks := make([]sessions.Token, 1000)
	for i := range toks {
		is, err := svc.Create(ctx, app, sessions.CreateRequest{UserID: fmt.Sprintf("bench-%d", i), IP: "192.0.2.1"})
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = is.Token
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := svc.Validate(ctx, app, sessions.AccessRequest{Token: toks[i%len(toks)], IP: "192.0.2.1", UserAgent: "bench", Path: "/p"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
