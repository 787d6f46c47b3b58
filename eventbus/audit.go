package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/events"
)

// The audit writer reads the SESSIONS and ALERTS streams with one durable
// pull consumer each, and acknowledges a batch's messages only once its
// sink (the ClickHouse adapter) has stored the batch.
//
// Acks are explicit, one per message. AckAll (one ack per batch) would
// save about a quarter of the NATS CPU per message (measured: 5.9 against
// 8.1 µs here) but is not safe: a writer that restarts, or a second writer
// on the same consumer, receives new messages at once while the messages
// delivered to the writer before it wait AckWait for their redelivery, and
// acking the new ones with AckAll would acknowledge those, unstored. Any
// number of writers can share a consumer with explicit acks; a message
// redelivered after a writer died may be stored twice, which the sink
// makes invisible.

// AuditConsumerConfig configures one audit consumer.
type AuditConsumerConfig struct {
	Stream  string
	Durable string
	Filters []string
	// BatchSize and BatchInterval cut batches: a batch is written when it
	// holds BatchSize events (a message may hold a batch of them) or its
	// first message is BatchInterval old.
	BatchSize     int
	BatchInterval time.Duration
	// AckWait is how long JetStream waits for an ack before redelivering;
	// while ClickHouse is down the writer keeps its batches alive with
	// in-progress acks.
	AckWait time.Duration
	// PendingInterval is how often the consumer's pending counts are read
	// for the lag metrics.
	PendingInterval time.Duration
	// ShutdownTimeout bounds the final flush when the context ends; what
	// is not stored by then is left unacked, for redelivery.
	ShutdownTimeout time.Duration
	// FaultAfterWrite, for tests, is called after a batch was stored and
	// before it is acked; a non-nil error stops the consumer there, without
	// the ack, as a writer killed at that point would.
	FaultAfterWrite func() error
}

// SessionAuditConsumer is the configuration of the audit consumer of the
// SESSIONS stream, named <prefix>-sessions.
func SessionAuditConsumer(prefix string) AuditConsumerConfig {
	return defaultAudit(events.StreamName, prefix+"-sessions", events.StreamSubjects)
}

// AlertAuditConsumer is the configuration of the audit consumer of the
// ALERTS stream (alerts and actions), named <prefix>-alerts.
func AlertAuditConsumer(prefix string) AuditConsumerConfig {
	return defaultAudit(events.AlertStreamName, prefix+"-alerts", events.AlertSubjects, events.ActionSubjects)
}

// DefaultAuditBatchSize is the default most rows of an insert. Below it
// batches are cut by BatchInterval; at it, ClickHouse gets at most a few
// inserts a second, as it likes: measured here, 3.8 µs of ClickHouse's CPU
// an event in 50,000-row batches against 8.6 in 10,000-row ones, the
// difference mostly merges of the smaller parts; and at 200,000 events/s
// 100,000-row batches kept the end-to-end lag p99 between 1.0 and 1.8 s
// where 50,000-row ones let it reach 2.4 to 2.7 s (BenchmarkPipeline). The
// price is memory: draining a backlog peaked at about 1 GiB of heap
// (garbage included) against 640 MiB with 50,000.
const DefaultAuditBatchSize = 100000

func defaultAudit(stream, durable string, filters ...string) AuditConsumerConfig {
	return AuditConsumerConfig{
		Stream: stream, Durable: durable, Filters: filters,
		BatchSize: DefaultAuditBatchSize, BatchInterval: time.Second,
		AckWait:         30 * time.Second,
		PendingInterval: 5 * time.Second, ShutdownTimeout: 15 * time.Second,
	}
}

