package clickhouse

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// benchEvent is a typical access event of one of 50,000 users.
func benchEvent(i int, at time.Time) events.Event {
	u := i % 50000
	return events.Event{ID: events.NewID(), Type: events.SessionAccessed, Source: "sessionsvc", Time: at, Data: events.Data{
		SessionID: fmt.Sprintf("%02dS%021d", u%16, u), UserID: "user-" + strconv.Itoa(u), App: "shop",
		IP: fmt.Sprintf("198.51.%d.%d", u%200, u%250+1), UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
		Actor: "shop", Path: "/account/orders",
	}}
}

// BenchmarkInsert: session events into ClickHouse without NATS, in two
// steps: stage (decode and append to the columns, the writer's CPU) and
// write (send a staged batch; ClickHouse parses, sorts and stores it). Each
// write carries a new deduplication token, so ClickHouse stores every one.
//
//	go test -run XXX -bench BenchmarkInsert -benchtime 20x -count 5 ./clickhouse/
func BenchmarkInsert(b *testing.B) {
	s := testStore(b, 13)
	for _, size := range []int{10000, 100000} {
		batch := s.NewEventBatch(WriterOptions{})
		var data [][]byte
		for i := range size {
			d, _ := benchEvent(i, time.Now()).Encode()
			data = append(data, d)
		}
		stage := func() {
			batch.Reset()
			for _, d := range data {
				if err := batch.Add("sessions.01.session.accessed", d); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("stage/rows=%d", size), func(b *testing.B) {
			for b.Loop() {
				stage()
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run(fmt.Sprintf("write/rows=%d", size), func(b *testing.B) {
			stage()
			c0 := cpuTime()
			n := 0
			for b.Loop() {
				n++
				batch.tok.add(strconv.Itoa(n))
				if err := batch.Write(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(size*b.N), "writer-cpu-ns/row")
		})
	}
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// template is an encoded event whose ID and time are patched in place:
// the producer of the benchmark costs next to nothing.
type template struct {
	b        []byte
	id, time int // offsets
}

func newTemplate(i int) template {
	e := benchEvent(i, time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC))
	e.ID = "00000000000000000000000000000000"
	b, _ := e.Encode()
	return template{b: b, id: indexOf(b, `"id":"`) + 6, time: indexOf(b, `"time":"`) + 8}
}

func indexOf(b []byte, s string) int {
	for i := range b {
		if string(b[i:min(len(b), i+len(s))]) == s {
			return i
		}
	}
	panic(s)
}

// fill writes a new ID and the time into a copy of the template.
func (t template) fill(seq uint64, at time.Time) []byte {
	b := slices.Clone(t.b)
	id := fmt.Appendf(nil, "%032x", seq)
	copy(b[t.id:], id)
	copy(b[t.time:], at.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	return b
}

// BenchmarkPipeline measures the audit writer end to end on this machine:
// an in-process JetStream server (file storage), a producer publishing
// access events at AUDIT_BENCH_RATE events/s (default 200,000) for
// AUDIT_BENCH_SECONDS (default 20), the writer (one consumer, batches of
// 10,000 or 1 s) and the test ClickHouse. It reports what was sustained
// and the end-to-end lag of each event, from its time (set when it is
// published) to its insertion into ClickHouse (inserted_at), exact
// quantiles over every event. Run it with -benchtime 1x:
//
//	AUDIT_BENCH_RATE=200000 go test -run XXX -bench BenchmarkPipeline -benchtime 1x ./clickhouse/
func BenchmarkPipeline(b *testing.B) {
	rate := envInt("AUDIT_BENCH_RATE", 200000)
	seconds := envInt("AUDIT_BENCH_SECONDS", 20)
	p := newBenchPipeline(b)

	// The producer: bursts every 10 ms, async publishes with the event ID
	// as Nats-Msg-Id, like the session service's relay.
	var published, pubErrs atomic.Int64
	stopPub := make(chan struct{})
	var pubDone sync.WaitGroup
	pubDone.Go(func() {
		tpl := newTemplate(1)
		const tick = 10 * time.Millisecond
		per := rate / 100
		t := time.NewTicker(tick)
		defer t.Stop()
		start := time.Now()
		var seq uint64
		for {
			select {
			case <-stopPub:
				return
			case <-t.C:
			}
			// Catch up to the schedule if a tick was late.
			due := int(time.Since(start)/tick) * per
			for int(published.Load()) < due && !closed(stopPub) {
				seq++
				m := nats.NewMsg(fmt.Sprintf("sessions.%02d.session.accessed", seq%16))
				m.Data = tpl.fill(seq, time.Now())
				m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%032x", seq))
				if _, err := p.js.PublishMsgAsync(m); err != nil {
					pubErrs.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				published.Add(1)
			}
		}
	})

	stop := p.run(b)
	b.ResetTimer()
	c0, w0 := cpuTime(), time.Now()
	time.Sleep(time.Duration(seconds) * time.Second)
	close(stopPub)
	pubDone.Wait()
	elapsed := time.Since(w0)
	pubs := published.Load()
	// Let the writer finish what was published, then stop it.
	deadline := time.Now().Add(2 * time.Minute)
	for p.rows(b) < uint64(pubs) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	drained := time.Since(w0)
	cpu := cpuTime() - c0
	b.StopTimer()
	_ = stop()

	stored := p.rows(b)
	var p50, p99, p999, max float64
	err := p.store.conn.QueryRow(context.Background(), "SELECT quantileExact(0.5)(l), quantileExact(0.99)(l), quantileExact(0.999)(l), max(l) FROM (SELECT toFloat64(inserted_at - time) AS l FROM "+
		p.store.table(TableSessionEvents)+")").Scan(&p50, &p99, &p999, &max)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(pubs)/elapsed.Seconds(), "published/s")
	b.ReportMetric(float64(stored)/drained.Seconds(), "stored/s")
	b.ReportMetric(p50, "lag-p50-s")
	b.ReportMetric(p99, "lag-p99-s")
	b.ReportMetric(p999, "lag-p99.9-s")
	b.ReportMetric(max, "lag-max-s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(stored), "cpu-us/event")
	b.Logf("rate %d/s for %ds: published %d (%d publish stalls), stored %d in %.1fs (%.1fs after publishing stopped); lag p50 %.3fs p99 %.3fs p99.9 %.3fs max %.3fs; process CPU %.1fs (%.1f µs/event, NATS server, writer and producer together)",
		rate, seconds, pubs, pubErrs.Load(), stored, drained.Seconds(), (drained - elapsed).Seconds(), p50, p99, p999, max, cpu.Seconds(), float64(cpu.Microseconds())/float64(stored))
	if stored != uint64(pubs) {
		b.Errorf("stored %d of %d", stored, pubs)
	}
}

// BenchmarkDrain measures how fast the writer empties a stream that
// already holds AUDIT_BENCH_EVENTS events (default 1,000,000): the
// writer's capacity with nothing else running (no producer).
//
//	go test -run XXX -bench BenchmarkDrain -benchtime 1x ./clickhouse/
func BenchmarkDrain(b *testing.B) {
	n := envInt("AUDIT_BENCH_EVENTS", 1000000)
	p := newBenchPipeline(b)
	tpl := newTemplate(1)
	at := time.Now()
	for seq := 1; seq <= n; seq++ {
		m := nats.NewMsg(fmt.Sprintf("sessions.%02d.session.accessed", seq%16))
		m.Data = tpl.fill(uint64(seq), at)
		for {
			if _, err := p.js.PublishMsgAsync(m); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-p.js.PublishAsyncComplete()
	b.ResetTimer()
	c0, w0 := cpuTime(), time.Now()
	stop := p.run(b)
	for p.rows(b) < uint64(n) {
		time.Sleep(50 * time.Millisecond)
	}
	elapsed, cpu := time.Since(w0), cpuTime()-c0
	b.StopTimer()
	_ = stop()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "stored/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/event")
}

type benchPipeline struct {
	js    jetstream.JetStream // the producer's
	wjs   jetstream.JetStream // the writer's
	store *Store
	cfg   eventbus.AuditConsumerConfig
}

func newBenchPipeline(b *testing.B) *benchPipeline {
	b.Helper()
	srv := testenv.StartNATS(b, testenv.NATSOptions(b.TempDir()))
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		b.Fatal(err)
	}
	if err := eventbus.EnsureStreamsExist(context.Background(), js, eventbus.DefaultStreamOptions()); err != nil {
		b.Fatal(err)
	}
	// The writer's own connection, as in the auditor.
	wc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wc.Close)
	wjs, _ := jetstream.New(wc)
	s := testStore(b, 13)
	cfg := eventbus.SessionAuditConsumer("auditor")
	cfg.PendingInterval = time.Second
	return &benchPipeline{js: js, wjs: wjs, store: s, cfg: cfg}
}

// run starts the writer of the SESSIONS stream.
func (p *benchPipeline) run(b *testing.B) (stop func() error) {
	c, err := eventbus.NewAuditConsumer(p.wjs, p.cfg, func() eventbus.AuditBatch { return p.store.NewEventBatch(WriterOptions{}) },
		eventbus.NewAlertPublisher(p.wjs, "auditor").DeadLetter, eventbus.NewAuditMetrics(prometheus.NewRegistry()), nil)
	if err != nil {
		b.Fatal(err)
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
	b.Cleanup(func() { _ = stop() })
	return stop
}

// rows counts the stored events.
func (p *benchPipeline) rows(b *testing.B) uint64 {
	var n uint64
	if err := p.store.conn.QueryRow(context.Background(), "SELECT count() FROM "+p.store.table(TableSessionEvents)).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}
