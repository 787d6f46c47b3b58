// Package eventbus is the NATS JetStream adapter for sessionmon events:
// the stream definitions and an ordered, acknowledged publisher.
package eventbus

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/events"
)

// StreamOptions size the session event stream.
type StreamOptions struct {
	// MaxAge is how long events are kept; detectors rebuild their windows
	// from this history and the audit writer catches up within it.
	MaxAge time.Duration
	// Replicas is 1 for a single server, 3 in production clusters.
	Replicas int
	// Duplicates is the de-duplication window on the event ID
	// (Nats-Msg-Id): a relay that republishes after a failure within it
	// stores nothing twice.
	Duplicates time.Duration
	// MaxBytes bounds the stream's storage; 0 means no limit.
	MaxBytes int64
}

// DefaultStreamOptions keep a week of events on one replica.
func DefaultStreamOptions() StreamOptions {
	return StreamOptions{MaxAge: 7 * 24 * time.Hour, Replicas: 1, Duplicates: 2 * time.Minute}
}

// SessionStreamConfig is the configuration of the SESSIONS stream.
func SessionStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "sessionmon session lifecycle, access and auth events; subjects sessions.<partition>.<type>",
		Subjects:    []string{events.StreamSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    orMinusOne(o.MaxBytes),
		Replicas:    o.Replicas,
		Duplicates:  o.Duplicates,
	}
}

func orMinusOne(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// EnsureSessionStream creates or updates the SESSIONS stream.
func EnsureSessionStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, SessionStreamConfig(o))
	if err != nil {
		return nil, fmt.Errorf("jetstream: ensure stream %s: %w", events.StreamName, err)
	}
	return s, nil
}

// Publisher publishes events to JetStream in order and waits for the acks.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher returns a publisher on nc. The JetStream context it makes
// times out un-acked publishes after ackTimeout.
func NewPublisher(nc *nats.Conn, ackTimeout time.Duration) (*Publisher, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Publisher{js: js}, nil
}

// JetStream returns the publisher's JetStream context.
func (p *Publisher) JetStream() jetstream.JetStream { return p.js }

// Publish sends evs in order, each with its ID as Nats-Msg-Id, and returns
// once JetStream acknowledged every one, or the first failure. After a
// failure the caller republishes the whole batch; the stream's duplicate
// window drops what was already stored.
func (p *Publisher) Publish(ctx context.Context, evs []events.Event) error {
	futs := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		data, err := e.Encode()
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.ID, err)
		}
		m := nats.NewMsg(events.SubjectFor(e))
		m.Data = data
		// No retries inside nats.go: it re-sends a message the stream was
		// not ready for on a timer of its own, which lets later messages
		// overtake it. A failure comes back here, and the caller retries
		// the batch from its head.
		f, err := p.js.PublishMsgAsync(m, jetstream.WithMsgID(e.ID), jetstream.WithRetryAttempts(0))
		if err != nil {
			return fmt.Errorf("jetstream publish: %w", err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("jetstream publish ack: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Connect connects to NATS as a sessionmon service: named (it shows in the
// server's connection list), reconnecting forever, and logging
// disconnections and reconnections. NATS may be down at start: the
// connection is made in the background, and callers see it in Status.
func Connect(url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS_URL: %w", err)
	}
	return nc, nil
}
