// Package alertersvc is the alerter program (cmd/alerter): it consumes the
// detector's alerts from JetStream, groups them into incidents kept in a
// JetStream key-value bucket, notifies by severity (signed webhooks, Slack),
// and serves the review console, /metrics, /healthz and /readyz.
package alertersvc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/buildinfo"
	"github.com/sessionmon/sessionmon/internal/cli"
)

// Run runs the alerter until ctx ends, then stops consuming, drains the
// console's requests and stops deliveries in progress (resumed at the
// next start).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, cli.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr, hooks{})
}

// Options let a caller embed the alerter.
type Options struct {
	// Timeline replaces ClickHouse as the source of users' timelines in
	// the console (CLICKHOUSE_URL is then not opened).
	Timeline audit.Timeline
	// Listening, when set, is told the console's address.
	Listening func(addr string)
}

// Serve runs the alerter of a parsed configuration until ctx ends.
func Serve(ctx context.Context, cfg *Config, stderr io.Writer, o Options) error {
	return serve(ctx, cfg, stderr, hooks{listening: o.Listening, timeline: o.Timeline})
}

// hooks let tests and embedders drive a running alerter.
type hooks struct {
	listening func(addr string)
	timeline  audit.Timeline
}

// HashPassword is `alerter hash-password`: it reads a password (the first
// line of stdin) and prints its argon2id hash for the configuration file.
func HashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.New("alerter hash-password", func(string) string { return "" }, stderr)
	p := console.DefaultArgon2
	var mem, passes, lanes int
	fs.Int(&mem, "memory", "", int(p.Memory), "argon2id memory in KiB")
	fs.Int(&passes, "time", "", int(p.Time), "argon2id passes")
	fs.Int(&lanes, "threads", "", int(p.Threads), "argon2id lanes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if mem < 8*lanes || mem > 1<<20 || passes < 1 || passes > 20 || lanes < 1 || lanes > 255 {
		return errors.New("hash-password: parameters out of range (memory 8·threads to 1048576 KiB, time 1 to 20, threads 1 to 255)")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 12 {
		return errors.New("hash-password: give a password of at least 12 characters on standard input")
	}
	h, err := console.HashPassword(pw, console.Argon2Params{Memory: uint32(mem), Time: uint32(passes), Threads: uint8(lanes)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, h)
	return err
}

func serve(ctx context.Context, cfg *Config, stderr io.Writer, hk hooks) error {
	log, err := cli.Logger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	log = log.With("service", "alerter")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg)
	am := alerter.NewMetrics(reg)
	cm := console.NewMetrics(reg)

	sessions, err := client.New(cfg.SessionsvcURL, cfg.SessionsvcKey)
	if err != nil {
		return fmt.Errorf("SESSIONSVC_URL: %w", err)
	}
	timeline := hk.timeline
	var chStore *clickhouse.Store
	switch {
	case timeline != nil:
	case cfg.ClickHouseURL != "" && cfg.ClickHouseURL != ClickHouseOff:
		chStore, err = clickhouse.Open(clickhouse.Config{URL: cfg.ClickHouseURL, Log: log})
		if err != nil {
			return fmt.Errorf("CLICKHOUSE_URL: %w", err)
		}
		defer chStore.Close()
		timeline = chStore
	default:
		log.Warn("no audit log (CLICKHOUSE_URL=off): the console shows no user timelines")
	}

	// NATS may be down at start: the process serves /healthz at once and
	// is ready once it has its streams, bucket and consumer.
	nc, err := eventbus.Connect(cfg.NATS, "alerter", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	lag := eventbus.NewLagCollector(js)
	reg.MustRegister(lag)

	var (
		started atomic.Bool
		svc     *alerter.Service
		handler atomic.Pointer[http.Handler]
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{"nats": nc.Status().String(), "incidents": "loading", "sessionsvc": "ok"}
		ready := started.Load() && nc.IsConnected() && svc.Ready()
		if started.Load() && svc.Ready() {
			checks["incidents"] = "loaded"
		}
		if err := ping(r.Context(), cfg.SessionsvcURL); err != nil {
			checks["sessionsvc"] = "down" // the console cannot sign in; alerting goes on
		}
		if chStore != nil {
			checks["clickhouse"] = "ok"
			pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			if err := chStore.Ping(pctx); err != nil {
				checks["clickhouse"] = "down" // timelines missing; alerting goes on
			}
			cancel()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(checks)
	})
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "2")
		http.Error(w, "the alerter is starting (waiting for NATS)", http.StatusServiceUnavailable)
	}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.tls != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cfg.tls}}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ALERTER_LISTEN: %w", err)
	}
	log.Info("alerter listening", append([]any{"addr", ln.Addr().String(), "tls", cfg.tls != nil, "reviewers", len(cfg.file.Reviewers),
		"notifiers", len(cfg.file.Notifiers)}, buildinfo.LogAttrs()...)...)
	if hk.listening != nil {
		hk.listening(ln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		if cfg.tls != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining requests")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	g.Go(func() error {
		pub := eventbus.NewAlertPublisher(js, "alerter")
		store, err := setUp(gctx, js, cfg, log)
		if err != nil || gctx.Err() != nil {
			return err
		}
		svc, err = alerter.New(alerter.Config{
			Store: store, Router: cfg.router, Actions: pub, Window: cfg.GroupWindow, NotifyMaxAge: cfg.NotifyMaxAge,
			Retry: cfg.file.Retry, Retention: cfg.Retention, JanitorInterval: cfg.JanitorInterval,
			ConsoleURL: cfg.ConsoleURL, Log: log, Metrics: am,
		})
		if err != nil {
			return err
		}
		ccfg := console.Config{Alerts: svc, Sessions: sessions, Timeline: timeline, Accounts: cfg.accounts,
			PublicURL: cfg.ConsoleURL, Log: log, Metrics: cm}
		if len(cfg.proxies) > 0 {
			ccfg.ClientIP = console.TrustedProxyIP(cfg.proxies)
		}
		con, err := console.New(ccfg)
		if err != nil {
			return err
		}
		consumer, err := eventbus.OpenAlertConsumer(gctx, js, eventbus.AlertConsumerOptions{
			Durable: cfg.Consumer, Handle: svc.HandleAlert, HandleAction: svc.HandleAction, DeadLetter: pub.DeadLetter,
			Invalid: am.AlertsInvalid.Inc, Log: log.With("component", "consumer"),
		})
		if err != nil {
			return err
		}
		lag.Add(events.AlertStreamName, cfg.Consumer)
		var h http.Handler = con
		handler.Store(&h)
		started.Store(true)
		log.Info("alerter started", "consumer", cfg.Consumer, "bucket", cfg.Bucket)
		sg, sctx := errgroup.WithContext(gctx)
		sg.Go(func() error { return svc.Run(sctx) })
		sg.Go(func() error { return consumer.Run(sctx) })
		return sg.Wait()
	})
	return g.Wait()
}

// setUp makes sure of the streams and opens the incident bucket, retrying
// while NATS is unreachable.
func setUp(ctx context.Context, js jetstream.JetStream, cfg *Config, log *slog.Logger) (*eventbus.IncidentStore, error) {
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := eventbus.EnsureStreamsExist(sctx, js, eventbus.DefaultStreamOptions())
		var store *eventbus.IncidentStore
		if err == nil {
			store, err = eventbus.OpenIncidentStore(sctx, js, eventbus.IncidentStoreOptions{Bucket: cfg.Bucket, Replicas: cfg.Replicas})
		}
		cancel()
		if err == nil {
			return store, nil
		}
		log.Warn("set up streams and bucket; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(2 * time.Second):
		}
	}
}

// ping checks that the session service answers its health check.
func ping(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}
