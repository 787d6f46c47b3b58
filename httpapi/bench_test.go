package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// BenchmarkHTTPValidate measures POST /v1/sessions/validate end to end over
// loopback HTTP: the real handler and http.Server settings of sessionsvc
// over the Redis store, driven by a load generator in a child process (50
// keep-alive connections, one request in flight on each, as wrk does), so
// that getrusage of this process counts the service alone. It reports the
// service's CPU per validate (cpu-µs/op), Redis's (redis-cpu-µs/op) and the
// rate. The relay variant also runs the outbox relay to a nats-server
// child process, as sessionsvc does, so that cpu-µs/op includes relaying
// each access event to JetStream.
//
//	go test -run XXX -bench HTTPValidate -benchtime 100000x ./httpapi/
//
// BENCH_PIPELINES sets redisstore.Options.Pipelines (-1: none).
func BenchmarkHTTPValidate(b *testing.B) {
	b.Run("norelay", func(b *testing.B) { benchHTTPValidate(b, false) })
	b.Run("relay", func(b *testing.B) {
		if _, err := exec.LookPath("nats-server"); err != nil {
			b.Skip("nats-server not in PATH")
		}
		benchHTTPValidate(b, true)
	})
}

func benchHTTPValidate(b *testing.B, relay bool) {
	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		b.Fatal(err)
	}
	// As sessionsvc sets them up.
	opt.PoolSize, opt.Protocol = 128, 2
	rdb := redis.NewClient(opt)
	// Closed after the prefix's keys are deleted (cleanups run last first).
	b.Cleanup(func() { _ = rdb.Close() })
	prefix := testenv.Prefix(b, rdb)
	pipes, _ := strconv.Atoi(os.Getenv("BENCH_PIPELINES"))
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Pipelines: pipes})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := httpapi.Handler(httpapi.Config{Service: svc, Keys: keys(b), Metrics: httpapi.NewMetrics(nil), Log: log})
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(h, httpapi.MaxBody),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ctx := context.Background()
	toks := make([]string, 1000)
	for i := range toks {
		is, err := svc.Create(ctx, sessions.Caller{Name: "shop"}, sessions.CreateRequest{UserID: fmt.Sprintf("bench-%d", i), IP: "192.0.2.1", UserAgent: "loadtest"})
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = is.Token.Reveal()
	}
	dir := b.TempDir()
	tokFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokFile, []byte(strings.Join(toks, "\n")), 0o600); err != nil {
		b.Fatal(err)
	}

	natsCPU := func() float64 { return 0 }
	if relay {
		natsCPU = startRelay(b, st, opt, log, dir)
	}

	// Warm up, then measure.
	runLoadClient(b, ln.Addr().String(), tokFile, 5000)
	time.Sleep(100 * time.Millisecond)
	cpu0 := selfCPU()
	r0 := redisCPU(b, rdb)
	n0 := natsCPU()
	b.ResetTimer()
	start := time.Now()
	p50, p99 := runLoadClient(b, ln.Addr().String(), tokFile, b.N)
	elapsed := time.Since(start)
	if relay {
		// The relay's share: wait until it published everything.
		for deadline := time.Now().Add(20 * time.Second); outboxDepth(ctx, rdb, st) > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("the relay did not empty the outbox")
			}
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric((selfCPU()-cpu0)*1e6/n, "cpu-µs/op")
	b.ReportMetric((redisCPU(b, rdb)-r0)*1e6/n, "redis-cpu-µs/op")
	if relay {
		b.ReportMetric((natsCPU()-n0)*1e6/n, "nats-cpu-µs/op")
	}
	b.ReportMetric(n/elapsed.Seconds(), "req/s")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
}

func outboxDepth(ctx context.Context, rdb *redis.Client, st *redisstore.Store) int64 {
	var depth int64
	for p := range events.Partitions {
		depth += rdb.XLen(ctx, st.OutboxKey(p)).Val()
	}
	return depth
}

