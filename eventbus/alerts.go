package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/events"
)

// DeadLetterStreamName is the stream that keeps what consumers could not
// decode, on deadletter.<original subject>, for people to look at.
const DeadLetterStreamName = "DEADLETTER"

// DeadLetterReasonHeader carries why a message was dead-lettered.
const DeadLetterReasonHeader = "Sessionmon-Dead-Letter-Reason"

// AlertStreamConfig is the configuration of the ALERTS stream: detector
// alerts (alerts.<partition>.<rule>) and the actions taken on them
// (actions.<partition>.<action>). Its duplicate window de-duplicates on the
// alert ID, which is derived from the firing event: a detector that
// re-processes events after a restart publishes nothing twice within it.
func AlertStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.AlertStreamName,
		Description: "sessionmon detector alerts (alerts.<partition>.<rule>) and actions (actions.<partition>.<action>)",
		Subjects:    []string{events.AlertSubjects, events.ActionSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    orMinusOne(o.MaxBytes),
		Replicas:    o.Replicas,
		Duplicates:  max(o.Duplicates, time.Hour),
	}
}

// DeadLetterStreamConfig is the configuration of the DEADLETTER stream.
func DeadLetterStreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetterStreamName,
		Description: "messages sessionmon consumers could not decode; reason in the " + DeadLetterReasonHeader + " header",
		Subjects:    []string{events.DeadLetterSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		MaxBytes:    orMinusOne(o.MaxBytes),
		Replicas:    o.Replicas,
	}
}

// EnsureStreams creates or updates the SESSIONS, ALERTS and DEADLETTER
// streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{SessionStreamConfig(o), AlertStreamConfig(o), DeadLetterStreamConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("jetstream: ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// AlertPublisher publishes alerts, actions and dead letters, waiting for
// JetStream's acknowledgement of each: when it returns nil they are stored.
type AlertPublisher struct {
	js     jetstream.JetStream
	source string
}

// NewAlertPublisher returns a publisher whose CloudEvents name source as
// their producer (e.g. "detector").
func NewAlertPublisher(js jetstream.JetStream, source string) *AlertPublisher {
	return &AlertPublisher{js: js, source: source}
}

// PublishAlerts publishes alerts with their IDs as Nats-Msg-Id.
func (p *AlertPublisher) PublishAlerts(ctx context.Context, as []events.Alert) error {
	for _, a := range as {
		b, err := events.EncodeAlert(a, p.source)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", a.ID, err)
		}
		if _, err := p.js.Publish(ctx, events.AlertSubject(a), b, jetstream.WithMsgID(a.ID)); err != nil {
			return fmt.Errorf("publish alert %s: %w", a.ID, err)
		}
	}
	return nil
}

// PublishAction publishes an action with its ID as Nats-Msg-Id.
func (p *AlertPublisher) PublishAction(ctx context.Context, a events.Action) error {
	b, err := events.EncodeAction(a, p.source)
	if err != nil {
		return fmt.Errorf("encode action %s: %w", a.ID, err)
	}
	if _, err := p.js.Publish(ctx, events.ActionSubject(a), b, jetstream.WithMsgID(a.ID)); err != nil {
		return fmt.Errorf("publish action %s: %w", a.ID, err)
	}
	return nil
}

// DeadLetter stores a message a consumer could not handle on
// deadletter.<original subject>, with the reason and the consumer (the
// publisher's source) in headers.
func (p *AlertPublisher) DeadLetter(ctx context.Context, subject string, data []byte, reason string) error {
	m := nats.NewMsg("deadletter." + subject)
	m.Data = data
	m.Header.Set(DeadLetterReasonHeader, reason)
	m.Header.Set("Sessionmon-Consumer", p.source)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}
