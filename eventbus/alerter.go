package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/events"
)

// The alerter's state lives in a JetStream key-value bucket, so it needs no
// server of its own and several alerters can share it: incidents under
// i.<incident id>, and the grouping index (which incident repeats of a
// rule and user join) under g.<group key>. Writes are compare-and-set on
// the key's revision.
const (
	DefaultAlerterBucket = "sessionmon_alerter"
	incidentPrefix       = "i."
	groupPrefix          = "g."
)

// IncidentStore is alerter.Store on a JetStream key-value bucket.
type IncidentStore struct {
	kv jetstream.KeyValue
}

var _ alerter.Store = (*IncidentStore)(nil)

// IncidentStoreOptions configure the bucket.
type IncidentStoreOptions struct {
	Bucket   string // DefaultAlerterBucket when empty
	Replicas int    // 1 when 0
}

// OpenIncidentStore creates or updates the bucket and returns the store.
func OpenIncidentStore(ctx context.Context, js jetstream.JetStream, o IncidentStoreOptions) (*IncidentStore, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultAlerterBucket
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "sessionmon alerter: incidents (i.<id>) and grouping keys (g.<key>)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(o.Replicas, 1),
		// An incident keeps at most 20 alerts, 1,000 alert IDs and 500
		// changes: well under 1 MiB.
		MaxValueSize: 1 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: key-value bucket %s: %w", o.Bucket, err)
	}
	return &IncidentStore{kv: kv}, nil
}

func mapKVErr(what string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("%s: %w", what, alerter.ErrNotFound)
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%s: %w", what, alerter.ErrConflict)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%s: %w", what, alerter.ErrExists)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func incidentKey(id string) (string, error) {
	if id == "" || strings.ContainsFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return "", fmt.Errorf("incident %q: %w: not a key (see alerter.IncidentID)", id, alerter.ErrInvalid)
	}
	return incidentPrefix + id, nil
}

// Get implements alerter.Store.
func (s *IncidentStore) Get(ctx context.Context, id string) (*alerter.Incident, uint64, error) {
	key, err := incidentKey(id)
	if err != nil {
		return nil, 0, fmt.Errorf("incident %q: %w", id, alerter.ErrNotFound)
	}
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return nil, 0, mapKVErr("incident "+id, err)
	}
	var inc alerter.Incident
	if err := json.Unmarshal(e.Value(), &inc); err != nil {
		return nil, 0, fmt.Errorf("incident %s: decode: %w", id, err)
	}
	return &inc, e.Revision(), nil
}

// Create implements alerter.Store.
func (s *IncidentStore) Create(ctx context.Context, inc *alerter.Incident) (uint64, error) {
	key, err := incidentKey(inc.ID)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(inc)
	if err != nil {
		return 0, fmt.Errorf("incident %s: encode: %w", inc.ID, err)
	}
	rev, err := s.kv.Create(ctx, key, b)
	if err != nil {
		return 0, mapKVErr("create incident "+inc.ID, err)
	}
	return rev, nil
}

// Update implements alerter.Store.
func (s *IncidentStore) Update(ctx context.Context, inc *alerter.Incident, rev uint64) (uint64, error) {
	key, err := incidentKey(inc.ID)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(inc)
	if err != nil {
		return 0, fmt.Errorf("incident %s: encode: %w", inc.ID, err)
	}
	nrev, err := s.kv.Update(ctx, key, b, rev)
	if err != nil {
		return 0, mapKVErr("update incident "+inc.ID, err)
	}
	return nrev, nil
}

// Delete implements alerter.Store. It purges the key: the incident leaves
// no history in the bucket (the audit log has it).
func (s *IncidentStore) Delete(ctx context.Context, id string, rev uint64) error {
	key, err := incidentKey(id)
	if err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, key, jetstream.LastRevision(rev)); err != nil {
		return mapKVErr("delete incident "+id, err)
	}
	return nil
}

// Group implements alerter.Store.
func (s *IncidentStore) Group(ctx context.Context, key string) (string, uint64, error) {
	e, err := s.kv.Get(ctx, groupPrefix+key)
	if err != nil {
		return "", 0, mapKVErr("group "+key, err)
	}
	return string(e.Value()), e.Revision(), nil
}

// SetGroup implements alerter.Store.
func (s *IncidentStore) SetGroup(ctx context.Context, key, id string, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = s.kv.Create(ctx, groupPrefix+key, []byte(id))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("group %s: %w", key, alerter.ErrConflict)
		}
	} else {
		_, err = s.kv.Update(ctx, groupPrefix+key, []byte(id), rev)
	}
	if err != nil {
		return mapKVErr("group "+key, err)
	}
	return nil
}

// DeleteGroup implements alerter.Store.
func (s *IncidentStore) DeleteGroup(ctx context.Context, key string, rev uint64) error {
	if err := s.kv.Purge(ctx, groupPrefix+key, jetstream.LastRevision(rev)); err != nil {
		return mapKVErr("delete group "+key, err)
	}
	return nil
}

// Watch implements alerter.Store. The watcher survives reconnections; it
// returns an error when the connection is closed under it.
func (s *IncidentStore) Watch(ctx context.Context, fn func(id string, inc *alerter.Incident, rev uint64), loaded func()) error {
	w, err := s.kv.Watch(ctx, incidentPrefix+">")
	if err != nil {
		return fmt.Errorf("watch incidents: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("watch incidents: the watcher stopped (connection closed)")
			}
			if e == nil {
				loaded()
				continue
			}
			id := strings.TrimPrefix(e.Key(), incidentPrefix)
			if e.Operation() != jetstream.KeyValuePut {
				fn(id, nil, e.Revision())
				continue
			}
			var inc alerter.Incident
			if err := json.Unmarshal(e.Value(), &inc); err != nil {
				continue // not ours; Get reports it if asked
			}
			fn(id, &inc, e.Revision())
		}
	}
}

