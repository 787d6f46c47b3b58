package eventbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// Events published before their stream exists fail, and nothing re-sends
// them behind the caller's back (nats.go does by default, on timers of its
// own, letting later messages overtake earlier ones): once the stream
// exists, the caller's retry stores the batch in order.
func TestPublishWithoutStreamFailsAndTheRetryKeepsOrder(t *testing.T) {
	_, nc := testenv.NATS(t)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
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
	if err := pub.Publish(ctx, evs[100:]); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, evs); err != nil { // the relay's retry from the head
		t.Fatal(err)
	}
	c, err := pub.JetStream().OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(len(evs), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// evs[100:] went first on purpose; then the retry added evs[:100]
	// (the rest were duplicates). What matters: nothing from the first,
	// failed attempt arrived on its own.
	want := append(append([]events.Event{}, evs[100:]...), evs[:100]...)
	i := 0
	for m := range batch.Messages() {
		e, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != want[i].ID {
			t.Fatalf("stream position %d holds %s, want %s", i, e.ID, want[i].ID)
		}
		i++
	}
	if i != len(evs) {
		t.Fatalf("stream holds %d events, want %d", i, len(evs))
	}
}
