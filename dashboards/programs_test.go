package dashboards

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sessionmon/sessionmon/app/alertersvc"
	"github.com/sessionmon/sessionmon/app/detectorsvc"
	"github.com/sessionmon/sessionmon/app/sessionsvc"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// addrLogged waits for the JSON log line with message msg and returns its
// addr attribute: where a program listens when told 127.0.0.1:0.
func addrLogged(t *testing.T, name string, log *testenv.LogBuffer, msg string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(log.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg && line.Addr != "" {
				return line.Addr
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not log %q:\n%s", name, msg, log.String())
	return ""
}

// scrape waits until addr's /readyz answers 200, then reads /metrics.
func scrape(t *testing.T, name, addr string, log *testenv.LogBuffer) gathered {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not ready (%v):\n%s", name, err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: /metrics: %v", name, err)
	}
	out := gathered{}
	for _, mf := range mfs {
		out.add(mf)
	}
	return out
}

// compareWithCatalog checks that a program serves what the catalog says
// its service exports: every family it serves is in the catalog with its
// type and labels, and every family the catalog's service exports from
// the start (not a vector waiting for its first child) is served.
func compareWithCatalog(t *testing.T, name string, served gathered) {
	t.Helper()
	i := slices.IndexFunc(services, func(s service) bool { return s.name == name })
	if i < 0 {
		t.Fatalf("no service %s in the catalog", name)
	}
	fresh, all := serviceMetrics(t, services[i])
	for fam, f := range served {
		want, ok := all[fam]
		switch {
		case !ok:
			t.Errorf("%s serves %s, which the catalog's %s lacks: add what registers it to the catalog", name, fam, name)
		case want.typ != f.typ:
			t.Errorf("%s serves %s as a %s, the catalog has a %s", name, fam, f.typ, want.typ)
		case want.typ != dto.MetricType_UNTYPED && !slices.Equal(want.labels, f.labels):
			t.Errorf("%s serves %s with labels %v, the catalog has %v", name, fam, f.labels, want.labels)
		}
	}
	for fam := range fresh {
		if _, ok := served[fam]; !ok {
			t.Errorf("the catalog's %s exports %s from the start, the program does not serve it", name, fam)
		}
	}
	t.Logf("%s serves %d families (the catalog: %d, %d of them from the start)", name, len(served), len(all), len(fresh))
}

// TestCatalogMatchesPrograms starts the real programs (the session service
// with each store, the detector and the alerter in-process, the audit
// writer as its binary) over real Redis, ClickHouse and an in-process
// JetStream, and compares what their /metrics serve with the catalog the
// dashboards are checked against.
func TestCatalogMatchesPrograms(t *testing.T) {
	_, nc := testenv.NATS(t)
	natsURL := nc.ConnectedUrl()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	goRun := func(name string, log *testenv.LogBuffer, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v\n%s", name, err, log.String())
			}
		}()
	}

	const adminKey = "dashboards-admin-secret-0123456789"
	rdb := testenv.Redis(t)
	var sessionsURL string
	for _, store := range []string{"redis", "memory"} {
		name := "sessionsvc"
		if store == "memory" {
			name = "sessionsvc-memory"
		}
		env := map[string]string{"REDIS_URL": testenv.RedisURL(), "NATS_URL": natsURL, "SESSIONSVC_API_KEYS": "ops:admin:" + adminKey}
		log := &testenv.LogBuffer{}
		addr := make(chan string, 1)
		goRun(name, log, func() error {
			return sessionsvc.Run(ctx, []string{"-listen", "127.0.0.1:0", "-store", store, "-redis-key-prefix", testenv.Prefix(t, rdb), "-log-level", "warn"},
				func(k string) string { return env[k] }, log, func(a string) { addr <- a })
		})
		var a string
		select {
		case a = <-addr:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start:\n%s", name, log.String())
		}
		if store == "redis" {
			sessionsURL = "http://" + a
		}
		compareWithCatalog(t, name, scrape(t, name, a, log))
	}

	// The detector, enforcing through the session service.
	{
		env := map[string]string{"NATS_URL": natsURL, "SESSIONSVC_URL": sessionsURL, "SESSIONSVC_API_KEY": adminKey}
		log := &testenv.LogBuffer{}
		goRun("detector", log, func() error {
			return detectorsvc.Run(ctx, []string{"run", "-listen", "127.0.0.1:0", "-warmup", "1s"},
				func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, log)
		})
		a := addrLogged(t, "detector", log, "detector started")
		compareWithCatalog(t, "detector", scrape(t, "detector", a, log))
	}

	// The alerter, with one reviewer.
	{
		hash, err := console.HashPassword("a passphrase for the dashboards test", console.Argon2Params{Memory: 64, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "alerter.yaml")
		if err := os.WriteFile(cfg, []byte("reviewers:\n  - name: rita\n    password_hash: "+hash+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"NATS_URL": natsURL, "SESSIONSVC_URL": sessionsURL, "ALERTER_SESSIONSVC_API_KEY": adminKey, "ALERTER_CONFIG": cfg}
		log := &testenv.LogBuffer{}
		goRun("alerter", log, func() error {
			return alertersvc.Run(ctx, []string{"-listen", "127.0.0.1:0", "-clickhouse-url", "off"},
				func(k string) string { return env[k] }, io.Discard, log)
		})
		a := addrLogged(t, "alerter", log, "alerter listening")
		compareWithCatalog(t, "alerter", scrape(t, "alerter", a, log))
	}

	// The audit writer is a main package (cmd/auditor): its binary.
	{
		bin := filepath.Join(t.TempDir(), "auditor")
		build := exec.Command("go", "build", "-o", bin, "github.com/sessionmon/sessionmon/cmd/auditor")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build cmd/auditor: %v\n%s", err, out)
		}
		conn := testenv.ClickHouse(t)
		db := testenv.ClickHouseDatabase(t, conn)
		log := &testenv.LogBuffer{}
		cmd := exec.Command(bin, "serve", "-listen", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "CLICKHOUSE_URL=clickhouse://"+testenv.ClickHouseAddr()+"/"+db)
		cmd.Stdout, cmd.Stderr = io.Discard, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
		a := addrLogged(t, "auditor", log, "auditor started")
		compareWithCatalog(t, "auditor", scrape(t, "auditor", a, log))
	}
}
