package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// BenchmarkValidate measures one validation through the service and the
// Redis access function (store round trip, idle slide, outbox entry), with
// concurrent callers as under load. Besides wall time it reports the CPU
// this process spent per validation (getrusage) and the CPU Redis spent
// (INFO cpu), which vary far less than wall time on a shared machine.
func BenchmarkValidate(b *testing.B) {
	rdb := testenv.Redis(b)
	pipes, _ := strconv.Atoi(os.Getenv("BENCH_PIPELINES")) // redisstore.Options.Pipelines
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: testenv.Prefix(b, rdb), Pipelines: pipes})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.Policy{
		IdleTimeout: sessions.DefaultPolicy().IdleTimeout, AbsoluteTimeout: sessions.DefaultPolicy().AbsoluteTimeout,
		LimitMode: sessions.LimitEvictOldest, CookieName: "__Host-sid",
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	app := sessions.Caller{Name: "shop"}
	toks := make([]sessions.Token, 1000)
	for i := range toks {
		is, err := svc.Create(ctx, app, sessions.CreateRequest{UserID: fmt.Sprintf("bench-%d", i), IP: "192.0.2.1"})
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = is.Token
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu := startCPU(b, rdb)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := svc.Validate(ctx, app, sessions.AccessRequest{Token: toks[i%len(toks)], IP: "192.0.2.1", UserAgent: "bench", Path: "/p"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu.report(b)
}

// cpuMeter measures the CPU of this process and of Redis over a benchmark.
type cpuMeter struct {
	rdb        *redis.Client
	self, rcpu float64
	fcalls     int64
	fcallUsec  int64
}

func startCPU(b *testing.B, rdb *redis.Client) *cpuMeter {
	m := &cpuMeter{rdb: rdb}
	m.self = selfCPU()
	m.rcpu, m.fcalls, m.fcallUsec = redisCPU(b, rdb)
	return m
}

func (m *cpuMeter) report(b *testing.B) {
	self := selfCPU()
	rcpu, fcalls, fusec := redisCPU(b, m.rdb)
	n := float64(b.N)
	b.ReportMetric((self-m.self)*1e6/n, "cpu-µs/op")
	b.ReportMetric((rcpu-m.rcpu)*1e6/n, "redis-cpu-µs/op")
	if c := fcalls - m.fcalls; c > 0 {
		b.ReportMetric(float64(fusec-m.fcallUsec)/float64(c), "fcall-µs")
	}
}

// selfCPU is the user and system CPU seconds of this process.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// redisCPU is Redis's user and system CPU seconds (INFO cpu), and its FCALL
// calls and microseconds (INFO commandstats).
func redisCPU(b *testing.B, rdb *redis.Client) (cpu float64, calls, usec int64) {
	info, err := rdb.Info(context.Background(), "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		case "cmdstat_fcall":
			for _, kv := range strings.Split(v, ",") {
				name, val, _ := strings.Cut(kv, "=")
				switch name {
				case "calls":
					calls, _ = strconv.ParseInt(val, 10, 64)
				case "usec":
					usec, _ = strconv.ParseInt(val, 10, 64)
				}
			}
		}
	}
	return cpu, calls, usec
}
