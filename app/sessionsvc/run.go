// Package sessionsvc is the session service program (cmd/sessionsvc):
// configuration, wiring of the session domain to Redis, NATS and HTTP, and
// its lifecycle.
package sessionsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/buildinfo"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/internal/httpserve"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// Run runs the service until ctx ends, then drains in-flight requests and
// flushes the outbox. listening, when not nil, is told the bound address.
func Run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, listening func(addr string)) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, cli.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := cli.Logger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	log = log.With("service", "sessionsvc")
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg)

	var (
		store sessions.Store
		relay interface{ Run(context.Context) error }
		// newRelay is called once the publisher exists.
		newRelay func(pub *eventbus.Publisher)
	)
	switch cfg.Store {
	case "memory":
		ms, err := memstore.New(memstore.Options{})
		if err != nil {
			return err
		}
		reg.MustRegister(memstore.NewCollector(ms))
		store = ms
		newRelay = func(pub *eventbus.Publisher) {
			relay = memstore.NewRelay(ms, pub, log, memstore.NewMetrics(reg), memstore.RelayConfig{})
		}
		log.Warn("sessions are kept in this process's memory: nothing survives a restart (-store memory)")
	default:
		rdb, relayRDB := cfg.redisClients()
		defer rdb.Close()
		defer relayRDB.Close()
		rs, err := redisstore.New(rdb, redisstore.Options{Prefix: cfg.KeyPrefix})
		if err != nil {
			return err
		}
		reg.MustRegister(redisstore.NewCollector(rs))
		store = rs
		newRelay = func(pub *eventbus.Publisher) {
			relay = redisstore.NewRelay(rs, relayRDB, pub, log, redisstore.NewMetrics(reg), redisstore.RelayConfig{})
		}
	}
	svc, err := sessions.NewService(store, cfg.Policy, nil)
	if err != nil {
		return err
	}

	// NATS may be down at start: the outbox keeps every event until the
	// relay can publish it, so the API serves regardless.
	// No reconnect buffer: a publish while disconnected fails at once
	// instead of waiting to be sent after the reconnect, ahead of the
	// retried batch it belongs behind. What reaches the server is then a
	// prefix of each batch, and the relay's retry (de-duplicated on the
	// event ID) completes it in order.
	nc, err := eventbus.Connect(cfg.NATS, "sessionsvc", log, nats.ReconnectBufSize(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	pub, err := eventbus.NewPublisher(nc, 5*time.Second, eventbus.MaxBatch(cfg.EventBatch))
	if err != nil {
		return err
	}
	newRelay(pub)

	// /metrics is served on the API listener, or on a listener of its own
	// (-metrics-listen) that the apps calling the API cannot reach.
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	var apiMetrics http.Handler
	if cfg.MetricsListen == "" {
		apiMetrics = metricsHandler
	}
	handler := httpapi.Handler(httpapi.Config{
		Service: svc,
		Keys:    cfg.keys,
		Ready: func(ctx context.Context) (map[string]string, error) {
			checks := map[string]string{cfg.Store: "ok", "nats": nc.Status().String()}
			err := store.Ping(ctx)
			if err != nil {
				checks[cfg.Store] = "down"
			}
			return checks, err
		},
		MetricsHandler: apiMetrics,
		Metrics:        httpapi.NewMetrics(reg),
		Log:            log,
	})
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(handler, httpapi.MaxBody),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("SESSIONSVC_LISTEN: %w", err)
	}
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			return fmt.Errorf("SESSIONSVC_METRICS_LISTEN: %w", err)
		}
		log.Info("metrics listening", "addr", metricsLn.Addr().String())
	}
	log.Info("sessionsvc listening", append([]any{"addr", ln.Addr().String(), "idle_timeout", cfg.Policy.IdleTimeout,
		"absolute_timeout", cfg.Policy.AbsoluteTimeout, "max_sessions", cfg.Policy.MaxSessions}, buildinfo.LogAttrs()...)...)
	if listening != nil {
		listening(ln.Addr().String())
	}

	// The relay outlives the HTTP server: on shutdown the server drains
	// first, then the relay flushes what those last requests wrote.
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	// The relay starts once the stream exists: publishes answered "no
	// stream" in the middle of a batch whose later events are stored would
	// put the batch out of order when it is retried.
	g.Go(func() error {
		ensureStream(relayCtx, pub, cfg.Stream, log)
		return relay.Run(relayCtx)
	})
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		msrv := httpserve.Server(mux, log)
		g.Go(func() error { return httpserve.Run(gctx, msrv, metricsLn) })
	}
	if cfg.DebugAddr != "" {
		dbg := &http.Server{Addr: cfg.DebugAddr, Handler: debugMux(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			go func() { <-gctx.Done(); _ = dbg.Close() }()
			if err := dbg.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("SESSIONSVC_DEBUG_ADDR: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining requests")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		log.Info("flushing the outbox")
		stopRelay()
		return err
	})
	return g.Wait()
}

// ensureStream creates or updates the SESSIONS stream, retrying while NATS
// is unreachable.
func ensureStream(ctx context.Context, pub *eventbus.Publisher, o eventbus.StreamOptions, log *slog.Logger) {
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := eventbus.EnsureSessionStream(sctx, pub.JetStream(), o)
		cancel()
		if err == nil {
			return
		}
		log.Warn("ensure stream; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// debugMux serves the runtime profiles on the debug listener only.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
