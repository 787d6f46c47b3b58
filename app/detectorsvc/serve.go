package detectorsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/internal/buildinfo"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/internal/httpserve"
)

// runConfig is the configuration of `detector run`.
type runConfig struct {
	Listen        string
	NATS          eventbus.ConnConfig
	SessionsvcURL string
	APIKey        string
	RulesFile     string
	Group, Groups int
	Warmup        time.Duration
	GeoReload     time.Duration
	RulesReload   time.Duration
	StreamMaxAge  time.Duration
	Replicas      int
	LogLevel      string
	LogFormat     string
	geo           geoFlags
	partitions    []int
}

func parseRunConfig(args []string, getenv func(string) string, out io.Writer) (*runConfig, error) {
	c := &runConfig{}
	fs := cli.New("detector run", getenv, out)
	fs.String(&c.Listen, "listen", "DETECTOR_LISTEN", "127.0.0.1:8081", "HTTP listen address of /metrics, /healthz and /readyz")
	c.NATS.RegisterFlags(fs)
	fs.String(&c.SessionsvcURL, "sessionsvc-url", "SESSIONSVC_URL", "", "session service base URL for enforcement (enforcement is off without one)")
	fs.String(&c.APIKey, "sessionsvc-api-key", "SESSIONSVC_API_KEY", "", "admin API key of the session service")
	fs.String(&c.RulesFile, "rules", "RULES_FILE", "", "rules file (the built-in rules without one); reloaded on SIGHUP")
	fs.Int(&c.Group, "group", "DETECTOR_GROUP", 0, "this detector's partition group, 0 to groups-1")
	fs.Int(&c.Groups, "groups", "DETECTOR_GROUPS", 1, "number of detector groups splitting the 16 partitions (1, 2, 4, 8 or 16)")
	fs.Duration(&c.Warmup, "warmup", "DETECTOR_WARMUP", time.Hour, "history replayed at start to rebuild windows, without acting")
	fs.Duration(&c.GeoReload, "geoip-reload-interval", "GEOIP_RELOAD_INTERVAL", time.Minute, "how often to check the GeoIP files for changes")
	fs.Duration(&c.RulesReload, "rules-reload-interval", "RULES_RELOAD_INTERVAL", 30*time.Second, "how often to check the rules file for changes (0: only on SIGHUP)")
	fs.Duration(&c.StreamMaxAge, "stream-max-age", "STREAM_MAX_AGE", eventbus.DefaultStreamOptions().MaxAge, "how long the ALERTS and DEADLETTER streams keep messages")
	fs.Int(&c.Replicas, "stream-replicas", "STREAM_REPLICAS", 1, "replicas of the ALERTS and DEADLETTER streams")
	fs.Logging(&c.LogLevel, &c.LogFormat)
	c.geo.register(fs)
	fs.Version()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	p := fs.Problems()
	p.Listen("listen", c.Listen)
	p.Add(c.NATS.Check())
	if c.SessionsvcURL != "" && c.APIKey == "" {
		p.Bad("sessionsvc-api-key", errors.New("required with "+fs.Setting("sessionsvc-url")))
	}
	if c.Groups < 1 || c.Groups > events.Partitions {
		p.Bad("groups", fmt.Errorf("must be 1 to %d, got %d", events.Partitions, c.Groups))
	} else if c.Group < 0 || c.Group >= c.Groups {
		p.Bad("group", fmt.Errorf("must be 0 to %d (groups-1), got %d", c.Groups-1, c.Group))
	}
	if c.Warmup < 0 {
		p.Bad("warmup", errors.New("must not be negative"))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.Bad("stream-replicas", fmt.Errorf("must be 1 to 5, got %d", c.Replicas))
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	c.partitions, _ = detector.Partitions(c.Group, c.Groups)
	return c, nil
}

// runHooks let tests drive a running detector.
type runHooks struct {
	listening func(addr string)
	reload    <-chan struct{}
}

// run is `detector run`: the detector service, reloading its rules on
// SIGHUP.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseRunConfig(args, getenv, stderr)
	if errors.Is(err, cli.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return serve(ctx, cfg, stderr, runHooks{reload: reload})
}

func serve(ctx context.Context, cfg *runConfig, stderr io.Writer, hooks runHooks) error {
	log, err := cli.Logger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	log = log.With("service", "detector", "group", cfg.Group, "groups", cfg.Groups)
	log.Info("detector starting", buildinfo.LogAttrs()...)
	set, err := loadRules(cfg.RulesFile)
	if err != nil {
		return err
	}
	res, closeGeo, err := cfg.geo.open(stderr)
	if err != nil {
		return err
	}
	defer closeGeo()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg)
	metrics := detector.NewMetrics(reg)
	metrics.Reloaded(true, set.Version())

	nc, err := eventbus.Connect(cfg.NATS, fmt.Sprintf("detector-%d-of-%d", cfg.Group, cfg.Groups), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts := eventbus.DefaultStreamOptions()
	opts.MaxAge, opts.Replicas = cfg.StreamMaxAge, cfg.Replicas
	if err := ensureAlertStreams(sctx, js, opts); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	source, err := eventbus.OpenDetectorSource(sctx, js, cfg.Group, cfg.Groups, eventbus.SourceOptions{Log: log})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	lag := eventbus.NewLagCollector(js)
	lag.Add(events.StreamName, source.Consumers()...)
	reg.MustRegister(lag)
	pub := eventbus.NewAlertPublisher(js, "detector")

	var enforcer *detector.Enforcer
	if cfg.SessionsvcURL != "" {
		api, err := client.New(cfg.SessionsvcURL, cfg.APIKey)
		if err != nil {
			return fmt.Errorf("SESSIONSVC_URL: %w", err)
		}
		alerts, err := eventbus.OpenEnforcerSource(sctx, js)
		if err != nil {
			return err
		}
		defer alerts.Close()
		lag.Add(events.AlertStreamName, eventbus.EnforcerConsumer)
		enforcer = detector.NewEnforcer(api, alerts, pub, log.With("component", "enforcer"), metrics)
	} else {
		log.Warn("no SESSIONSVC_URL: alerts are raised but no session is revoked or sent to re-auth")
	}
	cancel()

	svc := detector.NewService(detector.ServiceConfig{
		Engine: detector.New(set, res), Source: source, Sink: pub, Warmup: cfg.Warmup, Log: log, Metrics: metrics,
	})

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpserve.JSON(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		checks := map[string]string{"nats": nc.Status().String(), "warmup": "done"}
		code := http.StatusOK
		select {
		case <-svc.Ready():
		default:
			checks["warmup"], code = "running", http.StatusServiceUnavailable
		}
		if !nc.IsConnected() {
			code = http.StatusServiceUnavailable
		}
		httpserve.JSON(w, code, checks)
	})
	srv := httpserve.Server(mux, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("DETECTOR_LISTEN: %w", err)
	}
	log.Info("detector started", "addr", ln.Addr().String(), "partitions", cfg.partitions, "rules", len(set.Rules),
		"rules_source", set.Source, "rules_version", set.Version(), "warmup", cfg.Warmup, "enforcement", enforcer != nil)
	if hooks.listening != nil {
		hooks.listening(ln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpserve.Run(gctx, srv, ln) })
	g.Go(func() error {
		defer source.Close()
		return svc.Run(gctx)
	})
	if enforcer != nil {
		g.Go(func() error { return enforcer.Run(gctx) })
	}
	if m, ok := res.(*geo.MaxMind); ok && cfg.GeoReload > 0 {
		g.Go(func() error { m.Watch(gctx, cfg.GeoReload); return nil })
	}
	reload := make(chan struct{})
	g.Go(func() error { return forward(gctx, hooks.reload, reload) })
	if cfg.RulesFile != "" && cfg.RulesReload > 0 {
		g.Go(func() error { return watchFile(gctx, cfg.RulesFile, cfg.RulesReload, reload) })
	}
	g.Go(func() error { return reloadLoop(gctx, svc, cfg.RulesFile, reload, metrics, log) })
	g.Go(func() error { return statsLoop(gctx, svc, metrics) })
	err = g.Wait()
	log.Info("detector stopped")
	return err
}