// Validate checks the configuration.
func (c AuditConsumerConfig) Validate() error {
	switch {
	case c.Stream == "" || c.Durable == "" || len(c.Filters) == 0:
		return errors.New("audit consumer: stream, durable name and filters are required")
	case c.BatchSize < 1 || c.BatchSize > 1_000_000:
		return fmt.Errorf("audit consumer %s: batch size %d, want 1 to 1000000", c.Durable, c.BatchSize)
	case c.BatchInterval <= 0:
		return fmt.Errorf("audit consumer %s: batch interval must be positive", c.Durable)
	case c.AckWait < time.Second:
		return fmt.Errorf("audit consumer %s: ack wait %s, want at least 1s", c.Durable, c.AckWait)
	case c.PendingInterval <= 0 || c.ShutdownTimeout <= 0:
		return fmt.Errorf("audit consumer %s: pending interval and shutdown timeout must be positive", c.Durable)
	}
	return nil
}

// prefetch is how many bytes of messages the client buffers ahead of the
// batches: about a batch's worth (events are about 500 bytes), from 1 MiB
// to 64 MiB. Bytes, not messages: a message may hold one event or hundreds.
func (c AuditConsumerConfig) prefetch() int { return min(max(c.BatchSize*512, 1<<20), 64<<20) }

// ConsumerConfig is the JetStream consumer configuration.
func (c AuditConsumerConfig) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		Description:    "sessionmon audit writer: every message into ClickHouse",
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     -1,
		FilterSubjects: c.Filters,
		// Two batches of single-event messages: one being written, one
		// filling. Every unacked message is then in a batch, which keeps
		// it alive while ClickHouse is away. Messages holding batches of
		// events fill a batch sooner; the rest wait in the client's
		// buffer (see Run), and those not kept alive are redelivered
		// (harmless: the sink de-duplicates).
		MaxAckPending: 2 * c.BatchSize,
	}
}

// AuditBatch is what an audit consumer writes to: a sink's batch. Add
// stages a message (an error rejects it: it is dead-lettered, with the
// reason of a RejectReason() string method if it has one); Write stores
// the staged rows and may be called again after an error, with the same
// rows; Reset empties it.
type AuditBatch interface {
	Add(subject string, data []byte) error
	Len() int
	Write(ctx context.Context) error
	Reset()
}

// DeadLetterFunc stores a message that cannot be written, with the reason:
// AlertPublisher.DeadLetter.
type DeadLetterFunc func(ctx context.Context, subject string, data []byte, reason string) error

// AuditConsumer moves one stream's messages into a sink in batches.
type AuditConsumer struct {
	js       jetstream.JetStream
	cfg      AuditConsumerConfig
	newBatch func() AuditBatch
	dead     DeadLetterFunc
	m        *AuditMetrics
	log      *slog.Logger
	ready    atomic.Bool
}

// NewAuditConsumer returns a consumer; newBatch makes the sink's batches
// (two are used, in turn).
func NewAuditConsumer(js jetstream.JetStream, cfg AuditConsumerConfig, newBatch func() AuditBatch, dead DeadLetterFunc, m *AuditMetrics, log *slog.Logger) (*AuditConsumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewAuditMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AuditConsumer{js: js, cfg: cfg, newBatch: newBatch, dead: dead, m: m,
		log: log.With("stream", cfg.Stream, "consumer", cfg.Durable)}, nil
}

// Ready reports whether the consumer exists and is being read.
func (c *AuditConsumer) Ready() bool { return c.ready.Load() }

// staged is a batch being filled or written, with its messages.
type staged struct {
	batch AuditBatch
	msgs  []jetstream.Msg
	// events counts the events (alerts, actions) of msgs, rejected
	// ones included.
	events int
	// lost counts the messages none of whose events were stored.
	lost int
	// stamp is when JetStream stored the batch's first message, for the
	// lag (parsing every message's metadata costs 0.5 µs a message).
	stamp    time.Time
	rejected int
	touched  time.Time // when the messages were last kept alive
}

func (s *staged) reset() {
	s.batch.Reset()
	clear(s.msgs)
	s.msgs = s.msgs[:0]
	s.stamp, s.rejected, s.events, s.lost = time.Time{}, 0, 0, 0
}

