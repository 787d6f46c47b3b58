// Package standalone runs the whole sessionmon pipeline in one process
// (cmd/sessionmon): an embedded NATS server with JetStream on disk, the
// session service over an in-memory store, the detector, the audit writer
// (into files, or ClickHouse when CLICKHOUSE_URL is set), the alerter with
// its review console, GeoIP databases built from the project's own CSV,
// and, unless told otherwise, simulated users and attacks driven through
// the session service's HTTP API. Each service is the same program that
// runs on its own (app/sessionsvc, app/detectorsvc, app/auditsvc,
// app/alertersvc), talking to the others over NATS and HTTP as in a
// deployment.
package standalone

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sync/errgroup"

	"github.com/sessionmon/sessionmon/app/alertersvc"
	"github.com/sessionmon/sessionmon/app/auditsvc"
	"github.com/sessionmon/sessionmon/app/detectorsvc"
	"github.com/sessionmon/sessionmon/app/sessionsvc"
	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/auditfile"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geodb"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/simulate"
)

// Started is what a started pipeline tells its caller.
type Started struct {
	ConsoleURL    string
	SessionsvcURL string
	NATSURL       string
	Reviewer      string
	Password      string
	// AppKey is an app API key of the session service; AdminKey an admin
	// one. Both are made anew at each start.
	AppKey, AdminKey string
	DataDir          string
	// Audit is the file audit log, nil when writing to ClickHouse.
	Audit *auditfile.Store
	// Simulator is nil without -simulate.
	Simulator *simulate.Simulator
}

