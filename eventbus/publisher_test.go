package eventbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// stored is what the SESSIONS stream holds: its messages in order, each
// with its subject, Content-Type and events.
type storedMsg struct {
	subject, contentType string
	events               []events.Event
}

func stored(t *testing.T, js jetstream.JetStream, n int) []storedMsg {
	t.Helper()
	ctx := context.Background()
	c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []storedMsg
	for m := range batch.Messages() {
		evs, err := events.DecodeMessage(m.Data())
		if err != nil {
			t.Fatalf("stored message %s: %v", m.Subject(), err)
		}
		out = append(out, storedMsg{m.Subject(), m.Headers().Get("Content-Type"), evs})
	}
	return out
}

// streamPublisher is a publisher with the streams in place.
func streamPublisher(t *testing.T, opts ...eventbus.PublisherOption) *eventbus.Publisher {
	t.Helper()
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreams(context.Background(), pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	return pub
}

func ids(msgs []storedMsg) []string {
	var out []string
	for _, m := range msgs {
		for _, e := range m.events {
			out = append(out, e.ID)
		}
	}
	return out
}

// Events published before their stream exists fail, and nothing re-sends
// them behind the caller's back (nats.go does by default, on timers of its
// own, letting later messages overtake earlier ones): once the stream
// exists, the caller's retry stores the events once, in order, and a
// second retry (an ack lost on the way) stores nothing more.
func TestPublishWithoutStreamFailsAndTheRetryKeepsOrder(t *testing.T) {
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second, eventbus.MaxBatch(64))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	user := userIn(4, 0)
	var evs []events.Event
	for i := range 200 {
		evs = append(evs, access(fmt.Sprintf("e%03d", i), user, time.Now()))
	}
	if err := pub.Publish(ctx, evs); err == nil {
		t.Fatal("published with no stream")
	}
	// Had anything been queued for a retry, it would land now, first.
	if err := eventbus.EnsureStreams(ctx, pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // longer than nats.go's retry wait (250 ms) twice
	for range 2 {                      // the relay's retry from the head, twice
		if err := pub.Publish(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	msgs := stored(t, pub.JetStream(), 100)
	got := ids(msgs)
	if len(got) != len(evs) {
		t.Fatalf("stream holds %d events, want %d", len(got), len(evs))
	}
	for i, id := range got {
		if id != evs[i].ID {
			t.Fatalf("stream position %d holds %s, want %s", i, id, evs[i].ID)
		}
	}
	if len(msgs) != 4 { // 64+64+64+8
		t.Errorf("%d messages, want 4 of at most 64 events", len(msgs))
	}
}

// Consecutive events of one partition and type share a message; a change
// of either starts a new one, so subjects still name partition and type,
// and the stream holds every event in the order given.
func TestPublishBatchesRunsOfOneSubject(t *testing.T) {
	pub := streamPublisher(t)
	ctx := context.Background()
	a, b := userIn(1, 0), userIn(2, 0)
	now := time.Now()
	var evs []events.Event
	add := func(n int, user string, typ events.Type) {
		for range n {
			e := access(fmt.Sprintf("e%03d", len(evs)), user, now)
			e.Type = typ
			evs = append(evs, e)
		}
	}
	add(3, a, events.SessionAccessed)
	add(1, a, events.SessionRegenerated)
	add(2, a, events.SessionAccessed)
	add(300, b, events.SessionAccessed) // more than DefaultMaxBatch
	add(1, a, events.SessionTerminated)
	if err := pub.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, pub.JetStream(), 100)
	type shape struct {
		subject string
		n       int
		batch   bool
	}
	want := []shape{
		{events.Subject(1, events.SessionAccessed), 3, true},
		{events.Subject(1, events.SessionRegenerated), 1, false},
		{events.Subject(1, events.SessionAccessed), 2, true},
		{events.Subject(2, events.SessionAccessed), eventbus.DefaultMaxBatch, true},
		{events.Subject(2, events.SessionAccessed), 300 - eventbus.DefaultMaxBatch, true},
		{events.Subject(1, events.SessionTerminated), 1, false},
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		w := want[i]
		ct := events.ContentType
		if w.batch {
			ct = events.BatchContentType
		}
		if m.subject != w.subject || len(m.events) != w.n || m.contentType != ct {
			t.Errorf("message %d: %s, %d events, %s; want %s, %d, %s", i, m.subject, len(m.events), m.contentType, w.subject, w.n, ct)
		}
	}
	got := ids(msgs)
	for i := range evs {
		if i >= len(got) || got[i] != evs[i].ID {
			t.Fatalf("stream position %d holds the wrong event", i)
		}
	}
}

// A batch stays far below the server's largest message: big events cut it
// by size before MaxBatch.
func TestPublishCutsBatchesBySize(t *testing.T) {
	pub := streamPublisher(t)
	ctx := context.Background()
	user := userIn(3, 0)
	var evs []events.Event
	for i := range 100 {
		e := access(fmt.Sprintf("e%03d", i), user, time.Now())
		e.Data.UserAgent = strings.Repeat("x", 8<<10)
		evs = append(evs, e)
	}
	if err := pub.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	msgs := stored(t, pub.JetStream(), 100)
	if len(ids(msgs)) != 100 || len(msgs) < 4 {
		t.Fatalf("%d events in %d messages; want 100 in at least 4 (800 KiB)", len(ids(msgs)), len(msgs))
	}
	for _, m := range msgs {
		if n := len(m.events); n > 32 {
			t.Errorf("a message of %d 8 KiB events", n)
		}
	}
}
