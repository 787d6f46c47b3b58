package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/events"
)

// DetectorConsumer names the durable consumer of one partition of the
// SESSIONS stream. Consumers are per partition, not per detector, so that
// changing the number of detectors moves partitions between them with
// their acknowledged positions.
func DetectorConsumer(partition int) string { return fmt.Sprintf("detector-%02d", partition) }

// EnforcerConsumer is the durable consumer of the alerts to enforce, shared
// by every detector: each alert goes to one of them.
const EnforcerConsumer = "enforcer"

// SourceOptions tune a DetectorSource.
type SourceOptions struct {
	// MaxAckPending bounds the unacknowledged events per partition.
	MaxAckPending int
	// AckEvery acknowledges a partition after this many handled events,
	// and AckInterval at the latest after this long.
	AckEvery    int
	AckInterval time.Duration
	Log         *slog.Logger
}

func (o *SourceOptions) defaults() {
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 20000
	}
	if o.AckEvery <= 0 {
		o.AckEvery = 1000
	}
	if o.AckInterval <= 0 {
		o.AckInterval = 20 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// DetectorSource reads the partitions of one detector group from the
// SESSIONS stream: a durable consumer per partition with ack-all
// acknowledgement. What was acknowledged before this start is history (the
// detector rebuilds its windows from it); the rest is delivered live, in
// order per partition.
type DetectorSource struct {
	js    jetstream.JetStream
	opts  SourceOptions
	parts []int
	// boundary is, per partition, the first stream sequence not yet
	// handled: history is below it.
	boundary map[int]uint64
	cons     map[int]jetstream.Consumer

	start  sync.Once
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	out    chan detector.Delivery
	errc   chan error

	mu      sync.Mutex
	pending map[int]*pendingAck
}

type pendingAck struct {
	msg jetstream.Msg
	n   int
}

var _ detector.Source = (*DetectorSource)(nil)

// OpenDetectorSource prepares the consumers of partitions. A consumer that
// does not exist yet starts after the stream's current end (a new detector
// does not act on the past; it learns from it in History). A consumer with
// delivered but unacknowledged events (the last detector stopped
// mid-batch) is recreated at its acknowledged floor, so those events come
// again first, in order.
func OpenDetectorSource(ctx context.Context, js jetstream.JetStream, partitions []int, o SourceOptions) (*DetectorSource, error) {
	o.defaults()
	s := &DetectorSource{js: js, opts: o, parts: partitions, boundary: map[int]uint64{}, cons: map[int]jetstream.Consumer{},
		out: make(chan detector.Delivery, 1024), errc: make(chan error, len(partitions)), pending: map[int]*pendingAck{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	for _, p := range partitions {
		name := DetectorConsumer(p)
		startSeq := info.State.LastSeq + 1
		c, err := stream.Consumer(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
		case err != nil:
			return nil, fmt.Errorf("jetstream: consumer %s: %w", name, err)
		default:
			ci, err := c.Info(ctx)
			if err != nil {
				return nil, fmt.Errorf("jetstream: consumer %s: %w", name, err)
			}
			startSeq = max(ci.AckFloor.Stream+1, ci.Config.OptStartSeq)
			if ci.Delivered.Stream < startSeq {
				s.cons[p], s.boundary[p] = c, startSeq
				continue // nothing in flight: keep it
			}
			o.Log.Info("consumer had unacknowledged events; restarting it at its ack floor", "consumer", name, "seq", startSeq)
			if err := stream.DeleteConsumer(ctx, name); err != nil {
				return nil, fmt.Errorf("jetstream: reset consumer %s: %w", name, err)
			}
		}
		c, err = stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   fmt.Sprintf("sessionmon detector, partition %02d", p),
			FilterSubject: events.PartitionFilter(p),
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   startSeq,
			AckPolicy:     jetstream.AckAllPolicy,
			AckWait:       5 * time.Minute,
			MaxDeliver:    -1,
			MaxAckPending: o.MaxAckPending,
		})
		if err != nil {
			return nil, fmt.Errorf("jetstream: create consumer %s: %w", name, err)
		}
		s.cons[p], s.boundary[p] = c, startSeq
	}
	return s, nil
}

// Consumers names the source's consumers, for lag metrics.
func (s *DetectorSource) Consumers() []string {
	var out []string
	for _, p := range s.parts {
		out = append(out, DetectorConsumer(p))
	}
	return out
}

// History replays the events of the source's partitions stored since
// `since` and below each partition's boundary, in stream order, through an
// ordered (ephemeral) consumer. Events that do not decode are skipped: they
// were dead-lettered when they were live.
func (s *DetectorSource) History(ctx context.Context, since time.Time, fn func(events.Event)) error {
	var end uint64
	for _, b := range s.boundary {
		end = max(end, b-1)
	}
	if end == 0 {
		return nil
	}
	stream, err := s.js.Stream(ctx, events.StreamName)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	end = min(end, info.State.LastSeq)
	if end == 0 || info.State.LastTime.Before(since) {
		return nil
	}
	oc, err := s.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return fmt.Errorf("jetstream: history consumer: %w", err)
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("jetstream: history consumer: %w", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, nats.ErrTimeout) {
				return nil // nothing more was stored since the start
			}
			return fmt.Errorf("jetstream: history: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("jetstream: history: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > end {
			return nil
		}
		if p, _, err := events.ParseSubject(m.Subject()); err == nil {
			if b, ok := s.boundary[p]; ok && seq < b {
				// The stream starts at the storage time; events say when
				// they happened.
				if ev, err := events.Decode(m.Data()); err == nil && !ev.Time.Before(since) {
					fn(ev)
				}
			}
		}
		if seq == end {
			return nil
		}
	}
}

// Next returns the next live event of any of the source's partitions. The
// first call starts reading; ctx bounds only the wait.
func (s *DetectorSource) Next(ctx context.Context) (detector.Delivery, error) {
	s.start.Do(func() { s.run(s.ctx) })
	select {
	case d := <-s.out:
		return d, nil
	case err := <-s.errc:
		return detector.Delivery{}, err
	case <-ctx.Done():
		return detector.Delivery{}, ctx.Err()
	}
}

// run starts a reader per partition, decoding in parallel, and the acker.
func (s *DetectorSource) run(ctx context.Context) {
	for _, p := range s.parts {
		it, err := s.cons[p].Messages(jetstream.PullMaxMessages(2000))
		if err != nil {
			s.errc <- fmt.Errorf("jetstream: consume %s: %w", DetectorConsumer(p), err)
			continue
		}
		go func() {
			<-ctx.Done()
			it.Stop()
		}()
		go s.read(ctx, p, it)
	}
	go s.ackLoop(ctx)
}

func (s *DetectorSource) read(ctx context.Context, p int, it jetstream.MessagesContext) {
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.errc <- fmt.Errorf("jetstream: consume %s: %w", DetectorConsumer(p), err)
			}
			return
		}
		d := detector.Delivery{Subject: m.Subject(), Done: func() { s.done(p, m) }}
		d.Event, d.Err = events.Decode(m.Data())
		if d.Err != nil {
			d.Data = m.Data()
		}
		select {
		case s.out <- d:
		case <-ctx.Done():
			return
		}
	}
}

