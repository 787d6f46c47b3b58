package eventbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// fakeSink records what its batches write.
type fakeSink struct {
	mu      sync.Mutex
	fail    atomic.Bool
	written []string
	writes  []int // rows per successful write
}

func (s *fakeSink) newBatch() AuditBatch { return &fakeBatch{s: s} }

func (s *fakeSink) rows() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.written)
}

type fakeBatch struct {
	s      *fakeSink
	staged []string
}

type rejected string

func (r rejected) Error() string        { return "rejected: " + string(r) }
func (r rejected) RejectReason() string { return string(r) }

func (b *fakeBatch) Add(subject string, data []byte) error {
	if strings.Contains(string(data), "bad") {
		return rejected("bad_payload")
	}
	b.staged = append(b.staged, string(data))
	return nil
}
func (b *fakeBatch) Len() int { return len(b.staged) }
func (b *fakeBatch) Write(ctx context.Context) error {
	if b.s.fail.Load() {
		return errors.New("clickhouse is down")
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	b.s.written = append(b.s.written, b.staged...)
	b.s.writes = append(b.s.writes, len(b.staged))
	return nil
}
func (b *fakeBatch) Reset() { b.staged = b.staged[:0] }

type auditEnv struct {
	js   jetstream.JetStream
	sink *fakeSink
	m    *AuditMetrics
	cfg  AuditConsumerConfig
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureStreamsExist(ctx, js, DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	cfg := SessionAuditConsumer("auditor")
	cfg.BatchSize, cfg.BatchInterval, cfg.AckWait, cfg.PendingInterval = 10, 200*time.Millisecond, time.Second, 100*time.Millisecond
	return &auditEnv{js: js, sink: &fakeSink{}, m: NewAuditMetrics(prometheus.NewRegistry()), cfg: cfg}
}

// start runs a consumer; the returned func stops it and returns Run's error.
func (e *auditEnv) start(t *testing.T, cfg AuditConsumerConfig) func() error {
	t.Helper()
	pub := NewAlertPublisher(e.js, "auditor")
	c, err := NewAuditConsumer(e.js, cfg, e.sink.newBatch, pub.DeadLetter, e.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	eventually(t, "consumer ready", c.Ready)
	return stop
}

func (e *auditEnv) publish(t *testing.T, from, n int) []string {
	t.Helper()
	var out []string
	for i := from; i < from+n; i++ {
		data := fmt.Sprintf("m%04d", i)
		if _, err := e.js.Publish(context.Background(), "sessions.01.session.created", []byte(data)); err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

func (e *auditEnv) info(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := e.js.Consumer(context.Background(), events.StreamName, e.cfg.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAuditConsumerBatchesBySizeAndTime(t *testing.T) {
	e := newAuditEnv(t)
	e.start(t, e.cfg)
	want := e.publish(t, 0, 25)
	eventually(t, "25 rows", func() bool { return len(e.sink.rows()) == 25 })
	if got := e.sink.rows(); !slices.Equal(got, want) {
		t.Fatalf("rows %v", got)
	}
	e.sink.mu.Lock()
	writes := slices.Clone(e.sink.writes)
	e.sink.mu.Unlock()
	// Cut at 10 (a batch waiting for the flusher may take in what
	// arrives meanwhile, up to MaxAckPending), the rest after the
	// interval.
	sum := 0
	for _, w := range writes {
		sum += w
		if w > 2*e.cfg.BatchSize {
			t.Fatalf("writes %v", writes)
		}
	}
	if writes[0] != 10 || sum != 25 || len(writes) < 2 {
		t.Fatalf("writes %v", writes)
	}
	// A few messages are written once the first is BatchInterval old.
	start := time.Now()
	e.publish(t, 25, 3)
	eventually(t, "28 rows", func() bool { return len(e.sink.rows()) == 28 })
	if d := time.Since(start); d < e.cfg.BatchInterval || d > e.cfg.BatchInterval+2*time.Second {
		t.Fatalf("a small batch written after %s (interval %s)", d, e.cfg.BatchInterval)
	}
	eventually(t, "all acked", func() bool { i := e.info(t); return i.AckFloor.Stream == 28 && i.NumAckPending == 0 })
	if n := metricValue(t, e.m.written.WithLabelValues(events.StreamName)); n != 28 {
		t.Fatalf("written metric %v", n)
	}
	var h dto.Metric
	if err := e.m.lag.WithLabelValues(events.StreamName).(prometheus.Metric).Write(&h); err != nil || h.Histogram.GetSampleCount() < 3 {
		t.Fatalf("lag observations %d (%v)", h.Histogram.GetSampleCount(), err)
	}
}

func TestAuditConsumerHoldsWhileTheSinkFails(t *testing.T) {
	e := newAuditEnv(t)
	e.sink.fail.Store(true)
	e.start(t, e.cfg)
	want := e.publish(t, 0, 20)
	eventually(t, "write errors", func() bool { return metricValue(t, e.m.writeErrors.WithLabelValues(events.StreamName)) >= 2 })
	// Longer than AckWait: the messages are kept alive, nothing is acked
	// and the lag shows.
	time.Sleep(2500 * time.Millisecond)
	if i := e.info(t); i.AckFloor.Stream != 0 || i.NumAckPending != 20 || i.NumRedelivered != 0 {
		t.Fatalf("while failing: ack floor %d, ack pending %d, redelivered %d", i.AckFloor.Stream, i.NumAckPending, i.NumRedelivered)
	}
	if n := metricValue(t, e.m.ackPending.WithLabelValues(events.StreamName)); n != 20 {
		t.Fatalf("ack pending metric %v", n)
	}
	e.sink.fail.Store(false)
	eventually(t, "drained", func() bool { return len(e.sink.rows()) == 20 })
	eventually(t, "all acked", func() bool { return e.info(t).NumAckPending == 0 })
	if got := e.sink.rows(); !slices.Equal(got, want) {
		t.Fatalf("rows %v", got)
	}
}

func TestAuditConsumerDeadLetters(t *testing.T) {
	e := newAuditEnv(t)
	e.start(t, e.cfg)
	e.publish(t, 0, 3)
	if _, err := e.js.Publish(context.Background(), "sessions.02.session.created", []byte("bad one")); err != nil {
		t.Fatal(err)
	}
	e.publish(t, 3, 3)
	eventually(t, "6 rows", func() bool { return len(e.sink.rows()) == 6 })
	eventually(t, "all acked", func() bool { return e.info(t).AckFloor.Stream == 7 })
	if n := metricValue(t, e.m.deadLetters.WithLabelValues(events.StreamName, "bad_payload")); n != 1 {
		t.Fatalf("dead letters metric %v", n)
	}
	dl, err := e.js.Stream(context.Background(), DeadLetterStreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dl.GetLastMsgForSubject(context.Background(), "deadletter.>")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "bad one" || m.Subject != "deadletter.sessions.02.session.created" ||
		m.Header.Get(DeadLetterReasonHeader) != "bad_payload: rejected: bad_payload" || m.Header.Get("Sessionmon-Consumer") != "auditor" {
		t.Fatalf("dead letter %s %q %v", m.Subject, m.Data, m.Header)
	}
}

// A message holding a batch of events is stored event by event: a bad
// event is dead-lettered alone, the others are stored, and the message is
// acknowledged once. A message that is not even a batch is dead-lettered
// whole.
func TestAuditConsumerBatchMessages(t *testing.T) {
	e := newAuditEnv(t)
	e.start(t, e.cfg)
	var elems []string
	for i := range 25 {
		elems = append(elems, fmt.Sprintf("%d", 100+i))
	}
	elems[7] = `"bad"`
	for _, data := range []string{"[" + strings.Join(elems, ",") + "]", "[1,", "m0000"} {
		if _, err := e.js.Publish(context.Background(), "sessions.01.session.accessed", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "25 rows", func() bool { return len(e.sink.rows()) == 25 })
	eventually(t, "all acked", func() bool { return e.info(t).AckFloor.Stream == 3 })
	want := append(slices.Delete(slices.Clone(elems), 7, 8), "m0000")
	if got := e.sink.rows(); !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for reason, n := range map[string]float64{"bad_payload": 1, "invalid": 1} {
		if got := metricValue(t, e.m.deadLetters.WithLabelValues(events.StreamName, reason)); got != n {
			t.Errorf("dead letters %s: %v, want %v", reason, got, n)
		}
	}
	if n := metricValue(t, e.m.eventsWritten.WithLabelValues(events.StreamName)); n != 25 {
		t.Errorf("events written %v, want 25", n)
	}
	if n := metricValue(t, e.m.written.WithLabelValues(events.StreamName)); n != 2 {
		t.Errorf("messages written %v, want 2 (the broken one was dead-lettered)", n)
	}
	dl, err := e.js.Stream(context.Background(), DeadLetterStreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dl.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `"bad"` {
		t.Fatalf("dead letter %q, want the bad event alone", m.Data)
	}
}

func TestAuditConsumerFlushesOnShutdown(t *testing.T) {
	e := newAuditEnv(t)
	cfg := e.cfg
	cfg.BatchSize, cfg.BatchInterval = 1000, time.Hour
	stop := e.start(t, cfg)
	e.publish(t, 0, 5)
	eventually(t, "5 delivered", func() bool { return e.info(t).NumAckPending == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(e.sink.rows()); n != 5 {
		t.Fatalf("%d rows written at shutdown", n)
	}
	if i := e.info(t); i.AckFloor.Stream != 5 {
		t.Fatalf("ack floor %d", i.AckFloor.Stream)
	}
}

func TestAuditConsumerShutdownWhileTheSinkFails(t *testing.T) {
	e := newAuditEnv(t)
	cfg := e.cfg
	cfg.ShutdownTimeout = 500 * time.Millisecond
	e.sink.fail.Store(true)
	stop := e.start(t, cfg)
	e.publish(t, 0, 15)
	eventually(t, "delivered", func() bool { return e.info(t).NumAckPending == 15 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	// Nothing acked: a later writer gets everything.
	if i := e.info(t); i.AckFloor.Stream != 0 {
		t.Fatalf("ack floor %d", i.AckFloor.Stream)
	}
	e.sink.fail.Store(false)
	e.start(t, cfg)
	eventually(t, "redelivered and written", func() bool { return len(e.sink.rows()) == 15 })
}

// A writer killed after storing a batch and before acking it: the batch
// is redelivered to the next writer (which stores it again; the sink must
// make that invisible, see the clickhouse package's tests).
func TestAuditConsumerFaultAfterWrite(t *testing.T) {
	e := newAuditEnv(t)
	cfg := e.cfg
	cfg.FaultAfterWrite = func() error { return errors.New("killed") }
	stop := e.start(t, cfg)
	e.publish(t, 0, 10)
	eventually(t, "a batch written", func() bool { return len(e.sink.rows()) == 10 })
	if err := stop(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Run: %v", err)
	}
	if i := e.info(t); i.AckFloor.Stream != 0 {
		t.Fatalf("acked after the fault: %d", i.AckFloor.Stream)
	}
	e.start(t, e.cfg)
	e.publish(t, 10, 5)
	eventually(t, "redelivered", func() bool { return len(e.sink.rows()) == 25 })
	eventually(t, "all acked", func() bool { i := e.info(t); return i.AckFloor.Stream == 15 && i.NumAckPending == 0 })
}

func TestAuditConsumerWaitsForTheStream(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sink := &fakeSink{}
	cfg := SessionAuditConsumer("auditor")
	cfg.BatchInterval = 50 * time.Millisecond
	c, err := NewAuditConsumer(js, cfg, sink.newBatch, NewAlertPublisher(js, "auditor").DeadLetter, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	if c.Ready() {
		t.Fatal("ready without a stream")
	}
	if err := EnsureStreamsExist(context.Background(), js, DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", c.Ready)
	if _, err := js.Publish(context.Background(), "sessions.01.session.created", []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "written", func() bool { return len(sink.rows()) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEnsureStreamsExistKeepsExistingOnes(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	o := DefaultStreamOptions()
	o.MaxAge = time.Hour
	if _, err := EnsureSessionStream(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStreamsExist(ctx, js, DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	for name, age := range map[string]time.Duration{events.StreamName: time.Hour, events.AlertStreamName: DefaultStreamOptions().MaxAge, DeadLetterStreamName: DefaultStreamOptions().MaxAge} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != age {
			t.Errorf("%s: max age %s, want %s", name, got, age)
		}
	}
}

func TestAuditConsumerConfig(t *testing.T) {
	good := SessionAuditConsumer("a")
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	alerts := AlertAuditConsumer("a")
	if alerts.Durable != "a-alerts" || !slices.Equal(alerts.Filters, []string{"alerts.>", "actions.>"}) || alerts.Stream != "ALERTS" {
		t.Fatalf("%+v", alerts)
	}
	cc := good.ConsumerConfig()
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxAckPending != 2*good.BatchSize || cc.MaxDeliver != -1 || cc.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Fatalf("%+v", cc)
	}
	for _, f := range []func(*AuditConsumerConfig){
		func(c *AuditConsumerConfig) { c.BatchSize = 0 },
		func(c *AuditConsumerConfig) { c.BatchInterval = 0 },
		func(c *AuditConsumerConfig) { c.AckWait = time.Millisecond },
		func(c *AuditConsumerConfig) { c.Durable = "" },
		func(c *AuditConsumerConfig) { c.ShutdownTimeout = 0 },
	} {
		c := good
		f(&c)
		if c.Validate() == nil {
			t.Errorf("%+v: valid", c)
		}
	}
}