// ensureAlertStreams creates or updates the streams the detector writes
// (ALERTS, DEADLETTER), and the SESSIONS stream it reads if it is missing.
func ensureAlertStreams(ctx context.Context, js jetstream.JetStream, o eventbus.StreamOptions) error {
	for _, sc := range []jetstream.StreamConfig{eventbus.AlertStreamConfig(o), eventbus.DeadLetterStreamConfig(o)} {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("jetstream: ensure stream %s: %w", sc.Name, err)
		}
	}
	// The session service owns the SESSIONS stream's settings; a detector
	// that starts first creates it with the defaults.
	_, err := js.Stream(ctx, events.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, eventbus.SessionStreamConfig(o))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("jetstream: stream %s: %w", events.StreamName, err)
	}
	return nil
}

// reloadLoop reloads the rules file on each signal. A bad file is logged
// with the rule, field and reason; the running rules stay in force.
func reloadLoop(ctx context.Context, svc *detector.Service, path string, reload <-chan struct{}, m *detector.Metrics, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
		}
		set, err := loadRules(path)
		if err != nil {
			m.Reloaded(false, "")
			log.Error("rules reload failed; the running rules stay in force", "err", err)
			continue
		}
		if err := svc.Reload(ctx, set); err != nil {
			return nil
		}
		m.Reloaded(true, set.Version())
		log.Info("rules reloaded", "rules", len(set.Rules), "source", set.Source, "version", set.Version())
	}
}

// forward passes signals from in to out until ctx ends.
func forward(ctx context.Context, in <-chan struct{}, out chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-in:
		}
		select {
		case out <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
	}
}

// watchFile signals out when path's size or modification time changes
// (a ConfigMap update, say: containers cannot be sent SIGHUP easily).
func watchFile(ctx context.Context, path string, every time.Duration, out chan<- struct{}) error {
	stamp := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return "missing"
		}
		return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	last := stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if now := stamp(); now != last {
			last = now
			select {
			case out <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// statsLoop refreshes the state gauges every few seconds.
func statsLoop(ctx context.Context, svc *detector.Service, m *detector.Metrics) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if st, err := svc.Stats(ctx); err == nil {
				m.SetState(st)
			}
		}
	}
}
