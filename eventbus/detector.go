package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/events"
)

// DetectorConsumer names the durable consumer of detector group `group` of
// `groups`, e.g. detector-g1-of-4. One consumer per group (not per
// partition) keeps the server's work per event constant: it delivers the
// stream in order, filtered to the group's partitions.
func DetectorConsumer(group, groups int) string {
	return fmt.Sprintf("detector-g%d-of-%d", group, groups)
}

// detectorPrefix starts the name of every detector consumer.
const detectorPrefix = "detector-"

// EnforcerConsumer is the durable consumer of the alerts to enforce, shared
// by every detector: each alert goes to one of them.
const EnforcerConsumer = "enforcer"

// SourceOptions tune a DetectorSource.
type SourceOptions struct {
	// MaxAckPending bounds the unacknowledged events.
	MaxAckPending int
	// AckEvery acknowledges after this many handled events, and
	// AckInterval at the latest after this long.
	AckEvery    int
	AckInterval time.Duration
	// Abandoned is how long the server keeps the consumer of a group that
	// no longer runs (after the number of groups changed).
	Abandoned time.Duration
	Log       *slog.Logger
}

func (o *SourceOptions) defaults() {
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 50000
	}
	if o.AckEvery <= 0 {
		o.AckEvery = 1000
	}
	if o.AckInterval <= 0 {
		o.AckInterval = 20 * time.Millisecond
	}
	if o.Abandoned <= 0 {
		o.Abandoned = 24 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// DetectorSource reads the partitions of one detector group from the
// SESSIONS stream through the group's durable consumer, with ack-all
// acknowledgement. What was acknowledged before this start is history (the
// detector rebuilds its windows from it); the rest is delivered live, in
// stream order, so in order per user.
type DetectorSource struct {
	js    jetstream.JetStream
	opts  SourceOptions
	name  string
	parts map[int]bool
	cons  jetstream.Consumer
	// boundary is the first stream sequence not yet handled: history is
	// below it.
	boundary uint64

	start  sync.Once
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	out    chan detector.Delivery
	errc   chan error

	mu      sync.Mutex
	pending jetstream.Msg // the last handled, not yet acknowledged
	n       int
}

var _ detector.Source = (*DetectorSource)(nil)

// OpenDetectorSource prepares the consumer of group `group` of `groups`.
//
// A group's consumer that does not exist yet starts where the consumers of
// an earlier layout (another number of groups) that covered its partitions
// stopped, so that changing the number of detectors hands the stream over
// without a gap; with none, it starts at the stream's end (a new detector
// does not act on the past; it learns from it in History). A consumer with
// delivered but unacknowledged events (the last detector stopped
// mid-batch) is recreated at its acknowledged floor, so those events come
// again first, in order.
func OpenDetectorSource(ctx context.Context, js jetstream.JetStream, group, groups int, o SourceOptions) (*DetectorSource, error) {
	o.defaults()
	parts, err := detector.Partitions(group, groups)
	if err != nil {
		return nil, err
	}
	s := &DetectorSource{js: js, opts: o, name: DetectorConsumer(group, groups), parts: map[int]bool{},
		out: make(chan detector.Delivery, 4096), errc: make(chan error, 1)}
	for _, p := range parts {
		s.parts[p] = true
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	startSeq, err := s.startSeq(ctx, stream)
	if err != nil {
		return nil, err
	}
	cfg := jetstream.ConsumerConfig{
		Durable:           s.name,
		Description:       fmt.Sprintf("sessionmon detector group %d of %d, partitions %v", group, groups, parts),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       startSeq,
		AckPolicy:         jetstream.AckAllPolicy,
		AckWait:           5 * time.Minute,
		MaxDeliver:        -1,
		MaxAckPending:     o.MaxAckPending,
		InactiveThreshold: o.Abandoned,
	}
	if groups > 1 {
		for _, p := range parts {
			cfg.FilterSubjects = append(cfg.FilterSubjects, events.PartitionFilter(p))
		}
	}
	if s.cons, err = stream.CreateConsumer(ctx, cfg); err != nil {
		return nil, fmt.Errorf("jetstream: create consumer %s: %w", s.name, err)
	}
	s.boundary = startSeq
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// startSeq finds where the group's consumer starts, resetting it when it
// has events in flight.
func (s *DetectorSource) startSeq(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	c, err := stream.Consumer(ctx, s.name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return s.handOver(ctx, stream)
	case err != nil:
		return 0, fmt.Errorf("jetstream: consumer %s: %w", s.name, err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: consumer %s: %w", s.name, err)
	}
	if err := stream.DeleteConsumer(ctx, s.name); err != nil {
		return 0, fmt.Errorf("jetstream: reset consumer %s: %w", s.name, err)
	}
	// When another layout ran after this one (the number of groups was
	// changed and changed back), this consumer is stale: take over from
	// the newer one instead.
	others, err := s.others(ctx, stream)
	if err != nil {
		return 0, err
	}
	for _, o := range others {
		if newer(o, ci) {
			return s.handOver(ctx, stream)
		}
	}
	start := max(ci.AckFloor.Stream+1, ci.Config.OptStartSeq)
	if ci.Delivered.Stream >= start {
		s.opts.Log.Info("consumer had unacknowledged events; restarting it at its ack floor", "consumer", s.name, "seq", start)
	}
	return start, nil // recreated either way, so its settings are this version's
}

// others lists the detector consumers of other layouts that cover one of
// the group's partitions.
func (s *DetectorSource) others(ctx context.Context, stream jetstream.Stream) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	lister := stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if strings.HasPrefix(ci.Name, detectorPrefix) && ci.Name != s.name && s.overlaps(ci.Config) {
			out = append(out, ci)
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("jetstream: list consumers: %w", err)
	}
	return out, nil
}

// handOver returns the lowest first-unhandled sequence of the detector
// consumers of other layouts that covered one of this group's partitions,
// or the stream's end when there are none.
func (s *DetectorSource) handOver(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	start := info.State.LastSeq + 1
	others, err := s.others(ctx, stream)
	if err != nil {
		return 0, err
	}
	// Per partition, the consumer that ran last knows where it stands.
	for p := range s.parts {
		var last *jetstream.ConsumerInfo
		for _, ci := range others {
			if covers(ci.Config, p) && (last == nil || newer(ci, last)) {
				last = ci
			}
		}
		if last != nil {
			from := max(last.AckFloor.Stream+1, last.Config.OptStartSeq)
			s.opts.Log.Info("taking over from the consumer of another layout", "consumer", last.Name, "partition", p, "seq", from)
			start = min(start, from)
		}
	}
	return start, nil
}

// overlaps reports whether a consumer's filter covers one of the group's
// partitions.
func (s *DetectorSource) overlaps(c jetstream.ConsumerConfig) bool {
	for p := range s.parts {
		if covers(c, p) {
			return true
		}
	}
	return false
}

// covers reports whether a consumer's filter covers partition p.
func covers(c jetstream.ConsumerConfig, p int) bool {
	filters := c.FilterSubjects
	if c.FilterSubject != "" {
		filters = append(filters, c.FilterSubject)
	}
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if f == events.StreamSubjects || f == events.PartitionFilter(p) {
			return true
		}
	}
	return false
}

// newer reports whether a was delivered to more recently than b.
func newer(a, b *jetstream.ConsumerInfo) bool {
	switch {
	case a.Delivered.Last == nil:
		return false
	case b.Delivered.Last == nil:
		return true
	}
	return a.Delivered.Last.After(*b.Delivered.Last)
}

// Consumers names the source's consumer, for lag metrics.
func (s *DetectorSource) Consumers() []string { return []string{s.name} }

// History replays the events of the group's partitions stored since
// `since` and below the boundary, in stream order, through an ordered
// (ephemeral) consumer. Events that do not decode are skipped: they were
// dead-lettered when they were live.
func (s *DetectorSource) History(ctx context.Context, since time.Time, fn func(events.Event)) error {
	end := s.boundary - 1
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
		if p, _, err := events.ParseSubject(m.Subject()); err == nil && s.parts[p] {
			parts, _ := events.Split(m.Data())
			for _, b := range parts {
				// The stream starts at the storage time; events say
				// when they happened.
				if ev, err := events.Decode(b); err == nil && !ev.Time.Before(since) {
					fn(ev)
				}
			}
		}
		if seq == end {
			return nil
		}
	}
}

// Next returns the next live event of the group's partitions. The first
// call starts reading; ctx bounds only the wait.
func (s *DetectorSource) Next(ctx context.Context) (detector.Delivery, error) {
	s.start.Do(s.run)
	select {
	case d := <-s.out:
		return d, nil
	case err := <-s.errc:
		return detector.Delivery{}, err
	case <-ctx.Done():
		return detector.Delivery{}, ctx.Err()
	}
}

// run starts the reader, which decodes while the service evaluates, and
// the acker.
func (s *DetectorSource) run() {
	it, err := s.cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		s.errc <- fmt.Errorf("jetstream: consume %s: %w", s.name, err)
		return
	}
	go func() {
		<-s.ctx.Done()
		it.Stop()
	}()
	go s.read(it)
	go s.ackLoop()
}