// keepAlive tells JetStream the messages are still being worked on, so
// that they are not redelivered while ClickHouse is away.
func (s *staged) keepAlive(every time.Duration) {
	if time.Since(s.touched) < every {
		return
	}
	for _, m := range s.msgs {
		_ = m.InProgress()
	}
	s.touched = time.Now()
}

// write writes the batch, keeping its messages alive meanwhile: one
// attempt against a ClickHouse that stopped answering can outlast AckWait.
func (s *staged) write(ctx context.Context, every time.Duration) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				for _, m := range s.msgs {
					_ = m.InProgress()
				}
			}
		}
	})
	err := s.batch.Write(ctx)
	close(done)
	wg.Wait()
	return err
}

// waitAlive waits d, keeping the messages alive; false if ctx ended.
func (s *staged) waitAlive(ctx context.Context, d, every time.Duration) bool {
	wait := time.NewTimer(d)
	defer wait.Stop()
	tick := time.NewTicker(max(every/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		s.keepAlive(every)
		select {
		case <-ctx.Done():
			return false
		case <-wait.C:
			return true
		case <-tick.C:
		}
	}
}

// errFault is how FaultAfterWrite stops the consumer.
type errFault struct{ err error }

func (e errFault) Error() string { return "fault after write: " + e.err.Error() }

// Run consumes until ctx ends, then writes and acks what it received
// (within ShutdownTimeout). It waits for NATS and the stream when they are
// not there yet, and retries a batch that cannot be stored for as long as
// it runs: nothing is acked that was not stored.
func (c *AuditConsumer) Run(ctx context.Context) error {
	msgs := make(chan jetstream.Msg, 1024)
	abandon := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.read(ctx, abandon, msgs)
	}()

	// The flusher writes and acks batches in order; it ends when toFlush
	// is closed, or at once when hard is cancelled.
	hard, hardStop := context.WithCancel(context.Background())
	defer hardStop()
	toFlush := make(chan *staged)
	free := make(chan *staged, 2)
	for range 2 {
		free <- &staged{batch: c.newBatch()}
	}
	flushErr := make(chan error, 1)
	go func() { flushErr <- c.flushLoop(hard, toFlush, free) }()

	keep := c.cfg.AckWait / 3
	cur := <-free
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// add stages a message, starting the batch's clock; false when the
	// message stream ended or ctx ended while dead-lettering.
	add := func(m jetstream.Msg, ok bool) bool {
		if !ok {
			return false
		}
		if len(cur.msgs) == 0 {
			cur.touched = time.Now()
			timer.Reset(c.cfg.BatchInterval)
		}
		return c.stage(ctx, cur, m)
	}
	// grow is where a batch waiting for the flusher takes more messages
	// from: nowhere once it is twice BatchSize.
	grow := func() <-chan jetstream.Msg {
		if cur.events >= 2*c.cfg.BatchSize {
			return nil
		}
		return msgs
	}
	// handOff gives the batch to the flusher and takes the free one.
	handOff := func() bool {
		timer.Stop()
		if len(cur.msgs) == 0 {
			return true
		}
		// An idle flusher takes the batch as it is.
		select {
		case toFlush <- cur:
			cur = <-free
			return true
		default:
		}
		tick := time.NewTicker(keep)
		defer tick.Stop()
		for {
			select {
			case toFlush <- cur:
				// The flusher takes a batch only after it returned the
				// previous one: a free batch is there.
				cur = <-free
				return true
			case <-tick.C:
				cur.keepAlive(keep)
			case m, ok := <-grow():
				// The flusher is busy (or ClickHouse is away): the
				// batch grows, so that every unacked message (at most
				// MaxAckPending) is in a batch and kept alive, up to
				// twice BatchSize events; beyond that, messages wait in
				// the client's buffer.
				if !add(m, ok) {
					return false
				}
			case err := <-flushErr:
				flushErr <- err
				return false
			case <-ctx.Done():
				return false // cur is still ours: the shutdown writes it
			}
		}
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-flushErr:
			flushErr <- err
			break loop
		case <-timer.C:
			if !handOff() {
				break loop
			}
		case m, ok := <-msgs:
			if !add(m, ok) {
				break loop
			}
			if cur.events >= c.cfg.BatchSize && !handOff() {
				break loop
			}
		}
	}
	c.ready.Store(false)

	var runErr error
	select {
	case runErr = <-flushErr:
	default:
	}
	if runErr != nil {
		// The flusher failed (or a fault was injected): stop as a
		// crashed writer would, acking nothing more.
		hardStop()
		close(abandon)
		<-readDone
		close(toFlush)
		var f errFault
		if errors.As(runErr, &f) {
			return runErr
		}
		return fmt.Errorf("audit consumer %s: %w", c.cfg.Durable, runErr)
	}

	// Graceful end. The reader drains the client's buffer: those messages
	// were delivered to this writer, so it writes them too, with what it
	// holds, within the timeout; what is left is redelivered later.
	deadline := time.AfterFunc(c.cfg.ShutdownTimeout, hardStop)
	defer deadline.Stop()
