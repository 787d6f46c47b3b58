package detectorsvc

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
)

// BenchmarkRequestToRefusal measures, end to end, the time from an
// anomalous request reaching the session service (a login from Sydney a
// moment after one from London) to that session being refused
// (reauth_required), while background traffic of 10,000 events/s flows
// through the same JetStream stream and detector. The background events are
// published straight to the stream (this machine's two cores cannot also
// run 10,000 validates/s through the session service); the attack goes
// through the real HTTP API, Redis, the outbox relay, JetStream, the
// detector, the ALERTS stream, the enforcer and the session service again.
// Each probe polls validate every millisecond.
//
//	go test -run XXX -bench RequestToRefusal -benchtime 300x ./app/detectorsvc/
func BenchmarkRequestToRefusal(b *testing.B) {
	p := newPipeline(b)
	p.startDetector(b, nil)
	rate := 10000
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	wg.Go(func() { background(ctx, b, p, rate, &sent) })
	time.Sleep(time.Second) // let the background flow settle

	lat := make([]time.Duration, 0, b.N)
	start, sentBefore := time.Now(), sent.Load()
	b.ResetTimer()
	for i := range b.N {
		user := fmt.Sprintf("traveller-%d", i)
		p.login(b, user, london, firefox)
		t0 := time.Now()
		s, err := p.app.CreateSession(ctx, client.CreateRequest{UserID: user, IP: sydney, UserAgent: firefox})
		if err != nil {
			b.Fatal(err)
		}
		for {
			err := p.validate(s.Token, sydney, firefox)
			if client.IsReauthRequired(err) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("probe %d: no refusal after 10s", i)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	elapsed, sentDuring := time.Since(start), sent.Load()-sentBefore
	stop()
	wg.Wait()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(sentDuring)/elapsed.Seconds(), "background-events/s")
}

// background publishes synthetic validates of 20,000 users to the SESSIONS
// stream at rate events/s until ctx ends, counting them in sent.
func background(ctx context.Context, b *testing.B, p *pipeline, rate int, sent *atomic.Int64) {
	pub, err := eventbus.NewPublisher(p.nc, 10*time.Second)
	if err != nil {
		b.Error(err)
		return
	}
	const tick = 10 * time.Millisecond
	per := rate / int(time.Second/tick)
	nets := []string{"192.0.2.", "198.51.100.", "203.0.113."}
	t := time.NewTicker(tick)
	defer t.Stop()
	var n int64
	batch := make([]events.Event, per)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for j := range batch {
			u := int(n) % 20000
			batch[j] = events.Event{ID: events.NewID(), Type: events.SessionAccessed, Source: "bench", Time: now,
				Data: events.Data{UserID: fmt.Sprintf("bg-%d", u), SessionID: fmt.Sprintf("%02dbackground%011d", u%16, u),
					IP: fmt.Sprintf("%s%d", nets[u%len(nets)], u%50+1), UserAgent: firefox, App: "shop"}}
			n++
		}
		if err := pub.Publish(ctx, batch); err != nil && ctx.Err() == nil {
			b.Error(err)
			return
		}
		sent.Add(int64(len(batch)))
	}
}