// maxOrphanDeliveries is how often an action about an alert that no
// incident holds is tried before it is dropped.
const maxOrphanDeliveries = 5

// AlerterConsumer is the alerter's durable consumer of the ALERTS stream,
// shared by every alerter instance: each alert goes to one of them.
const AlerterConsumer = "alerter"

// AlertConsumer feeds the ALERTS stream to the alerter, one message at a
// time in stream order, acknowledging each once it is handled: alerts
// (alerts.>) and the actions taken on them (actions.>), so that the
// detector's enforcement of an alert, published after it, comes after it.
// A handler error asks for redelivery with backoff; an alert that does not
// decode is dead-lettered and acknowledged (an undecodable action is
// counted and acknowledged: the audit writer dead-letters those).
type AlertConsumer struct {
	cons         jetstream.Consumer
	handle       func(context.Context, events.Alert) error
	handleAction func(context.Context, events.Action) error
	dead         func(ctx context.Context, subject string, data []byte, reason string) error
	// Invalid is called for each dead-lettered message (for a metric).
	invalid func()
	log     *slog.Logger
}

// AlertConsumerOptions configure an AlertConsumer.
type AlertConsumerOptions struct {
	// Durable is the consumer's name; AlerterConsumer when empty.
	Durable string
	// Handle handles an alert; nil error acknowledges it.
	Handle func(context.Context, events.Alert) error
	// HandleAction, if set, handles an action; nil error acknowledges it.
	HandleAction func(context.Context, events.Action) error
	// DeadLetter stores what does not decode
	// (AlertPublisher.DeadLetter).
	DeadLetter func(ctx context.Context, subject string, data []byte, reason string) error
	// Invalid, if set, is called for each dead-lettered message.
	Invalid func()
	Log     *slog.Logger
}

// OpenAlertConsumer creates or updates the durable consumer. A new one
// starts at the beginning of the stream, so a new alerter shows the
// alerts the stream still holds (the alerter does not notify about old
// ones; see alerter.Config.NotifyMaxAge).
func OpenAlertConsumer(ctx context.Context, js jetstream.JetStream, o AlertConsumerOptions) (*AlertConsumer, error) {
	if o.Durable == "" {
		o.Durable = AlerterConsumer
	}
	if o.Handle == nil || o.DeadLetter == nil {
		return nil, errors.New("alert consumer: Handle and DeadLetter are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Invalid == nil {
		o.Invalid = func() {}
	}
	if o.HandleAction == nil {
		o.HandleAction = func(context.Context, events.Action) error { return nil }
	}
	c, err := js.CreateOrUpdateConsumer(ctx, events.AlertStreamName, jetstream.ConsumerConfig{
		Durable:       o.Durable,
		Description:   "sessionmon alerter: incidents, notifications and the review console",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 256,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s: %w", o.Durable, err)
	}
	return &AlertConsumer{cons: c, handle: o.Handle, handleAction: o.HandleAction, dead: o.DeadLetter, invalid: o.Invalid, log: o.Log}, nil
}

// Name is the consumer's name, for the lag collector.
func (c *AlertConsumer) Name() string { return c.cons.CachedInfo().Name }

// Run consumes until ctx ends. Alerts not yet acknowledged then come again
// at the next start (the alerter ignores the ones it already has).
func (c *AlertConsumer) Run(ctx context.Context) error {
	it, err := c.cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("jetstream: consume %s: %w", c.Name(), err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) {
				return fmt.Errorf("jetstream: consumer %s: %w", c.Name(), err)
			}
			c.log.Warn("reading alerts", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		c.one(ctx, m)
	}
}

func (c *AlertConsumer) one(ctx context.Context, m jetstream.Msg) {
	var handle func(context.Context) error
	var what string
	if strings.HasPrefix(m.Subject(), "actions.") {
		a, err := events.DecodeAction(m.Data())
		if err != nil {
			c.invalid()
			c.log.Warn("ignored an undecodable action", "subject", m.Subject(), "reason", err)
			_ = m.Ack()
			return
		}
		what = "action " + a.ID
		handle = func(ctx context.Context) error { return c.handleAction(ctx, a) }
	} else {
		a, err := events.DecodeAlert(m.Data())
		if err != nil {
			c.invalid()
			if derr := c.dead(ctx, m.Subject(), m.Data(), err.Error()); derr != nil {
				c.log.Error("dead-letter an undecodable alert; redelivering it", "subject", m.Subject(), "err", derr)
				_ = m.NakWithDelay(5 * time.Second)
				return
			}
			c.log.Warn("dead-lettered an undecodable alert", "subject", m.Subject(), "reason", err)
			_ = m.Ack()
			return
		}
		what = "alert " + a.ID
		handle = func(ctx context.Context) error { return c.handle(ctx, a) }
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := handle(hctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: redelivered at the next start
		}
		n := uint64(1)
		if meta, merr := m.Metadata(); merr == nil {
			n = meta.NumDelivered
		}
		if errors.Is(err, alerter.ErrNotFound) && n >= maxOrphanDeliveries {
			c.log.Warn("giving up on an action about an unknown alert", "what", what, "deliveries", n, "err", err)
			_ = m.Ack()
			return
		}
		delay := min(time.Second<<min(n-1, 6), time.Minute)
		c.log.Warn("handling failed; redelivering", "what", what, "delivery", n, "in", delay, "err", err)
		_ = m.NakWithDelay(delay)
		return
	}
	if err := m.Ack(); err != nil {
		c.log.Warn("ack", "what", what, "err", err)
	}
}