drain:
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				break drain
			}
			if len(cur.msgs) == 0 {
				cur.touched = time.Now()
			}
			c.stage(hard, cur, m)
		case <-hard.Done():
			break drain
		}
	}
	close(abandon)
	<-readDone
	if len(cur.msgs) > 0 {
		select {
		case toFlush <- cur:
		case <-hard.Done():
		}
	}
	close(toFlush)
	err := <-flushErr
	if hard.Err() != nil {
		c.log.Warn("shutdown timeout: unwritten messages left unacked, for redelivery")
	}
	return err
}

// stage decodes one message into the batch, dead-lettering what cannot
// be stored: the whole message when it is not even a batch, else each
// event that is rejected, alone. It returns false only when ctx ended
// while dead-lettering.
func (c *AuditConsumer) stage(ctx context.Context, s *staged, m jetstream.Msg) bool {
	c.m.messages.Inc()
	if len(s.msgs) == 0 {
		if meta, err := m.Metadata(); err == nil {
			s.stamp = meta.Timestamp
		}
	}
	s.msgs = append(s.msgs, m)
	parts, err := c.split(m.Data())
	if err != nil {
		s.events++
		s.rejected++
		s.lost++
		return c.deadLetter(ctx, m.Subject(), m.Data(), "invalid", err)
	}
	s.events += len(parts)
	rejected := 0
	for _, b := range parts {
		if err := s.batch.Add(m.Subject(), b); err != nil {
			reason := "invalid"
			var r interface{ RejectReason() string }
			if errors.As(err, &r) {
				reason = r.RejectReason()
			}
			if !c.deadLetter(ctx, m.Subject(), b, reason, err) {
				return false
			}
			rejected++
			s.rejected++
		}
	}
	if rejected == len(parts) {
		s.lost++
	}
	return true
}

// split is events.Split on the SESSIONS stream, whose messages may hold
// batches; an ALERTS message is one alert or action.
func (c *AuditConsumer) split(data []byte) ([][]byte, error) {
	if c.cfg.Stream != events.StreamName {
		return [][]byte{data}, nil
	}
	return events.Split(data)
}

func (c *AuditConsumer) deadLetter(ctx context.Context, subject string, data []byte, reason string, cause error) bool {
	c.log.Warn("dead-lettering a message", "subject", subject, "reason", reason, "err", cause)
	for attempt := 0; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.dead(dctx, subject, data, reason+": "+cause.Error())
		cancel()
		if err == nil {
			c.m.deadLetters.WithLabelValues(c.cfg.Stream, reason).Inc()
			return true
		}
		c.log.Warn("dead letter failed; retrying", "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff(attempt)):
		}
	}
}