// startRelay runs the outbox relay to a nats-server child process, as
// sessionsvc does, and returns a function reading the CPU seconds of that
// process.
func startRelay(b *testing.B, st *redisstore.Store, opt *redis.Options, log *slog.Logger, dir string) func() float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "nats"))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var nc *nats.Conn
	for range 100 {
		if nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.ReconnectBufSize(-1)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := eventbus.EnsureSessionStream(context.Background(), pub.JetStream(), eventbus.DefaultStreamOptions()); err != nil {
		b.Fatal(err)
	}
	ropt := *opt
	ropt.PoolSize = events.Partitions + 4
	relayRDB := redis.NewClient(&ropt)
	b.Cleanup(func() { _ = relayRDB.Close() })
	m := redisstore.NewMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = redisstore.NewRelay(st, relayRDB, pub, log, m, redisstore.RelayConfig{}).Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })
	stat := fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid)
	return func() float64 {
		raw, err := os.ReadFile(stat)
		if err != nil {
			return 0
		}
		// utime and stime, fields 14 and 15, in clock ticks (100 a second
		// on Linux); the command name before them may hold spaces.
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		return (ut + st) / 100
	}
}

// runLoadClient sends n validates from a child process and fails b unless
// every answer is 200. It returns the median and 99th percentile latency
// in milliseconds.
func runLoadClient(b *testing.B, addr, tokFile string, n int) (p50, p99 float64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadClient$", "-test.v=false")
	cmd.Env = append(os.Environ(), "HTTPAPI_LOAD_ADDR="+addr, "HTTPAPI_LOAD_TOKENS="+tokFile,
		"HTTPAPI_LOAD_N="+strconv.Itoa(n), "HTTPAPI_LOAD_KEY="+shopSecret, "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "load-ok") {
		b.Fatalf("load client: %v\n%s", err, out)
	}
	if _, err := fmt.Sscanf(string(out[strings.Index(string(out), "load-ok"):]), "load-ok p50_ms %f p99_ms %f", &p50, &p99); err != nil {
		b.Fatalf("load client: %v\n%s", err, out)
	}
	return p50, p99
}

// TestLoadClient is the load generator of BenchmarkHTTPValidate, run in a
// child process; it does nothing in a normal test run.
func TestLoadClient(t *testing.T) {
	addr := os.Getenv("HTTPAPI_LOAD_ADDR")
	if addr == "" {
		t.Skip("the load generator of BenchmarkHTTPValidate")
	}
	raw, err := os.ReadFile(os.Getenv("HTTPAPI_LOAD_TOKENS"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("HTTPAPI_LOAD_N"))
	key := os.Getenv("HTTPAPI_LOAD_KEY")
	var reqs [][]byte
	for _, tok := range strings.Split(string(raw), "\n") {
		body := `{"token":"` + tok + `","ip":"198.51.100.7","user_agent":"loadtest","path":"/page"}`
		reqs = append(reqs, []byte("POST /v1/sessions/validate HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+key+
			"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body))
	}
	const conns = 50
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	lat := make([][]time.Duration, conns)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 8192)
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				start := time.Now()
				if _, err := c.Write(reqs[(i*7919)%int64(len(reqs))]); err != nil {
					errs <- err
					return
				}
				if err := readAnswer(br); err != nil {
					errs <- err
					return
				}
				lat[k] = append(lat[k], time.Since(start))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) float64 { return all[int(float64(len(all)-1)*p)].Seconds() * 1e3 }
	fmt.Printf("load-ok p50_ms %.3f p99_ms %.3f\n", q(0.5), q(0.99))
}

// readAnswer reads one HTTP response with a Content-Length body and fails
// unless its status is 200.
func readAnswer(br *bufio.Reader) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(status), "HTTP/1.1 200 ") {
		return fmt.Errorf("answer %q", status)
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return fmt.Errorf("answer without Content-Length")
	}
	_, err = br.Discard(length)
	return err
}

// selfCPU is the user and system CPU seconds of this process.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// redisCPU is Redis's user and system CPU seconds (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var cpu float64
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		}
	}
	return cpu
}
