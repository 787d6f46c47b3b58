package eventbus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// TestIncidentStoreContract runs the alerter's store contract against the
// key-value bucket on a real (in-process) JetStream server.
func TestIncidentStoreContract(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	alertertest.RunStoreTests(t, func(t *testing.T) alerter.Store {
		n++
		s, err := eventbus.OpenIncidentStore(context.Background(), js, eventbus.IncidentStoreOptions{Bucket: "alerter_t" + string(rune('a'+n))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestAlertConsumer(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eventbus.EnsureStreams(ctx, js, eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	pub := eventbus.NewAlertPublisher(js, "detector")
	now := time.Now().UTC()
	if err := pub.PublishAlerts(ctx, []events.Alert{alertertest.TravelAlert("c1", "alice", now), alertertest.TravelAlert("c2", "bob", now)}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "alerts.03.junk", []byte(`{"not":"an alert"}`)); err != nil {
		t.Fatal(err)
	}
	enforced := events.Action{ID: "e1", Time: now, Kind: events.KindEnforcement, Actor: "detector", Action: "reauth",
		AlertID: "c1", UserID: "alice", Result: events.ResultDone}
	if err := pub.PublishAction(ctx, enforced); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []string
	failOnce := map[string]bool{"c2": true}
	invalid := 0
	c, err := eventbus.OpenAlertConsumer(ctx, js, eventbus.AlertConsumerOptions{
		Handle: func(_ context.Context, a events.Alert) error {
			mu.Lock()
			defer mu.Unlock()
			if failOnce[a.ID] {
				delete(failOnce, a.ID)
				return errors.New("store down")
			}
			got = append(got, a.ID)
			return nil
		},
		HandleAction: func(_ context.Context, a events.Action) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, "action:"+a.ID)
			return nil
		},
		DeadLetter: eventbus.NewAlertPublisher(js, "alerter").DeadLetter,
		Invalid:    func() { mu.Lock(); invalid++; mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n, inv := len(got), invalid
		mu.Unlock()
		if n == 3 && inv == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %v, invalid %d", got, inv)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// c2 failed once and came again after the action that followed it.
	if got[0] != "c1" || got[1] != "action:e1" || got[2] != "c2" {
		t.Fatalf("handled %v: want c1, the action, then c2 again", got)
	}
	info, err := js.Consumer(ctx, events.AlertStreamName, eventbus.AlerterConsumer)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := info.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Fatalf("consumer left %d pending, %d unacknowledged", ci.NumPending, ci.NumAckPending)
	}
	dl, err := js.Stream(ctx, eventbus.DeadLetterStreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dl.GetLastMsgForSubject(ctx, "deadletter.alerts.03.junk")
	if err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if m.Header.Get(eventbus.DeadLetterReasonHeader) == "" {
		t.Fatalf("dead letter without a reason: %v", m.Header)
	}
}