// flushLoop writes each batch until it is stored, then acks it.
func (c *AuditConsumer) flushLoop(hard context.Context, in <-chan *staged, free chan<- *staged) error {
	keep := c.cfg.AckWait / 3
	for s := range in {
		for attempt := 0; ; attempt++ {
			err := s.write(hard, keep)
			if err == nil {
				break
			}
			if hard.Err() != nil {
				return nil // shutdown timeout: left for redelivery
			}
			c.m.writeErrors.WithLabelValues(c.cfg.Stream).Inc()
			c.log.Warn("batch not stored; holding it and retrying (nothing is acked meanwhile)",
				"rows", s.batch.Len(), "attempt", attempt+1, "err", err)
			if !s.waitAlive(hard, backoff(attempt), keep) {
				return nil
			}
		}
		if c.cfg.FaultAfterWrite != nil {
			if err := c.cfg.FaultAfterWrite(); err != nil {
				return errFault{err}
			}
		}
		c.ack(s)
		s.reset()
		free <- s
	}
	return nil
}

// ack acknowledges a stored batch's messages. An ack that is lost makes
// JetStream redeliver the message, which is stored again: harmless.
func (c *AuditConsumer) ack(s *staged) {
	failed := 0
	for _, m := range s.msgs {
		if err := m.Ack(); err != nil {
			failed++
		}
	}
	if failed > 0 {
		c.m.ackErrors.WithLabelValues(c.cfg.Stream).Add(float64(failed))
		c.log.Warn("acks failed; those messages will be redelivered and de-duplicated", "failed", failed, "of", len(s.msgs))
	}
	if !s.stamp.IsZero() {
		c.m.lag.WithLabelValues(c.cfg.Stream).Observe(time.Since(s.stamp).Seconds())
	}
	c.m.batches.WithLabelValues(c.cfg.Stream).Inc()
	c.m.written.WithLabelValues(c.cfg.Stream).Add(float64(len(s.msgs) - s.lost))
	c.m.eventsWritten.WithLabelValues(c.cfg.Stream).Add(float64(s.events - s.rejected))
}

// read creates (or updates) the consumer and feeds its messages to out,
// starting over after errors. When ctx ends it drains the client's buffer
// into out, then closes out; when abandon is closed it drops everything.
func (c *AuditConsumer) read(ctx context.Context, abandon <-chan struct{}, out chan<- jetstream.Msg) {
	defer close(out)
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return
		}
		cons, err := c.ensure(ctx)
		if err != nil {
			c.ready.Store(false)
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("audit consumer not available; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(attempt)):
			}
			continue
		}
		attempt = 0
		it, err := cons.Messages(jetstream.PullMaxBytes(c.cfg.prefetch()))
		if err != nil {
			c.log.Warn("audit consumer: pull; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		c.ready.Store(true)
		pctx, stopPending := context.WithCancel(ctx)
		go c.pendingLoop(pctx, cons)
		iterDone := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				it.Drain() // Next returns what is buffered, then ends
			case <-abandon:
				it.Stop()
			case <-iterDone:
			}
		}()
		for {
			m, err := it.Next()
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("audit consumer: messages stopped; starting over", "err", err)
				}
				break
			}
			select {
			case out <- m:
			case <-abandon:
				it.Stop()
				close(iterDone)
				stopPending()
				return
			}
		}
		close(iterDone)
		stopPending()
		c.ready.Store(false)
		select {
		case <-ctx.Done():
			return
		case <-abandon:
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *AuditConsumer) ensure(ctx context.Context) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := c.js.CreateOrUpdateConsumer(cctx, c.cfg.Stream, c.cfg.ConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	return cons, nil
}

// pendingLoop reads the consumer's pending counts: how far the audit log
// is behind the stream. It goes on while ClickHouse is down, when they
// grow.
func (c *AuditConsumer) pendingLoop(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(c.cfg.PendingInterval)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			c.m.pending.WithLabelValues(c.cfg.Stream).Set(float64(info.NumPending))
			c.m.ackPending.WithLabelValues(c.cfg.Stream).Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	return min(d, 5*time.Second)
}

