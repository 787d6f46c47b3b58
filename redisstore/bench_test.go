package redisstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sessionmon/sessionmon/sessions"
)

// BenchmarkValidate measures one validation through the service and the
// Redis access script (store round trip, idle slide, outbox XADD), with
// concurrent callers as under load.
func BenchmarkValidate(b *testing.B) {
	st, _, _ := newStore(&testing.T{})
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
