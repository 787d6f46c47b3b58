package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// proxy is a TCP proxy between the writer and ClickHouse that a test can
// cut and restore: ClickHouse "goes down" for the writer only, while the
// server the other tests share keeps running.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	pairs  map[net.Conn]net.Conn // writer side -> ClickHouse side
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, pairs: map[net.Conn]net.Conn{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 3*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.pairs[c] = up
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); closeGently(up) }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// closeGently ends a connection to ClickHouse as a client that goes away
// does: a FIN, then whatever the server still sends is read and dropped.
// (Resetting the shared test server's connections mid-query has been
// seen to crash it; the writer's side is cut hard regardless.)
func closeGently(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, c)
	c.Close()
}

// Cut drops every connection on the writer's side (a reset, as when the
// server dies) and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c, up := range p.pairs {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		go closeGently(up)
	}
	clear(p.pairs)
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

type pipeline struct {
	reg   *prometheus.Registry
	js    jetstream.JetStream
	ch    driver.Conn // to count, beside the store's (which may be cut)
	store *Store
	am    *eventbus.AuditMetrics
	cfg   eventbus.AuditConsumerConfig
}

// newPipeline connects an in-process JetStream and a store on a database of
// the test's own, on the ClickHouse of conn, reached through addr (the
// server, or a proxy to it).
func newPipeline(t *testing.T, addr string, conn driver.Conn) *pipeline {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreamsExist(ctxT(t), js, eventbus.DefaultStreamOptions()); err != nil {
		t.Fatal(err)
	}
	db := testenv.ClickHouseDatabase(t, conn)
	reg := prometheus.NewRegistry()
	s, err := Open(Config{URL: "clickhouse://" + addr + "/" + db + "?dial_timeout=1s&read_timeout=5s", RetentionMonths: 13, Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cfg := eventbus.SessionAuditConsumer("auditor")
	cfg.BatchSize, cfg.BatchInterval, cfg.AckWait, cfg.PendingInterval = 500, 200*time.Millisecond, 2*time.Second, 100*time.Millisecond
	return &pipeline{reg: reg, js: js, ch: conn, store: s, am: eventbus.NewAuditMetrics(reg), cfg: cfg}
}

// run starts a writer of the SESSIONS stream; stop ends it.
func (p *pipeline) run(t *testing.T, cfg eventbus.AuditConsumerConfig) (stop func() error) {
	t.Helper()
	pub := eventbus.NewAlertPublisher(p.js, "auditor")
	newBatch := func() eventbus.AuditBatch { return p.store.NewEventBatch(WriterOptions{}) }
	if cfg.Stream == events.AlertStreamName {
		newBatch = func() eventbus.AuditBatch { return p.store.NewAlertBatch(WriterOptions{}) }
	}
	c, err := eventbus.NewAuditConsumer(p.js, cfg, newBatch, pub.DeadLetter, p.am, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// publish publishes n events of distinct users and returns their IDs.
func (p *pipeline) publish(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	var futs []jetstream.PubAckFuture
	for i := range n {
		e := session(fmt.Sprintf("user-%d", i%97), sid(i), time.Now().Add(-time.Minute), 0, "")[0]
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		f, err := p.js.PublishAsync(events.SubjectFor(e), data, jetstream.WithMsgID(e.ID))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
		ids = append(ids, e.ID)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("publish ack timeout")
		}
	}
	return ids
}

// rows counts the rows of session_events (copies included), over a
// connection of its own (the store's may be cut).
func countRows(t *testing.T, conn driver.Conn, db, where string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(ctxT(t), "SELECT count() FROM `"+db+"`.session_events "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkExactlyOnce checks that every published ID is one event to a query
// (FINAL), and that nothing else is there.
func checkExactlyOnce(t *testing.T, conn driver.Conn, db string, want []string) (copies uint64) {
	t.Helper()
	rows, err := conn.Query(ctxT(t), "SELECT id, count() FROM `"+db+"`.session_events FINAL GROUP BY id ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("event %s: %d rows with FINAL", id, n)
		}
		got = append(got, id)
	}
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%d distinct events stored, want %d", len(got), len(want))
	}
	return countRows(t, conn, db, "") - uint64(len(want))
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pipeline) info(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := p.js.Consumer(ctxT(t), p.cfg.Stream, p.cfg.Durable)
	if err != nil {
		t.Fatal(err)
	}
	i, err := c.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestClickHouseDown: while ClickHouse is unreachable nothing is acked,
// the stream holds the backlog and the lag shows; when it returns, the
// backlog drains and every event is stored exactly once.
func TestClickHouseDown(t *testing.T) {
	// A ClickHouse of its own: the embedded test server has been seen to
	// stop with a fatal error when a client vanishes in the middle of an
	// insert, and the shared one must not take the other tests down.
	addr, conn := testenv.PrivateClickHouse(t)
	px := startProxy(t, addr)
	p := newPipeline(t, px.Addr(), conn)
	db := p.store.Database()
	p.run(t, p.cfg)
	ids := p.publish(t, 2000)
	eventually(t, "the first events stored", 30*time.Second, func() bool { return countRows(t, p.ch, db, "") >= 2000 })

	px.Cut()
	ids = append(ids, p.publish(t, 3000)...)
	eventually(t, "write errors", 30*time.Second, func() bool {
		var errs float64
		for _, m := range gather(t, p.reg) {
			if m.name == "sessionmon_audit_write_errors_total" {
				errs += m.value
			}
		}
		return errs >= 3
	})
	// Longer than AckWait: nothing acked, nothing redelivered, the backlog
	// is in the stream and in the lag metrics.
	time.Sleep(3 * p.cfg.AckWait)
	i := p.info(t)
	if i.AckFloor.Stream != 2000 || i.NumPending+uint64(i.NumAckPending) != 3000 || i.NumRedelivered != 0 {
		t.Fatalf("while down: ack floor %d, pending %d + %d, redelivered %d", i.AckFloor.Stream, i.NumPending, i.NumAckPending, i.NumRedelivered)
	}
	var lag float64
	for _, m := range gather(t, p.reg) {
		if m.name == "sessionmon_audit_consumer_pending" || m.name == "sessionmon_audit_consumer_ack_pending" {
			lag += m.value
		}
	}
	if lag != 3000 {
		t.Fatalf("lag metrics %v, want 3000", lag)
	}
	if n := countRows(t, p.ch, db, ""); n != 2000 {
		t.Fatalf("%d rows while down", n)
	}
	if err := p.store.Ping(ctxT(t)); err == nil {
		t.Fatal("ping through a cut proxy")
	}

	px.Restore()
	eventually(t, "the backlog drained", 60*time.Second, func() bool { return countRows(t, p.ch, db, "FINAL") == 5000 })
	eventually(t, "all acked", 30*time.Second, func() bool { i := p.info(t); return i.NumAckPending == 0 && i.NumPending == 0 })
	copies := checkExactlyOnce(t, p.ch, db, ids)
	t.Logf("rows written twice (collapsed by FINAL): %d", copies)
}

// TestWriterKilledMidBatch: a writer stops after ClickHouse stored a batch
// and before JetStream heard of it; the next writer gets the batch again,
// and every event is still one event to a query.
func TestWriterKilledMidBatch(t *testing.T) {
	p := newPipeline(t, testenv.ClickHouseAddr(), testenv.ClickHouse(t))
	db := p.store.Database()
	var batches atomic.Int32
	cfg := p.cfg
	cfg.FaultAfterWrite = func() error {
		if batches.Add(1) == 3 {
			return errors.New("killed between the insert and the ack")
		}
		return nil
	}
	stop := p.run(t, cfg)
	ids := p.publish(t, 3000)
	eventually(t, "the writer killed", 30*time.Second, func() bool { return batches.Load() >= 3 })
	if err := stop(); err == nil {
		t.Fatal("the writer did not stop")
	}
	before := countRows(t, p.ch, db, "")
	if i := p.info(t); before <= i.AckFloor.Consumer {
		t.Fatalf("%d rows stored, %d messages acked: the third batch was not stored unacked", before, i.AckFloor.Consumer)
	}
	// Restart: the unacked batch comes back after AckWait and is stored
	// again; new events flow meanwhile.
	p.run(t, p.cfg)
	ids = append(ids, p.publish(t, 1000)...)
	eventually(t, "all stored", 60*time.Second, func() bool { return countRows(t, p.ch, db, "FINAL") == 4000 })
	eventually(t, "all acked", 30*time.Second, func() bool { i := p.info(t); return i.NumAckPending == 0 && i.NumPending == 0 })
	// The redelivered batch is stored again: if it comes back whole, its
	// insert_deduplication_token drops it at insert; otherwise the copies
	// are rows that FINAL collapses. Either way, one event each.
	copies := checkExactlyOnce(t, p.ch, db, ids)
	t.Logf("rows before the restart %d; rows written twice (collapsed by FINAL): %d", before, copies)
}

// TestAlertsAndActionsPipeline: the ALERTS stream's alerts and actions
// land in their tables, a malformed one is dead-lettered.
func TestAlertsAndActionsPipeline(t *testing.T) {
	p := newPipeline(t, testenv.ClickHouseAddr(), testenv.ClickHouse(t))
	cfg := eventbus.AlertAuditConsumer("auditor")
	cfg.BatchInterval, cfg.AckWait = 100*time.Millisecond, 2*time.Second
	p.run(t, cfg)
	pub := eventbus.NewAlertPublisher(p.js, "detector")
	now := time.Now().UTC()
	alert := events.Alert{ID: events.AlertID("brute-force", "frank", "e1"), Time: now, Rule: "brute-force", RuleType: "brute_force", Severity: "medium",
		UserID: "frank", Action: "alert", Mode: "enforce", ActionResult: "none", Summary: "10 failed logins in 5m",
		Evidence: events.Evidence{Count: 10, Threshold: 10, WindowSeconds: 300}}
	if err := pub.PublishAlerts(ctxT(t), []events.Alert{alert}); err != nil {
		t.Fatal(err)
	}
	action := events.Action{ID: "act-1", Time: now, Kind: events.KindReview, Actor: "rita", Action: "acknowledge", AlertID: alert.ID, UserID: "frank", Result: events.ResultDone}
	if err := pub.PublishAction(ctxT(t), action); err != nil {
		t.Fatal(err)
	}
	if _, err := p.js.Publish(ctxT(t), "alerts.01.brute-force", []byte(`{"specversion":"1.0"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alert and action stored", 30*time.Second, func() bool {
		tl, err := p.store.UserTimeline(ctxT(t), "frank", time.Time{}, time.Time{}, 10)
		return err == nil && len(tl) == 2
	})
	var evidence, source string
	if err := p.store.conn.QueryRow(ctxT(t), "SELECT evidence, source FROM "+p.store.table(TableAlerts)).Scan(&evidence, &source); err != nil {
		t.Fatal(err)
	}
	if evidence != `{"events":null,"count":10,"threshold":10,"window_seconds":300}` || source != "detector" {
		t.Fatalf("evidence %s source %s", evidence, source)
	}
	eventually(t, "dead letter", 10*time.Second, func() bool {
		for _, m := range gather(t, p.reg) {
			if m.name == "sessionmon_audit_dead_letters_total" && m.labels["reason"] == "bad_id" && m.labels["stream"] == "ALERTS" {
				return m.value == 1
			}
		}
		return false
	})
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// gather reads the counters and gauges of a registry.
func gather(t *testing.T, reg *prometheus.Registry) []sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{name: mf.GetName(), labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.Counter.GetValue()
			case m.Gauge != nil:
				s.value = m.Gauge.GetValue()
			default:
				continue
			}
			out = append(out, s)
		}
	}
	return out
}
