package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
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
			cpu := cpuMeter{chPID: clickHousePID()}
			cpu.start()
			n := 0
			for b.Loop() {
				n++
				batch.tok.add(strconv.Itoa(n))
				if err := batch.Write(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "rows/s")
			// ClickHouse's CPU includes the merges of the parts inserted
			// so far, not those still to come.
			b.Logf("%s", cpu.report(b, uint64(size*b.N)))
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

// cpuTime is this process's CPU time (the writer, the producer, and the
// NATS server when it runs in process).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time of another process, from /proc (0 if pid is 0
// or gone).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ
}

// clickHousePID finds the local ClickHouse of CLICKHOUSE_ADDR (the chlaunch
// process of scripts/clickhouse.sh listening on its port), for its CPU
// time; 0 when there is none (a remote server).
func clickHousePID() int {
	_, port, _ := net.SplitHostPort(testenv.ClickHouseAddr())
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmd, []byte("chlaunch")) && bytes.Contains(cmd, []byte("\x00-tcp-port\x00"+port+"\x00")) {
			return pid
		}
	}
	return 0
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// cpuMeter measures the CPU of the benchmark's parts over a window: this
// process (writer and producer, and NATS when in process), the NATS server
// when it is a process of its own, ClickHouse when it is local.
type cpuMeter struct {
	natsPID, chPID int
	self, nats, ch time.Duration
	busy, total    time.Duration // the machine's, from /proc/stat
	wall           time.Time
}

func (m *cpuMeter) start() {
	m.self, m.nats, m.ch = cpuTime(), procCPU(m.natsPID), procCPU(m.chPID)
	m.busy, m.total = machineCPU()
	m.wall = time.Now()
}

// machineCPU is the CPU time of all the machine's cores: busy and in all.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * (time.Second / 100)
		total += d
		if i != 3 && i != 4 { // idle, iowait
			busy += d
		}
	}
	return busy, total
}

// report adds the CPU per event of each part as metrics and returns a
// description.
func (m *cpuMeter) report(b *testing.B, events uint64) string {
	self, nats, ch := cpuTime()-m.self, procCPU(m.natsPID)-m.nats, procCPU(m.chPID)-m.ch
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(max(events, 1)) }
	b.ReportMetric(per(self), "proc-cpu-us/event")
	s := fmt.Sprintf("CPU µs/event: this process %.2f", per(self))
	if m.natsPID != 0 {
		b.ReportMetric(per(nats), "nats-cpu-us/event")
		s += fmt.Sprintf(", NATS server %.2f", per(nats))
	} else {
		s += " (NATS server in process)"
	}
	if m.chPID != 0 {
		b.ReportMetric(per(ch), "ch-cpu-us/event")
		s += fmt.Sprintf(", ClickHouse %.2f", per(ch))
	}
	// What the machine did meanwhile, in cores: all of it, and the other
	// processes' share (the other engineers' tests, on a shared machine).
	busy, total := machineCPU()
	busy, total = busy-m.busy, total-m.total
	if wall := time.Since(m.wall).Seconds(); total > 0 && wall > 0 {
		cores := total.Seconds() / wall
		used := busy.Seconds() / wall
		others := max(0, (busy-self-nats-ch).Seconds()/wall)
		b.ReportMetric(others, "other-cores")
		s += fmt.Sprintf("; machine %.2f of %.0f cores busy, %.2f of them other processes'", used, cores, others)
	}
	return s
}