// done records that m and everything before it in partition p is
// handled; acknowledgements go out every AckEvery events or AckInterval.
func (s *DetectorSource) done(p int, m jetstream.Msg) {
	s.mu.Lock()
	pa := s.pending[p]
	if pa == nil {
		pa = &pendingAck{}
		s.pending[p] = pa
	}
	pa.msg = m
	pa.n++
	flush := pa.n >= s.opts.AckEvery
	if flush {
		pa.msg, pa.n = nil, 0
	}
	s.mu.Unlock()
	if flush {
		s.ack(m)
	}
}

func (s *DetectorSource) ackLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.AckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Flush()
		case <-ctx.Done():
			return
		}
	}
}

// Close stops reading and acknowledges what was handled. Events delivered
// but not handled are delivered again to the next source.
func (s *DetectorSource) Close() {
	s.cancel()
	s.Flush()
}

// Flush acknowledges every handled event now.
func (s *DetectorSource) Flush() {
	s.mu.Lock()
	var ms []jetstream.Msg
	for _, pa := range s.pending {
		if pa.msg != nil {
			ms = append(ms, pa.msg)
			pa.msg, pa.n = nil, 0
		}
	}
	s.mu.Unlock()
	for _, m := range ms {
		s.ack(m)
	}
}

func (s *DetectorSource) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		// The events come again after a restart; the alerts they raise
		// have the same IDs and are de-duplicated by the ALERTS stream.
		s.opts.Log.Warn("ack failed", "subject", m.Subject(), "err", err)
	}
}

// EnforcerSource delivers the alerts to enforce from the ALERTS stream.
type EnforcerSource struct {
	it jetstream.MessagesContext
}

var _ detector.AlertSource = (*EnforcerSource)(nil)

// OpenEnforcerSource creates or binds the shared enforcer consumer. A new
// one starts with the alerts published from now on: enabling enforcement
// does not act on old alerts.
func OpenEnforcerSource(ctx context.Context, js jetstream.JetStream) (*EnforcerSource, error) {
	c, err := js.CreateOrUpdateConsumer(ctx, events.AlertStreamName, jetstream.ConsumerConfig{
		Durable:       EnforcerConsumer,
		Description:   "sessionmon detectors: carry out the actions of alerts",
		FilterSubject: events.AlertSubjects,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: consumer %s: %w", EnforcerConsumer, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(100))
	if err != nil {
		return nil, fmt.Errorf("jetstream: consume %s: %w", EnforcerConsumer, err)
	}
	return &EnforcerSource{it: it}, nil
}

// Close stops reading alerts; those not yet acknowledged come again.
func (s *EnforcerSource) Close() { s.it.Stop() }

// Next returns the next alert.
func (s *EnforcerSource) Next(ctx context.Context) (detector.AlertDelivery, error) {
	m, err := s.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return detector.AlertDelivery{}, ctx.Err()
		}
		return detector.AlertDelivery{}, err
	}
	d := detector.AlertDelivery{Subject: m.Subject(), Attempt: 1, Ack: m.Ack, Retry: m.NakWithDelay}
	if meta, err := m.Metadata(); err == nil {
		d.Attempt = int(meta.NumDelivered)
	}
	d.Alert, d.Err = events.DecodeAlert(m.Data())
	if d.Err != nil {
		d.Data = m.Data()
	}
	return d, nil
}