// Run runs the pipeline until ctx ends. It prints the console's address and
// the demo reviewer's credentials to stdout; started, when set, is told
// the same once everything listens.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, started func(Started)) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := cli.Logger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	log = log.With("service", "sessionmon")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("SESSIONMON_DATA_DIR: %w", err)
	}
	st := Started{DataDir: cfg.DataDir, Reviewer: cfg.Reviewer}

	// GeoIP: the operator's databases, or the demo ones built from the
	// project's CSV of networks (made-up places in documentation ranges).
	env := &environ{m: map[string]string{}, next: getenv}
	if getenv("GEOIP_CITY_DB") == "" {
		p, err := geodb.BuildDemo(filepath.Join(cfg.DataDir, "geoip"))
		if err != nil {
			return err
		}
		env.set("GEOIP_CITY_DB", p.City, "GEOIP_ASN_DB", p.ASN, "GEOIP_ANONYMOUS_DB", p.Anonymous)
	}

	ns, err := startNATS(cfg, log)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	st.NATSURL = ns.ClientURL()

	// Keys and the reviewer's password: new at each start, never written
	// to a log.
	st.AdminKey, st.AppKey = secret(), secret()
	alerterKey := secret()
	st.Password = secret()[:20]
	hash, err := console.HashPassword(st.Password, console.DefaultArgon2)
	if err != nil {
		return err
	}
	alerterConfig := filepath.Join(cfg.DataDir, "alerter.yaml")
	conf := fmt.Sprintf("# written by sessionmon at each start\nreviewers:\n  - name: %s\n    role: responder\n    password_hash: %q\n", cfg.Reviewer, hash)
	if err := os.WriteFile(alerterConfig, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("SESSIONMON_DATA_DIR: %w", err)
	}

	clickhouseURL := cfg.ClickHouseURL
	if clickhouseURL == "" {
		clickhouseURL = alertersvc.ClickHouseOff
	}
	env.set(
		"NATS_URL", st.NATSURL,
		"LOG_LEVEL", cfg.LogLevel, "LOG_FORMAT", cfg.LogFormat,
		"SESSIONSVC_STORE", "memory",
		"SESSIONSVC_LISTEN", cfg.SessionsvcAddr,
		"SESSIONSVC_API_KEYS", "detector:admin:"+st.AdminKey+",alerter:admin:"+alerterKey+",demo-app:app:"+st.AppKey,
		"SESSIONSVC_API_KEYS_FILE", "",
		"SESSIONSVC_IDLE_TIMEOUT", cfg.IdleTimeout.String(),
		"SESSIONSVC_ABSOLUTE_TIMEOUT", cfg.AbsoluteTimeout.String(),
		"DETECTOR_LISTEN", cfg.DetectorAddr,
		"DETECTOR_GROUP", "0", "DETECTOR_GROUPS", "1",
		"SESSIONSVC_API_KEY", st.AdminKey,
		"AUDITOR_LISTEN", cfg.AuditorAddr,
		"ALERTER_LISTEN", cfg.ConsoleAddr,
		"ALERTER_CONFIG", alerterConfig,
		"ALERTER_SESSIONSVC_API_KEY", alerterKey,
		"CLICKHOUSE_URL", clickhouseURL,
	)
	penv := env.get

	g, gctx := errgroup.WithContext(ctx)
	// The session service first: the others need its address.
	ready := make(chan string, 1)
	g.Go(func() error {
		return named("sessionsvc", sessionsvc.Run(gctx, nil, penv, stderr, func(addr string) { ready <- addr }))
	})
	select {
	case addr := <-ready:
		st.SessionsvcURL = "http://" + addr
	case <-gctx.Done():
		return g.Wait()
	}
	env.set("SESSIONSVC_URL", st.SessionsvcURL)

	g.Go(func() error {
		return named("detector", detectorsvc.Run(gctx, []string{"run"}, penv, nil, stdout, stderr))
	})

	var audArgs []string
	if cfg.ClickHouseURL == "" {
		// The file sink replaces ClickHouse: its URL is not opened.
		// Places of addresses come from the store's own IP policy.
		audArgs = []string{"-clickhouse-url", clickhouse.DefaultURL, "-geoip-city", ""}
	}
	audCfg, err := auditsvc.ParseServeConfig(audArgs, penv, stderr)
	if err != nil {
		return err
	}
	var audOpts auditsvc.Options
	if cfg.ClickHouseURL == "" {
		store, closeStore, err := openAuditFiles(cfg, penv)
		if err != nil {
			return err
		}
		defer closeStore()
		st.Audit = store
		audOpts.Sink = fileSink{store}
	}
	g.Go(func() error { return named("auditor", auditsvc.Serve(gctx, audCfg, stderr, audOpts)) })

	alCfg, err := alertersvc.ParseConfig(nil, penv, stderr)
	if err != nil {
		return err
	}
	consoleAddr := make(chan string, 1)
	alOpts := alertersvc.Options{Listening: func(addr string) { consoleAddr <- addr }}
	if st.Audit != nil {
		alOpts.Timeline = st.Audit
	}
	g.Go(func() error { return named("alerter", alertersvc.Serve(gctx, alCfg, stderr, alOpts)) })
	select {
	case addr := <-consoleAddr:
		st.ConsoleURL = "http://" + addr
	case <-gctx.Done():
		return g.Wait()
	}

	// The banner waits until the console can sign the reviewer in.
	if err := waitReady(gctx, st.ConsoleURL+"/readyz", 2*time.Minute); err != nil {
		if gctx.Err() != nil {
			return g.Wait()
		}
		log.Warn("the console is not ready yet; it may answer 503 for a while", "err", err)
	}
	if cfg.Simulate {
		// What the simulated attackers do is the demo's story: told at
		// info level whatever the services' level.
		simLog := log
		if l, err := cli.Logger(stderr, "info", cfg.LogFormat); err == nil && cfg.LogLevel != "debug" {
			simLog = l
		}
		app, err := client.New(st.SessionsvcURL, st.AppKey)
		if err != nil {
			return err
		}
		sim, err := simulate.New(simulate.Config{Client: app, Users: cfg.Users, Rate: float64(cfg.Rate),
			AttackEvery: cfg.AttackEvery, Log: simLog})
		if err != nil {
			return err
		}
		st.Simulator = sim
		g.Go(func() error { return named("simulate", sim.Run(gctx)) })
	}
	printBanner(stdout, cfg, st)
	if started != nil {
		started(st)
	}
	return g.Wait()
}

