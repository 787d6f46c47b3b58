package detector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/rules"
)

// Delivery is one message of the event stream handed to the service:
// decoded by the source (Err set when it could not be), with a way to
// acknowledge it once its effects are durable.
type Delivery struct {
	Event   events.Event
	Err     error  // the decode error of a malformed message
	Subject string // kept for dead letters
	Data    []byte // the raw message, kept only when Err is set
	// Done acknowledges this delivery and every earlier one of its
	// partition. The service calls it after the alerts it raised are
	// stored.
	Done func()
}

// Source is where the service reads events: a JetStream consumer per
// partition in production (eventbus.DetectorSource), a slice in tests.
type Source interface {
	// History calls fn, in stream order, for every event of the recent
	// past (since) that was already handled before this start. The
	// service rebuilds its windows from them without acting again.
	History(ctx context.Context, since time.Time, fn func(events.Event)) error
	// Next returns the next live delivery. It returns ctx.Err() when ctx
	// ends.
	Next(ctx context.Context) (Delivery, error)
}

// Sink stores what the service produces.
type Sink interface {
	// PublishAlerts stores alerts; nil means they are durable.
	PublishAlerts(ctx context.Context, as []events.Alert) error
	// DeadLetter stores a message that could not be decoded, with why.
	DeadLetter(ctx context.Context, subject string, data []byte, reason string) error
}

// Service runs the engine over a live stream: warm up from history, then
// process each event, publish its alerts, and acknowledge it. It owns the
// engine: rule reloads go through Reload.
type Service struct {
	engine  *Engine
	source  Source
	sink    Sink
	warmup  time.Duration
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// maxFuture is how far ahead of now an event time may be.
	maxFuture time.Duration

	reload chan *rules.Set
	ready  chan struct{}
	stats  chan chan Stats
}

// Stats is a snapshot of the service's state, for gauges.
type Stats struct {
	Users, Sessions, IPs int
	RulesVersion         string
	// Evaluations counts, per rule in force, the live events it was given.
	Evaluations map[string]uint64
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Engine *Engine
	Source Source
	Sink   Sink
	// Warmup is how much history to rebuild windows from on start.
	Warmup  time.Duration
	Log     *slog.Logger
	Metrics *Metrics // nil: not measured
	Now     func() time.Time
	// MaxFuture is how far ahead of Now an event's time may be; a later
	// one is dead-lettered (time_in_future), as is one outside CheckTime
	// (time_out_of_range). Zero means DefaultMaxFuture.
	MaxFuture time.Duration
}

// NewService returns a service; Run starts it.
func NewService(c ServiceConfig) *Service {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxFuture <= 0 {
		c.MaxFuture = DefaultMaxFuture
	}
	return &Service{engine: c.Engine, source: c.Source, sink: c.Sink, warmup: c.Warmup, log: c.Log,
		metrics: c.Metrics, now: c.Now, maxFuture: c.MaxFuture, reload: make(chan *rules.Set), ready: make(chan struct{}), stats: make(chan chan Stats)}
}