// AuditMetrics are the JetStream side of the audit writer, in namespace
// sessionmon, subsystem audit, by stream.
type AuditMetrics struct {
	messages      prometheus.Counter
	written       *prometheus.CounterVec
	eventsWritten *prometheus.CounterVec
	batches       *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	writeErrors   *prometheus.CounterVec
	ackErrors     *prometheus.CounterVec
	pending       *prometheus.GaugeVec
	ackPending    *prometheus.GaugeVec
	lag           *prometheus.HistogramVec
}

// NewAuditMetrics makes the metrics and registers them with reg when it
// is not nil.
func NewAuditMetrics(reg prometheus.Registerer) *AuditMetrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "sessionmon", Subsystem: "audit", Name: name, Help: help}
	}
	stream := []string{"stream"}
	m := &AuditMetrics{
		messages:      prometheus.NewCounter(prometheus.CounterOpts(opts("messages_received_total", "Messages received from JetStream (redeliveries included)."))),
		written:       prometheus.NewCounterVec(prometheus.CounterOpts(opts("messages_written_total", "Messages stored and acknowledged.")), stream),
		eventsWritten: prometheus.NewCounterVec(prometheus.CounterOpts(opts("events_written_total", "Events, alerts and actions stored (a message of the SESSIONS stream may hold a batch of events).")), stream),
		batches:       prometheus.NewCounterVec(prometheus.CounterOpts(opts("batches_total", "Batches stored and acknowledged.")), stream),
		deadLetters:   prometheus.NewCounterVec(prometheus.CounterOpts(opts("dead_letters_total", "Messages that could not be stored, sent to the DEADLETTER stream, by reason.")), []string{"stream", "reason"}),
		writeErrors:   prometheus.NewCounterVec(prometheus.CounterOpts(opts("write_errors_total", "Failed attempts to store a batch (each is retried; nothing is acked meanwhile).")), stream),
		ackErrors:     prometheus.NewCounterVec(prometheus.CounterOpts(opts("ack_errors_total", "Failed acks of stored messages (they are redelivered and de-duplicated).")), stream),
		pending:       prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_pending", "Messages in the stream not yet delivered to the audit writer.")), stream),
		ackPending:    prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("consumer_ack_pending", "Messages delivered to the audit writer and not yet acknowledged (not yet stored).")), stream),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sessionmon", Subsystem: "audit", Name: "lag_seconds",
			Help:    "End-to-end lag of each batch: from the storage of its first message in JetStream to the ack of the stored batch.",
			Buckets: []float64{.05, .1, .25, .5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300},
		}, stream),
	}
	for _, s := range []string{events.StreamName, events.AlertStreamName} {
		m.written.WithLabelValues(s)
		m.eventsWritten.WithLabelValues(s)
		m.batches.WithLabelValues(s)
		m.writeErrors.WithLabelValues(s)
		m.ackErrors.WithLabelValues(s)
		m.pending.WithLabelValues(s)
		m.ackPending.WithLabelValues(s)
		m.lag.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.written, m.eventsWritten, m.batches, m.deadLetters, m.writeErrors, m.ackErrors, m.pending, m.ackPending, m.lag)
	}
	return m
}

// EnsureStreamsExist creates the SESSIONS, ALERTS and DEADLETTER streams
// that do not exist, with o, and leaves existing ones as they are: their
// owners (the session service, the detector) set their limits.
func EnsureStreamsExist(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range []jetstream.StreamConfig{SessionStreamConfig(o), AlertStreamConfig(o), DeadLetterStreamConfig(o)} {
		_, err := js.Stream(ctx, cfg.Name)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("jetstream: stream %s: %w", cfg.Name, err)
		}
		if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("jetstream: create stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