func (s *DetectorSource) read(it jetstream.MessagesContext) {
	for {
		m, err := it.Next()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.errc <- fmt.Errorf("jetstream: consume %s: %w", s.name, err)
			}
			return
		}
		for _, d := range s.deliveries(m) {
			select {
			case s.out <- d:
			case <-s.ctx.Done():
				return
			}
		}
	}
}

// deliveries are the events of message m, one delivery each; the last one
// acknowledges m. An element of a batch that does not decode is a delivery
// of its own, to be dead-lettered alone.
func (s *DetectorSource) deliveries(m jetstream.Msg) []detector.Delivery {
	parts, err := events.Split(m.Data())
	if err != nil {
		return []detector.Delivery{{Subject: m.Subject(), Err: err, Data: m.Data(), Done: func() { s.done(m, 1) }}}
	}
	ds := make([]detector.Delivery, len(parts))
	for i, b := range parts {
		d := &ds[i]
		d.Subject, d.Done = m.Subject(), func() {}
		if d.Event, d.Err = events.Decode(b); d.Err != nil {
			d.Data = b
		}
	}
	n := len(parts)
	ds[n-1].Done = func() { s.done(m, n) }
	return ds
}

// done records that m, holding n events, and everything before it is
// handled; acknowledgements go out every AckEvery events or AckInterval.
func (s *DetectorSource) done(m jetstream.Msg, n int) {
	s.mu.Lock()
	s.pending = m
	s.n += n
	flush := s.n >= s.opts.AckEvery
	if flush {
		s.pending, s.n = nil, 0
	}
	s.mu.Unlock()
	if flush {
		s.ack(m)
	}
}

func (s *DetectorSource) ackLoop() {
	t := time.NewTicker(s.opts.AckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Flush()
		case <-s.ctx.Done():
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
	m := s.pending
	s.pending, s.n = nil, 0
	s.mu.Unlock()
	if m != nil {
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
