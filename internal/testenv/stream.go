package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/events"
)

// SessionEvents returns every event the SESSIONS stream holds, in stream
// order, unpacking the messages that hold batches. It fails t when a
// message does not decode or an event is on another subject than its own.
func SessionEvents(t testing.TB, js jetstream.JetStream) []events.Event {
	t.Helper()
	evs, err := sessionEvents(js)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// WaitSessionEvents waits up to 30 s until the SESSIONS stream holds at
// least n events and returns them. The stream and the server may be away
// for a while meanwhile.
func WaitSessionEvents(t testing.TB, js jetstream.JetStream, n int) []events.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := sessionEvents(js)
		var bad *badStream
		switch {
		case errors.As(err, &bad):
			t.Fatal(err)
		case err == nil && len(evs) >= n:
			return evs
		case time.Now().After(deadline):
			t.Fatalf("the stream holds %d events after 30 s, want %d (%v)", len(evs), n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// badStream is a stream holding what it should not.
type badStream struct{ msg string }

func (e *badStream) Error() string { return e.msg }

func sessionEvents(js jetstream.JetStream) ([]events.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []events.Event
	for {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return out, fmt.Errorf("reading the stream: %w", err)
		}
		evs, err := events.DecodeMessage(m.Data())
		if err != nil {
			return out, &badStream{fmt.Sprintf("stream holds an undecodable message on %s: %v", m.Subject(), err)}
		}
		for _, e := range evs {
			if m.Subject() != events.SubjectFor(e) {
				return out, &badStream{fmt.Sprintf("event %s of user %s on subject %s", e.Type, e.Data.UserID, m.Subject())}
			}
		}
		out = append(out, evs...)
		meta, err := m.Metadata()
		if err != nil {
			return out, err
		}
		if meta.Sequence.Stream >= last {
			return out, nil
		}
	}
}
