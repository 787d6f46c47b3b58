package auditsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/internal/buildinfo"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/internal/httpserve"
)

// ServeConfig is the configuration of `auditor serve`; ParseServeConfig
// makes one.
type ServeConfig struct {
	common
	Listen          string
	NATS            eventbus.ConnConfig
	ConsumerPrefix  string
	BatchSize       int
	BatchInterval   time.Duration
	AckWait         time.Duration
	RetentionMonths int
	MaxFuture       time.Duration
	PseudonymizeIPs bool
	IPKey           string
	IPKeyFile       string
	GeoIPCity       string
	GeoIPOverrides  string
	GeoIPReload     time.Duration
	StreamMaxAge    time.Duration
	StreamReplicas  int
	PendingInterval time.Duration
	ShutdownTimeout time.Duration

	key []byte
}

// ParseServeConfig reads the flags of `auditor serve` with their
// environment fallbacks (getenv) and checks them all; errors name the
// setting. Usage goes to out.
func ParseServeConfig(args []string, getenv func(string) string, out io.Writer) (*ServeConfig, error) {
	c := &ServeConfig{}
	fs := cli.New("auditor serve", getenv, out)
	c.common.register(fs)
	fs.String(&c.Listen, "listen", "AUDITOR_LISTEN", "127.0.0.1:8082", "HTTP listen address of /metrics, /healthz and /readyz")
	c.NATS.RegisterFlags(fs)
	fs.String(&c.ConsumerPrefix, "consumer", "AUDITOR_CONSUMER", "auditor", "durable consumers are <consumer>-sessions and <consumer>-alerts")
	fs.Int(&c.BatchSize, "batch-size", "AUDITOR_BATCH_SIZE", eventbus.DefaultAuditBatchSize, "rows per insert, at most")
	fs.Duration(&c.BatchInterval, "batch-interval", "AUDITOR_BATCH_INTERVAL", time.Second, "longest wait before a batch that is not full is written")
	fs.Duration(&c.AckWait, "ack-wait", "AUDITOR_ACK_WAIT", 30*time.Second, "JetStream redelivers what a dead writer did not ack after this")
	fs.Int(&c.RetentionMonths, "retention-months", "AUDITOR_RETENTION_MONTHS", clickhouse.DefaultRetentionMonths, "rows are kept at least this long (0: forever)")
	fs.Duration(&c.MaxFuture, "max-future", "AUDITOR_MAX_FUTURE", 24*time.Hour, "events further ahead of this clock are dead-lettered")
	fs.Bool(&c.PseudonymizeIPs, "pseudonymize-ips", "AUDITOR_PSEUDONYMIZE_IPS", false, "store a keyed HMAC of each address and its country/city instead of the address")
	fs.String(&c.IPKey, "ip-key", "AUDITOR_IP_KEY", "", "the HMAC key for -pseudonymize-ips (32+ bytes; prefer -ip-key-file)")
	fs.String(&c.IPKeyFile, "ip-key-file", "AUDITOR_IP_KEY_FILE", "", "file holding the HMAC key for -pseudonymize-ips")
	fs.String(&c.GeoIPCity, "geoip-city", "GEOIP_CITY_DB", "", "GeoIP2/GeoLite2 City database: country and city of addresses (optional)")
	fs.String(&c.GeoIPOverrides, "geoip-overrides", "GEOIP_OVERRIDES", "", "YAML file mapping internal CIDRs to locations (optional)")
	fs.Duration(&c.GeoIPReload, "geoip-reload-interval", "GEOIP_RELOAD_INTERVAL", time.Minute, "how often to check the GeoIP files for changes (0: never)")
	fs.Duration(&c.StreamMaxAge, "stream-max-age", "STREAM_MAX_AGE", eventbus.DefaultStreamOptions().MaxAge, "max age of the streams the auditor creates when they are missing")
	fs.Int(&c.StreamReplicas, "stream-replicas", "STREAM_REPLICAS", 1, "replicas of the streams the auditor creates when they are missing")
	fs.Duration(&c.PendingInterval, "pending-interval", "AUDITOR_PENDING_INTERVAL", 5*time.Second, "how often the consumers' lag is read for the metrics")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "AUDITOR_SHUTDOWN_TIMEOUT", 15*time.Second, "time to write what is held on SIGTERM")
	fs.Version()
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	p := fs.Problems()
	c.common.check(p)
	p.Listen("listen", c.Listen)
	p.Add(c.NATS.Check())
	if c.ConsumerPrefix == "" || strings.ContainsAny(c.ConsumerPrefix, ".*> \t") {
		p.Bad("consumer", fmt.Errorf("%q: want a name without spaces, dots or wildcards", c.ConsumerPrefix))
	}
	if c.BatchSize < 1 || c.BatchSize > 1_000_000 {
		p.Bad("batch-size", fmt.Errorf("must be 1 to 1000000, got %d", c.BatchSize))
	}
	if c.BatchInterval <= 0 || c.BatchInterval > time.Minute {
		p.Bad("batch-interval", fmt.Errorf("must be positive and at most 1m, got %s", c.BatchInterval))
	}
	if c.AckWait < time.Second {
		p.Bad("ack-wait", fmt.Errorf("must be at least 1s, got %s", c.AckWait))
	} else if c.AckWait <= c.BatchInterval {
		p.Bad("ack-wait", fmt.Errorf("must exceed the batch interval (%s)", c.BatchInterval))
	}
	if c.RetentionMonths < 0 || c.RetentionMonths > 1200 {
		p.Bad("retention-months", fmt.Errorf("must be 0 (forever) to 1200, got %d", c.RetentionMonths))
	}
	if c.MaxFuture < 0 {
		p.Bad("max-future", errors.New("must not be negative"))
	}
	if c.GeoIPReload < 0 {
		p.Bad("geoip-reload-interval", errors.New("must not be negative"))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		p.Bad("stream-replicas", fmt.Errorf("must be 1 to 5, got %d", c.StreamReplicas))
	}
	if c.PendingInterval <= 0 {
		p.Bad("pending-interval", errors.New("must be positive"))
	}
	if c.ShutdownTimeout <= 0 {
		p.Bad("shutdown-timeout", errors.New("must be positive"))
	}
	// The key: from the variable or the file, never both; only with
	// pseudonymization on, which needs one.
	switch {
	case c.IPKey != "" && c.IPKeyFile != "":
		p.Bad("ip-key", fmt.Errorf("give the key or %s, not both", fs.Setting("ip-key-file")))
	case c.IPKeyFile != "":
		b, err := os.ReadFile(c.IPKeyFile)
		if err != nil {
			p.Bad("ip-key-file", err)
		}
		c.key = []byte(strings.TrimSpace(string(b)))
	case c.IPKey != "":
		c.key = []byte(c.IPKey)
	}
	switch {
	case c.PseudonymizeIPs && c.IPKey == "" && c.IPKeyFile == "":
		p.Bad("pseudonymize-ips", fmt.Errorf("needs a key: %s or %s", fs.Setting("ip-key"), fs.Setting("ip-key-file")))
	case !c.PseudonymizeIPs && (c.IPKey != "" || c.IPKeyFile != ""):
		p.Bad("ip-key", fmt.Errorf("a key is set but %s is off: addresses would be stored in clear", fs.Setting("pseudonymize-ips")))
	case c.PseudonymizeIPs && len(c.key) < audit.MinIPKeyLen && (c.IPKey != "" || c.IPKeyFile != ""):
		src := "ip-key"
		if c.IPKeyFile != "" {
			src = "ip-key-file"
		}
		p.Bad(src, fmt.Errorf("the key is %d bytes, want at least %d", len(c.key), audit.MinIPKeyLen))
	}
	if c.GeoIPOverrides != "" && c.GeoIPCity == "" {
		p.Bad("geoip-overrides", fmt.Errorf("needs %s", fs.Setting("geoip-city")))
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// openGeo opens the GeoIP resolver, or returns nil without a database.
func (c *ServeConfig) openGeo() (*geo.MaxMind, error) {
	if c.GeoIPCity == "" {
		return nil, nil
	}
	cfg := geo.Config{CityDB: c.GeoIPCity}
	if c.GeoIPOverrides != "" {
		f, err := os.Open(c.GeoIPOverrides)
		if err != nil {
			return nil, fmt.Errorf("GEOIP_OVERRIDES: %w", err)
		}
		cfg.Overrides, err = geo.ParseOverrides(c.GeoIPOverrides, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	m, err := geo.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("GEOIP_CITY_DB: %w", err)
	}
	return m, nil
}

// Sink is where the audit writer writes.
type Sink interface {
	// NewEventBatch and NewAlertBatch make the batches of the SESSIONS and
	// ALERTS consumers (eventbus.AuditBatch).
	NewEventBatch() eventbus.AuditBatch
	NewAlertBatch() eventbus.AuditBatch
	// Prepare makes the store ready (ClickHouse: applies the migrations);
	// the consumers start after it succeeds; it is retried until then.
	Prepare(ctx context.Context) error
	Ping(ctx context.Context) error
}

// Options let a caller embed the audit writer.
type Options struct {
	// Sink replaces ClickHouse (CLICKHOUSE_URL is then not opened). What
	// is kept of addresses and the -max-future check are the sink's
	// business: Serve refuses -pseudonymize-ips with a Sink, and ignores
	// -geoip-city (with a warning).
	Sink Sink
	// Listening, when set, is told the address of the metrics/health listener.
	Listening func(addr string)
}

// clickhouseSink is the ClickHouse store as a Sink, with the writer
// options of the configuration.
type clickhouseSink struct {
	store *clickhouse.Store
	wo    clickhouse.WriterOptions
}

func (s clickhouseSink) NewEventBatch() eventbus.AuditBatch { return s.store.NewEventBatch(s.wo) }
func (s clickhouseSink) NewAlertBatch() eventbus.AuditBatch { return s.store.NewAlertBatch(s.wo) }
func (s clickhouseSink) Ping(ctx context.Context) error     { return s.store.Ping(ctx) }
func (s clickhouseSink) Prepare(ctx context.Context) error {
	_, err := s.store.Migrate(ctx)
	return err
}

// serve is `auditor serve`.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := ParseServeConfig(args, getenv, stderr)
	if errors.Is(err, cli.ErrVersion) {
		return nil
	}
	if err != nil {
		return err
	}
	return Serve(ctx, cfg, stderr, Options{})
}

// Serve runs the audit writer until ctx ends.
func Serve(ctx context.Context, cfg *ServeConfig, stderr io.Writer, o Options) error {
	if cfg == nil {
		return errors.New("auditsvc: no configuration")
	}
	log := cfg.logger(stderr)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg)

	// The sink: ClickHouse, with what is kept of addresses, unless the
	// caller gave one.
	sink := o.Sink
	sinkName := "store"
	prepare := "prepare the audit store"
	prepared := "prepared"
	var mm *geo.MaxMind
	var startAttrs []any
	if sink != nil {
		if cfg.PseudonymizeIPs {
			return errors.New("AUDITOR_PSEUDONYMIZE_IPS: not applied by an injected audit sink; the sink must keep addresses itself")
		}
		if cfg.GeoIPCity != "" {
			log.Warn("GEOIP_CITY_DB is ignored: the injected audit sink stores what it stores of addresses")
		}
		startAttrs = []any{"store", fmt.Sprintf("%T", sink)}
	} else {
		var res geo.Resolver
		var err error
		if mm, err = cfg.openGeo(); err != nil {
			return err
		}
		if mm != nil {
			defer mm.Close()
			res = mm
		}
		var key []byte
		if cfg.PseudonymizeIPs {
			key = cfg.key
		}
		ipPolicy, err := audit.NewIPPolicy(key, res)
		if err != nil {
			return fmt.Errorf("AUDITOR_IP_KEY: %w", err)
		}
		store, err := clickhouse.Open(clickhouse.Config{URL: cfg.ClickHouseURL, RetentionMonths: cfg.RetentionMonths,
			Log: log.With("component", "clickhouse"), Metrics: clickhouse.NewMetrics(reg)})
		if err != nil {
			return fmt.Errorf("CLICKHOUSE_URL: %w", err)
		}
		defer store.Close()
		sink = clickhouseSink{store: store, wo: clickhouse.WriterOptions{IP: ipPolicy, MaxFuture: cfg.MaxFuture}}
		sinkName, prepare, prepared = "clickhouse", "migrate the ClickHouse schema", "migrated"
		startAttrs = []any{"clickhouse", clickhouse.Redact(cfg.ClickHouseURL), "database", store.Database(),
			"retention_months", cfg.RetentionMonths, "pseudonymize_ips", cfg.PseudonymizeIPs, "geoip", cfg.GeoIPCity != ""}
	}
	auditMetrics := eventbus.NewAuditMetrics(reg)

	nc, err := eventbus.Connect(cfg.NATS, "auditor", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	dead := eventbus.NewAlertPublisher(js, "auditor")
	var consumers []*eventbus.AuditConsumer
	lag := eventbus.NewLagCollector(js)
	for _, cc := range []eventbus.AuditConsumerConfig{eventbus.SessionAuditConsumer(cfg.ConsumerPrefix), eventbus.AlertAuditConsumer(cfg.ConsumerPrefix)} {
		cc.BatchSize, cc.BatchInterval, cc.AckWait = cfg.BatchSize, cfg.BatchInterval, cfg.AckWait
		cc.PendingInterval, cc.ShutdownTimeout = cfg.PendingInterval, cfg.ShutdownTimeout
		newBatch := sink.NewEventBatch
		if cc.Stream == events.AlertStreamName {
			newBatch = sink.NewAlertBatch
		}
		c, err := eventbus.NewAuditConsumer(js, cc, newBatch, dead.DeadLetter, auditMetrics, log.With("component", "consumer"))
		if err != nil {
			return err
		}
		consumers = append(consumers, c)
		lag.Add(cc.Stream, cc.Durable)
	}
	reg.MustRegister(lag)

	var ready atomic.Bool // the sink is prepared
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpserve.JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{"nats": nc.Status().String(), sinkName: "ok", "schema": prepared}
		code := http.StatusOK
		if !nc.IsConnected() {
			code = http.StatusServiceUnavailable
		}
		if !ready.Load() {
			checks["schema"], code = "pending", http.StatusServiceUnavailable
		}
		pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := sink.Ping(pctx); err != nil {
			// The stream holds the backlog meanwhile; nothing is lost.
			checks[sinkName], code = "down", http.StatusServiceUnavailable
		}
		for i, name := range []string{"sessions", "alerts"} {
			checks["consumer_"+name] = "reading"
			if !consumers[i].Ready() {
				checks["consumer_"+name], code = "waiting", http.StatusServiceUnavailable
			}
		}
		httpserve.JSON(w, code, checks)
	})
	srv := httpserve.Server(http.MaxBytesHandler(mux, 1<<10), log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("AUDITOR_LISTEN: %w", err)
	}
	log.Info("auditor started", append([]any{"addr", ln.Addr().String(), "batch_size", cfg.BatchSize,
		"batch_interval", cfg.BatchInterval}, append(startAttrs, buildinfo.LogAttrs()...)...)...)
	if o.Listening != nil {
		o.Listening(ln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpserve.Run(gctx, srv, ln) })
	if mm != nil && cfg.GeoIPReload > 0 {
		g.Go(func() error { mm.Watch(gctx, cfg.GeoIPReload); return nil })
	}
	g.Go(func() error {
		// The store and NATS may come up after the auditor: wait for
		// both, then consume. Nothing is read before the store is ready.
		if !retry(gctx, log, prepare, sink.Prepare) {
			return nil
		}
		ready.Store(true)
		opts := eventbus.DefaultStreamOptions()
		opts.MaxAge, opts.Replicas = cfg.StreamMaxAge, cfg.StreamReplicas
		if !retry(gctx, log, "find or create the streams", func(ctx context.Context) error {
			return eventbus.EnsureStreamsExist(ctx, js, opts)
		}) {
			return nil
		}
		cg, cctx := errgroup.WithContext(gctx)
		for _, c := range consumers {
			cg.Go(func() error { return c.Run(cctx) })
		}
		return cg.Wait()
	})
	err = g.Wait()
	log.Info("auditor stopped")
	return err
}

// retry calls f until it succeeds, with a growing pause; false if ctx
// ended first.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) bool {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := min(time.Duration(1<<min(attempt, 5))*200*time.Millisecond, 5*time.Second)
		log.Warn("cannot "+what+"; retrying", "err", err, "attempt", attempt+1, "in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}