// startNATS starts the embedded NATS server with JetStream storing in the
// data directory.
func startNATS(cfg *Config, log *slog.Logger) (*server.Server, error) {
	host, port, _ := net.SplitHostPort(cfg.NATSListen) // checked by ParseConfig
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("SESSIONMON_NATS_LISTEN: bad port %q", port)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "sessionmon", Host: host, Port: p, JetStream: true,
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS did not start within 30s")
	}
	log.Info("embedded NATS with JetStream", "url", ns.ClientURL(), "store", filepath.Join(cfg.DataDir, "jetstream"))
	return ns, nil
}

// openAuditFiles opens the file audit log, with the places of addresses
// from the GeoIP database.
func openAuditFiles(cfg *Config, getenv func(string) string) (*auditfile.Store, func(), error) {
	var res geo.Resolver
	closeGeo := func() {}
	if city := getenv("GEOIP_CITY_DB"); city != "" {
		m, err := geo.Open(geo.Config{CityDB: city})
		if err != nil {
			return nil, nil, fmt.Errorf("GEOIP_CITY_DB: %w", err)
		}
		res, closeGeo = m, func() { _ = m.Close() }
	}
	ip, err := audit.NewIPPolicy(nil, res)
	if err != nil {
		closeGeo()
		return nil, nil, err
	}
	store, err := auditfile.Open(filepath.Join(cfg.DataDir, "audit"), auditfile.Options{IP: ip})
	if err != nil {
		closeGeo()
		return nil, nil, err
	}
	return store, func() { _ = store.Close(); closeGeo() }, nil
}

// fileSink is the file audit log as the audit writer's sink.
type fileSink struct{ *auditfile.Store }

func (s fileSink) NewEventBatch() eventbus.AuditBatch { return s.Store.NewEventBatch() }
func (s fileSink) NewAlertBatch() eventbus.AuditBatch { return s.Store.NewAlertBatch() }
func (s fileSink) Prepare(ctx context.Context) error  { return s.Ping(ctx) }

// environ is the services' environment: the pipeline's settings over the
// process's. It is read by the services' goroutines.
type environ struct {
	mu   sync.RWMutex
	m    map[string]string
	next func(string) string
}

// set sets pairs of name and value.
func (e *environ) set(kv ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 0; i+1 < len(kv); i += 2 {
		e.m[kv[i]] = kv[i+1]
	}
}

func (e *environ) get(k string) string {
	e.mu.RLock()
	v, ok := e.m[k]
	e.mu.RUnlock()
	if ok {
		return v
	}
	return e.next(k)
}

// secret is 32 random bytes, base64url.
func secret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// waitReady polls a readiness endpoint until it answers 200.
func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// named prefixes a service's error with its name.
func named(service string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", service, err)
}

func printBanner(w io.Writer, cfg *Config, st Started) {
	audit := "files in " + filepath.Join(cfg.DataDir, "audit")
	if cfg.ClickHouseURL != "" {
		audit = "ClickHouse"
	}
	sim := "off (-simulate=false): send your own traffic to the session service"
	if cfg.Simulate {
		sim = fmt.Sprintf("%d users, %d actions/s, attacks every %s", cfg.Users, cfg.Rate, cfg.AttackEvery)
	}
	fmt.Fprintf(w, `
sessionmon is running: the whole pipeline in one process.

  Review console   %s
    reviewer       %s
    password       %s   (new at each start)

  Session service  %s   (app API key: %s)
  NATS JetStream   %s
  Audit log        %s
  Simulation       %s
  Metrics          %s/metrics, http://%s/metrics, http://%s/metrics, %s/metrics
                   (sessions, detector, audit writer, alerter)

Alerts and revoked sessions show in the console within a minute. Ctrl-C stops; the data directory (%s) keeps the streams, incidents and audit log.
`, st.ConsoleURL, st.Reviewer, st.Password, st.SessionsvcURL, st.AppKey, st.NATSURL, audit, sim,
		st.SessionsvcURL, cfg.DetectorAddr, cfg.AuditorAddr, st.ConsoleURL, cfg.DataDir)
}