// profileWindow writes a CPU profile of the timed part alone to
// AUDIT_BENCH_CPUPROFILE when it is set; the writer's and the producer's
// goroutines carry the label role=writer or role=producer (go tool pprof
// -tags), the NATS server's none.
func profileWindow(b *testing.B) (stop func()) {
	path := os.Getenv("AUDIT_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

// heapInUse is the bytes of the heap's objects (runtime/metrics: no
// stop of the world).
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// labelled runs fn with the pprof label role; goroutines it starts (the
// NATS client's among them) inherit it.
func labelled(role string, fn func()) {
	pprof.Do(context.Background(), pprof.Labels("role", role), func(context.Context) { fn() })
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

// perMessage is how many events the benchmarks' producers put in one
// message: AUDIT_BENCH_EVENTS_PER_MESSAGE, default 32. The session
// service's publisher packs consecutive events of one subject into one
// message (eventbus.Publisher); how many depends on the load and on how
// often its relay steps (at most 62 a partition a step with the default
// relay batch of 1,000). 1 is one event a message, as before batching.
func perMessage() int {
	return min(max(envInt("AUDIT_BENCH_EVENTS_PER_MESSAGE", 32), 1), events.MaxBatchEvents)
}

// message is the k events from seq+1 on, all stamped at, as one message
// of partition seq/k%16 with its Nats-Msg-Id as the publisher sets it.
func (t template) message(seq uint64, k int, at time.Time) *nats.Msg {
	m := nats.NewMsg(fmt.Sprintf("sessions.%02d.session.accessed", (seq/uint64(k))%16))
	parts := make([][]byte, k)
	for i := range parts {
		parts[i] = t.fill(seq+1+uint64(i), at)
	}
	m.Data = events.JoinBatch(make([]byte, 0, k*(len(t.b)+1)+1), parts)
	id := fmt.Sprintf("%032x", seq+1)
	if k > 1 {
		id += "+" + strconv.Itoa(k)
	}
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

// BenchmarkPipeline measures the audit writer end to end on this machine:
// a JetStream server (file storage; in process, or AUDIT_BENCH_NATS_SERVER),
// a producer publishing access events at AUDIT_BENCH_RATE events/s (default
// 200,000) for AUDIT_BENCH_SECONDS (default 20) like the session service's
// relay (async, AUDIT_BENCH_EVENTS_PER_MESSAGE events a message: see
// perMessage), the writer (one consumer,
// batches of AUDIT_BENCH_BATCH, default the auditor's, or 1 s) and the
// ClickHouse of CLICKHOUSE_ADDR. It reports what was published and stored,
// and the end-to-end lag of each event, from its time (set when it is
// published) to its insertion into ClickHouse (inserted_at), exact
// quantiles over every event; and the CPU per event of each part. Run it
// with -benchtime 1x:
//
//	AUDIT_BENCH_RATE=200000 go test -run XXX -bench BenchmarkPipeline -benchtime 1x ./clickhouse/
func BenchmarkPipeline(b *testing.B) {
	rate := envInt("AUDIT_BENCH_RATE", 200000)
	seconds := envInt("AUDIT_BENCH_SECONDS", 20)
	p := newBenchPipeline(b)

	// The producer: bursts every 10 ms, async publishes of perMessage
	// events a message, like the session service's relay.
	var published, pubErrs atomic.Int64
	stopPub := make(chan struct{})
	var pubDone sync.WaitGroup
	labelled("producer", func() {
		pubDone.Go(func() {
			tpl := newTemplate(1)
			k := perMessage()
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
					m := tpl.message(seq, k, time.Now())
					if _, err := p.js.PublishMsgAsync(m); err != nil {
						pubErrs.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					seq += uint64(k)
					published.Add(int64(k))
				}
			}
		})
	})

	stop := p.run(b)
	b.ResetTimer()
	endProfile := profileWindow(b)
	p.cpu.start()
	w0 := time.Now()
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
	stored := p.rows(b)
	cpu := p.cpu.report(b, stored)
	endProfile()
	b.StopTimer()
	_ = stop()

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
	b.Logf("rate %d/s for %ds, %d events a message, batches of %d: published %d (%d publish stalls), stored %d in %.1fs (%.1fs after publishing stopped); lag p50 %.3fs p99 %.3fs p99.9 %.3fs max %.3fs; %s",
		rate, seconds, perMessage(), p.cfg.BatchSize, pubs, pubErrs.Load(), stored, drained.Seconds(), (drained - elapsed).Seconds(), p50, p99, p999, max, cpu)
	if stored != uint64(pubs) {
		b.Errorf("stored %d of %d", stored, pubs)
	}
}

// BenchmarkDrain measures how fast the writer empties a stream that
// already holds AUDIT_BENCH_EVENTS events (default 1,000,000): the
// writer's capacity with nothing else running (no producer).
//
//	AUDIT_BENCH_EVENTS=500000 go test -run XXX -bench BenchmarkDrain -benchtime 1x ./clickhouse/
func BenchmarkDrain(b *testing.B) {
	n := envInt("AUDIT_BENCH_EVENTS", 1000000)
	p := newBenchPipeline(b)
	tpl := newTemplate(1)
	at := time.Now()
	k := perMessage()
	n -= n % k
	for seq := 0; seq < n; seq += k {
		m := tpl.message(uint64(seq), k, at)
		for {
			if _, err := p.js.PublishMsgAsync(m); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-p.js.PublishAsyncComplete()
	b.ResetTimer()
	endProfile := profileWindow(b)
	p.cpu.start()
	w0 := time.Now()
	stop := p.run(b)
	var peak uint64 // heap in use, sampled
	for p.rows(b) < uint64(n) {
		time.Sleep(50 * time.Millisecond)
		peak = max(peak, heapInUse())
	}
	elapsed := time.Since(w0)
	cpu := p.cpu.report(b, uint64(n))
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	endProfile()
	b.StopTimer()
	_ = stop()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "stored/s")
	b.Logf("%d events, %d a message, in batches of %d: %.0f stored/s; %s; peak heap %.0f MiB", n, k, p.cfg.BatchSize, float64(n)/elapsed.Seconds(), cpu, float64(peak)/(1<<20))
}

type benchPipeline struct {
	js    jetstream.JetStream // the producer's
	wjs   jetstream.JetStream // the writer's
	store *Store
	cfg   eventbus.AuditConsumerConfig
	cpu   cpuMeter
}

// benchNATS starts the benchmark's JetStream server and returns its URL
// and its process ID (0 in process). With AUDIT_BENCH_NATS_SERVER, the
// path of a nats-server binary of the module's version (go build -o
// /tmp/nats-server github.com/nats-io/nats-server/v2), it runs as a process
// of its own, as in production, and its CPU is measured exactly; by default
// it runs in this process.
func benchNATS(b *testing.B) (string, int) {
	bin := os.Getenv("AUDIT_BENCH_NATS_SERVER")
	if bin == "" {
		return testenv.StartNATS(b, testenv.NATSOptions(b.TempDir())).ClientURL(), 0
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", b.TempDir())
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if nc, err := nats.Connect(url); err == nil {
			nc.Close()
			return url, cmd.Process.Pid
		} else if time.Now().After(deadline) {
			b.Fatalf("nats-server %s: %v", bin, err)
		}
	}
}

func newBenchPipeline(b *testing.B) *benchPipeline {
	b.Helper()
	url, natsPID := benchNATS(b)
	var nc, wc *nats.Conn
	var err error
	labelled("producer", func() { nc, err = nats.Connect(url) })
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
	labelled("writer", func() { wc, err = nats.Connect(url) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wc.Close)
	wjs, _ := jetstream.New(wc)
	s := testStore(b, 13)
	cfg := eventbus.SessionAuditConsumer("auditor")
	cfg.PendingInterval = time.Second
	cfg.BatchSize = envInt("AUDIT_BENCH_BATCH", cfg.BatchSize)
	return &benchPipeline{js: js, wjs: wjs, store: s, cfg: cfg, cpu: cpuMeter{natsPID: natsPID, chPID: clickHousePID()}}
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
	labelled("writer", func() { go func() { done <- c.Run(ctx) }() })
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

// BenchmarkJetStream measures what JetStream alone costs on this machine,
// the floor under the audit pipeline, with no decoding and no ClickHouse:
// publishing AUDIT_BENCH_EVENTS access events (default 300,000) as the
// session service's relay does (async, AUDIT_BENCH_EVENTS_PER_MESSAGE a
// message), then
// consuming them as the writer does (a durable pull consumer, 10,000 at a
// time, MaxAckPending 20,000) with its explicit acks, and, for comparison,
// with AckAll (one ack each 10,000, which the writer cannot use: it would
// acknowledge messages delivered to a writer that died before storing
// them). Run it with the NATS server as a process of its own to split the
// CPU:
//
//	AUDIT_BENCH_NATS_SERVER=/tmp/nats-server go test -run XXX -bench BenchmarkJetStream -benchtime 1x ./clickhouse/
func BenchmarkJetStream(b *testing.B) {
	for _, ack := range []string{"explicit", "all"} {
		b.Run("ack="+ack, func(b *testing.B) {
			n := envInt("AUDIT_BENCH_EVENTS", 300000)
			const pull = 10000
			url, pid := benchNATS(b)
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
			ctx := context.Background()
			if err := eventbus.EnsureStreamsExist(ctx, js, eventbus.DefaultStreamOptions()); err != nil {
				b.Fatal(err)
			}
			tpl := newTemplate(1)
			at := time.Now()
			k := perMessage()
			n -= n % k
			msgs := n / k
			pm := cpuMeter{natsPID: pid}
			pm.start()
			w0 := time.Now()
			for seq := 0; seq < n; seq += k {
				m := tpl.message(uint64(seq), k, at)
				for {
					if _, err := js.PublishMsgAsync(m); err == nil {
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
			<-js.PublishAsyncComplete()
			b.Logf("publish: %.0f events/s; %s", float64(n)/time.Since(w0).Seconds(), pm.report(b, uint64(n)))

			wc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(wc.Close)
			wjs, _ := jetstream.New(wc)
			cfg := eventbus.SessionAuditConsumer("bench")
			cfg.BatchSize = pull
			cc := cfg.ConsumerConfig()
			if ack == "all" {
				cc.AckPolicy = jetstream.AckAllPolicy
			}
			cons, err := wjs.CreateOrUpdateConsumer(ctx, events.StreamName, cc)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cm := cpuMeter{natsPID: pid}
			cm.start()
			w0 = time.Now()
			it, err := cons.Messages(jetstream.PullMaxMessages(pull))
			if err != nil {
				b.Fatal(err)
			}
			defer it.Stop()
			held := make([]jetstream.Msg, 0, pull)
			for i := range msgs {
				m, err := it.Next()
				if err != nil {
					b.Fatal(err)
				}
				held = append(held, m)
				if len(held) == pull || i == msgs-1 {
					if ack == "all" {
						_ = held[len(held)-1].Ack()
					} else {
						for _, m := range held {
							_ = m.Ack()
						}
					}
					clear(held)
					held = held[:0]
				}
			}
			if err := wc.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/time.Since(w0).Seconds(), "consumed/s")
			b.Logf("consume, ack %s, %d events a message: %.0f events/s; %s", ack, k, float64(n)/time.Since(w0).Seconds(), cm.report(b, uint64(n)))
		})
	}
}