// Ready is closed once the warm-up is over and live events flow.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Reload swaps the rules between two events. It returns when the engine
// took them, or when ctx ends.
func (s *Service) Reload(ctx context.Context, set *rules.Set) error {
	select {
	case s.reload <- set:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats asks the running service for a snapshot of its state.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	ch := make(chan Stats, 1)
	select {
	case s.stats <- ch:
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
	select {
	case st := <-ch:
		return st, nil
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
}

// Run warms up, then processes live events until ctx ends. It returns nil
// on a clean stop; errors of the source end it.
func (s *Service) Run(ctx context.Context) error {
	start := s.now()
	n, refused := 0, 0
	err := s.source.History(ctx, start.Add(-s.warmup), func(ev events.Event) {
		// An event whose time the live service refuses was dead-lettered
		// then; it must not move the engine's clock now either.
		if checkLive(ev.Time, start, s.maxFuture) != nil {
			refused++
			return
		}
		n++
		s.engine.Process(ev) // its alerts were raised before this start
	})
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	s.metrics.warmupEvents.Add(float64(n))
	s.metrics.warmupSeconds.Set(s.now().Sub(start).Seconds())
	if refused > 0 {
		s.log.Warn("warm-up skipped events whose time the detector refuses (dead-lettered when they came)", "events", refused)
	}
	s.log.Info("warm-up done", "events", n, "since", start.Add(-s.warmup), "took", s.now().Sub(start).Round(time.Millisecond))
	close(s.ready)

	next := make(chan nextResult)
	go s.pump(ctx, next)
	for {
		select {
		case <-ctx.Done():
			return nil
		case set := <-s.reload:
			s.engine.SetRules(set)
		case ch := <-s.stats:
			u, se, ip := s.engine.Size()
			ch <- Stats{Users: u, Sessions: se, IPs: ip, RulesVersion: s.engine.Rules().Version(), Evaluations: s.engine.Evaluations()}
		case r := <-next:
			if r.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("event source: %w", r.err)
			}
			if err := s.handle(ctx, r.d); err != nil {
				return nil // only ctx ending stops handle
			}
		}
	}
}

type nextResult struct {
	d   Delivery
	err error
}

// pump feeds deliveries to Run, so that Run can also serve reloads and
// stats while the source waits.
func (s *Service) pump(ctx context.Context, out chan<- nextResult) {
	for {
		d, err := s.source.Next(ctx)
		select {
		case out <- nextResult{d, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// handle processes one delivery and acknowledges it once its effects are
// durable. Storing alerts or dead letters is retried until it works: the
// stream waits rather than loses an alert. It fails only when ctx ends,
// and then leaves the delivery unacknowledged for the next start.
func (s *Service) handle(ctx context.Context, d Delivery) error {
	now := s.now()
	if d.Err == nil {
		// A time before 2000 or in the future is malformed too: the
		// engine runs on event time (see CheckTime).
		if err := checkLive(d.Event.Time, now, s.maxFuture); err != nil {
			d.Err = err
			if d.Data == nil {
				d.Data = encodeRefused(d.Event)
			}
		}
	}
	if d.Err != nil {
		reason := deadLetterReason(d.Err)
		s.metrics.deadLetters.WithLabelValues(reason).Inc()
		s.log.Warn("malformed event dead-lettered", "subject", d.Subject, "reason", reason, "err", d.Err)
		msg := d.Err.Error()
		if err := s.retry(ctx, "dead letter", func() error { return s.sink.DeadLetter(ctx, d.Subject, d.Data, msg) }); err != nil {
			return err
		}
		d.Done()
		return nil
	}
	ev := d.Event
	s.metrics.eventsFor(ev.Type).Inc()
	s.metrics.lag.Observe(max(0, now.Sub(ev.Time).Seconds()))
	alerts := s.engine.Process(ev)
	if len(alerts) > 0 {
		if err := s.retry(ctx, "publish alerts", func() error { return s.sink.PublishAlerts(ctx, alerts) }); err != nil {
			return err
		}
		for _, a := range alerts {
			s.metrics.alerts.WithLabelValues(a.Rule, a.Severity, a.Action).Inc()
			s.log.Info("alert", "id", a.ID, "rule", a.Rule, "severity", a.Severity, "user", a.UserID,
				"action", a.Action, "target", a.Target, "summary", a.Summary)
		}
	}
	d.Done()
	return nil
}

// retry calls f until it succeeds or ctx ends, backing off from 50 ms to
// 5 s.
func (s *Service) retry(ctx context.Context, what string, f func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.sinkErrors.Inc()
		s.log.Error(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// deadLetterReason is a bounded label for why an event was refused: the
// field a DecodeError names, the reason of a TimeError, or "malformed".
func deadLetterReason(err error) string {
	var te *TimeError
	if errors.As(err, &te) {
		return te.Reason
	}
	var de *events.DecodeError
	if errors.As(err, &de) && de.Field != "" && len(de.Field) <= 32 {
		return de.Field
	}
	return "malformed"
}

// encodeRefused is the dead letter of an event that decoded (sources keep
// the raw message only of those that did not): the event encoded again,
// or, when its time is past year 9999 in UTC, which JSON does not encode,
// with the time as it was written.
func encodeRefused(ev events.Event) []byte {
	if b, err := ev.Encode(); err == nil {
		return b
	}
	b, _ := json.Marshal(map[string]any{
		"specversion": events.SpecVersion, "id": ev.ID, "source": ev.Source, "type": ev.Type,
		"time": ev.Time.Format(time.RFC3339Nano), "subject": ev.Data.SessionID,
		"datacontenttype": "application/json", "dataschema": events.DataSchema, "data": ev.Data,
	})
	return b
}

// Partitions returns the stream partitions that detector group `group` of
// `groups` owns: those whose number modulo groups is group. With groups a
// divisor of events.Partitions (1, 2, 4, 8, 16) each group owns as many.
func Partitions(group, groups int) ([]int, error) {
	if groups < 1 || groups > events.Partitions {
		return nil, fmt.Errorf("groups must be 1 to %d, got %d", events.Partitions, groups)
	}
	if group < 0 || group >= groups {
		return nil, fmt.Errorf("group must be 0 to %d, got %d", groups-1, group)
	}
	var out []int
	for p := group; p < events.Partitions; p += groups {
		out = append(out, p)
	}
	return out, nil
}
