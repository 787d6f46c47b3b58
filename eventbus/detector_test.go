package eventbus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/rules"
)

func setup(t testing.TB) (*nats.Conn, jetstream.JetStream, *eventbus.Publisher) {
	t.Helper()
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventbus.EnsureStreams(ctx, pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	return nc, pub.JetStream(), pub
}

// userIn returns a user ID of partition p.
func userIn(p, n int) string {
	for i := 0; ; i++ {
		u := fmt.Sprintf("user-%d-%d", n, i)
		if events.PartitionOf(u) == p {
			return u
		}
	}
}

func access(id, user string, t time.Time) events.Event {
	return events.Event{ID: id, Type: events.SessionAccessed, Source: "test", Time: t,
		Data: events.Data{UserID: user, SessionID: fmt.Sprintf("%02dSESSION%s", events.PartitionOf(user), user), IP: "192.0.2.1", UserAgent: "ua"}}
}

func next(t *testing.T, s *eventbus.DetectorSource) detector.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A source acknowledges what was handled; the next source of the same
// partitions gets that as history and the rest live, in order, including
// what was delivered but not acknowledged when the first one stopped.
func TestDetectorSourceHistoryAndResume(t *testing.T) {
	_, js, pub := setup(t)
	ctx := context.Background()
	u3, u5 := userIn(3, 0), userIn(5, 0)
	t0 := time.Now().Add(-time.Minute)
	var evs []events.Event
	for i := range 10 {
		evs = append(evs, access(fmt.Sprint("a", i), u3, t0.Add(time.Duration(i)*time.Second)), access(fmt.Sprint("b", i), u5, t0.Add(time.Duration(i)*time.Second)))
	}
	// Events stored before the first source opens are history for it (it
	// learns from them without acting), not live: a new detector starts at
	// the stream's end.
	if err := pub.Publish(ctx, evs[:4]); err != nil {
		t.Fatal(err)
	}
	// Group 3 of 16 owns partition 3 only.
	s1, err := eventbus.OpenDetectorSource(ctx, js, 3, 16, eventbus.SourceOptions{AckEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	if err := s1.History(ctx, t0.Add(-time.Hour), func(e events.Event) { hist = append(hist, e.ID) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hist, []string{"a0", "a1"}) {
		t.Fatalf("a new source has history %v, want a0 a1", hist)
	}
	if err := pub.Publish(ctx, evs[4:]); err != nil {
		t.Fatal(err)
	}
	// Partition 3 only: a2..a9. Handle three, take a fourth without
	// handling it.
	ctx1, stop1 := context.WithCancel(ctx)
	var got []string
	for range 3 {
		d, err := s1.Next(ctx1)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Event.ID)
		d.Done()
	}
	if _, err := s1.Next(ctx1); err != nil {
		t.Fatal(err)
	}
	stop1()
	s1.Close()
	if !slices.Equal(got, []string{"a2", "a3", "a4"}) {
		t.Fatalf("live %v", got)
	}
	waitAckFloor(t, js, eventbus.DetectorConsumer(3, 16), 3)

	// Two groups now: group 1 of 2 owns the odd partitions. It takes over
	// where the consumer of partition 3 stopped.
	s2, err := eventbus.OpenDetectorSource(ctx, js, 1, 2, eventbus.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hist = nil
	if err := s2.History(ctx, t0.Add(-time.Hour), func(e events.Event) { hist = append(hist, e.ID) }); err != nil {
		t.Fatal(err)
	}
	// Everything of the group's partitions stored before the first event
	// not handled (b4, stored after a4) is history.
	want := []string{"a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4"}
	if !slices.Equal(hist, want) {
		t.Fatalf("history %v, want %v", hist, want)
	}
	// Since bounds history by time: a2 is at t0+2s.
	hist = nil
	if err := s2.History(ctx, t0.Add(3*time.Second), func(e events.Event) { hist = append(hist, e.ID) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a3", "b3", "a4"}; !slices.Equal(hist, want) {
		t.Fatalf("history since t0+3s: %v, want %v", hist, want)
	}
	got = nil
	for range 11 {
		d := next(t, s2)
		got = append(got, d.Event.ID)
		d.Done()
	}
	if want := []string{"b4", "a5", "b5", "a6", "b6", "a7", "b7", "a8", "b8", "a9", "b9"}; !slices.Equal(got, want) {
		t.Fatalf("resumed with %v, want %v in stream order (a5 was delivered, not acknowledged)", got, want)
	}
	s2.Close()
	waitAckFloor(t, js, eventbus.DetectorConsumer(1, 2), 11)

	// Back to one group: it takes over from the two-group layout, which
	// ran last, and has nothing left to deliver.
	s3, err := eventbus.OpenDetectorSource(ctx, js, 0, 1, eventbus.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if err := pub.Publish(ctx, []events.Event{access("c0", u5, time.Now())}); err != nil {
		t.Fatal(err)
	}
	if d := next(t, s3); d.Event.ID != "c0" {
		t.Fatalf("after the hand-over: %s, want c0", d.Event.ID)
	}
}

// A message holding a batch is one delivery per event, in order; the
// message is acknowledged when its last event is handled. An event of a
// batch that does not decode is a delivery of its own, with its bytes
// alone, for the dead-letter stream; so is a message that is not even a
// batch.
func TestDetectorSourceBatches(t *testing.T) {
	_, js, pub := setup(t)
	ctx := context.Background()
	s, err := eventbus.OpenDetectorSource(ctx, js, 0, 1, eventbus.SourceOptions{AckEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u3 := userIn(3, 0)
	var evs []events.Event
	for i := range 5 {
		evs = append(evs, access(fmt.Sprint("a", i), u3, time.Now()))
	}
	if err := pub.Publish(ctx, evs); err != nil { // one message of five
		t.Fatal(err)
	}
	good, _ := access("g0", u3, time.Now()).Encode()
	for _, data := range []string{"[" + string(good) + `,{"bad":1}]`, "[" + string(good)} {
		if _, err := js.Publish(ctx, events.Subject(3, events.SessionAccessed), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		d := next(t, s)
		if d.Err != nil || d.Event.ID != evs[i].ID {
			t.Fatalf("delivery %d: %s, %v; want %s", i, d.Event.ID, d.Err, evs[i].ID)
		}
		d.Done()
		if i < 4 {
			c, _ := js.Consumer(ctx, events.StreamName, eventbus.DetectorConsumer(0, 1))
			if ci, err := c.Info(ctx); err != nil || ci.AckFloor.Consumer != 0 {
				t.Fatalf("a part of a message acknowledged it: %v, %+v", err, ci.AckFloor)
			}
		}
	}
	waitAckFloor(t, js, eventbus.DetectorConsumer(0, 1), 1)
	if d := next(t, s); d.Err != nil || d.Event.ID != "g0" {
		t.Fatalf("good event of a batch with a bad one: %s, %v", d.Event.ID, d.Err)
	}
	if d := next(t, s); d.Err == nil || string(d.Data) != `{"bad":1}` {
		t.Fatalf("bad event of a batch: %v, %q; want an error and the event alone", d.Err, d.Data)
	}
	if d := next(t, s); d.Err == nil || string(d.Data) != "["+string(good) {
		t.Fatalf("broken batch: %v, %q; want an error and the whole message", d.Err, d.Data)
	}
}

func waitAckFloor(t *testing.T, js jetstream.JetStream, name string, delivered uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := js.Consumer(context.Background(), events.StreamName, name)
		if err == nil {
			if ci, err := c.Info(context.Background()); err == nil && ci.AckFloor.Consumer >= delivered {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("ack floor of %s did not reach %d", name, delivered)
}

// BenchmarkDetectorConsume measures the detector service reading a backlog
// from JetStream: decode, rules (default, with the test GeoIP databases),
// alert publishing and acknowledgement, for the 16 partitions of one
// detector (group 0 of 1). The backlog is stored first; only consuming is
// timed. Two layouts of the same events:
//
//   - relay: as the session service's relay publishes under load: each
//     step of 1,000 events in partition order (it reads each partition's
//     outbox in turn), consecutive events of one subject sharing a
//     message (18 a message here: 62 events a partition a step, the
//     session.created every 50 events cutting runs);
//
//   - per-message=1: one event a message, what the relay publishes under
//     light load.
//
//     go test -run XXX -bench DetectorConsume -benchtime 400000x ./eventbus/
func BenchmarkDetectorConsume(b *testing.B) {
	for _, layout := range []string{"relay", "per-message=1"} {
		b.Run(layout, func(b *testing.B) {
			_, nc := testenv.NATS(b)
			var opts []eventbus.PublisherOption
			if layout != "relay" {
				opts = append(opts, eventbus.MaxBatch(1))
			}
			pub, err := eventbus.NewPublisher(nc, 10*time.Second, opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := eventbus.EnsureStreams(context.Background(), pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
				b.Fatal(err)
			}
			benchmarkConsume(b, pub.JetStream(), pub)
		})
	}
}

func benchmarkConsume(b *testing.B, js jetstream.JetStream, pub *eventbus.Publisher) {
	ctx := context.Background()
	p := geotest.MustBuild(b)
	res, err := geo.Open(geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous})
	if err != nil {
		b.Fatal(err)
	}
	defer res.Close()
	// A new source starts at the stream's end: open it before the backlog.
	src, err := eventbus.OpenDetectorSource(ctx, js, 0, 1, eventbus.SourceOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	nets := []string{"192.0.2.", "198.51.100.", "203.0.113.", "81.2.69.", "89.160.20."}
	t0 := time.Now().Add(-time.Hour)
	batch := make([]events.Event, 0, 1000)
	for i := range n {
		u := i % 20000
		typ := events.SessionAccessed
		if i%50 == 0 {
			typ = events.SessionCreated
		}
		batch = append(batch, events.Event{ID: fmt.Sprintf("e%09d", i), Type: typ, Source: "bench", Time: t0.Add(time.Duration(i) * 5 * time.Microsecond),
			Data: events.Data{UserID: fmt.Sprintf("user-%d", u), SessionID: fmt.Sprintf("%02dsession%014d", u%16, u), App: "shop",
				IP: fmt.Sprintf("%s%d", nets[u%len(nets)], u%60+1), UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0", Path: "/cart"}})
		if len(batch) == cap(batch) || i == n-1 {
			// The relay's order: partition by partition, each user's
			// events in their order.
			slices.SortStableFunc(batch, func(x, y events.Event) int {
				return events.PartitionOf(x.Data.UserID) - events.PartitionOf(y.Data.UserID)
			})
			if err := pub.Publish(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	si, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	sink := countingSink{AlertPublisher: eventbus.NewAlertPublisher(js, "bench")}
	svc := detector.NewService(detector.ServiceConfig{Engine: detector.New(rules.Default(), res), Source: &countingSource{src, &handled}, Sink: &sink, Warmup: time.Hour})
	b.ResetTimer()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(runCtx) })
	for handled.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	stop()
	wg.Wait()
	src.Close()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(n)/float64(si.State.Msgs), "events/msg")
}

// countingSource counts the deliveries handled.
type countingSource struct {
	*eventbus.DetectorSource
	handled *atomic.Int64
}

func (c *countingSource) Next(ctx context.Context) (detector.Delivery, error) {
	d, err := c.DetectorSource.Next(ctx)
	if err == nil {
		done := d.Done
		d.Done = func() { done(); c.handled.Add(1) }
	}
	return d, err
}

type countingSink struct{ *eventbus.AlertPublisher }
