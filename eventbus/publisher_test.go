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

// Events published before their stream exists fail, and the retried batch
// is stored in order: nothing re-sends single messages behind the
// caller's back (nats.go does by default, on timers, letting later
// messages overtake earlier ones).
func TestPublishBeforeTheStreamExistsKeepsOrder(t *testing.T) {
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
	created := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		created <- eventbus.EnsureStreams(ctx, pub.JetStream(), eventbus.DefaultStreamOptions())
	}()
	// The relay's loop: retry the whole batch until it is acknowledged.
	deadline := time.Now().Add(10 * time.Second)
	for pub.Publish(ctx, evs) != nil {
		if time.Now().After(deadline) {
			t.Fatal("never published")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-created; err != nil {
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
	i := 0
	for m := range batch.Messages() {
		e, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != evs[i].ID {
			t.Fatalf("stream position %d holds %s, want %s", i, e.ID, evs[i].ID)
		}
		i++
	}
	if i != len(evs) {
		t.Fatalf("stream holds %d events, want %d", i, len(evs))
	}
}
