package sessionsvc

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/sessions"
)

// Config is the service's configuration, from flags and environment.
type Config struct {
	Listen          string
	MetricsListen   string
	Store           string // redis or memory
	RedisURL        string
	RedisCluster    bool // RedisURL names a Redis Cluster
	NATS            eventbus.ConnConfig
	APIKeys         string
	APIKeysFile     string
	KeyPrefix       string
	Policy          sessions.Policy
	LimitMode       string
	Stream          eventbus.StreamOptions
	EventBatch      int // most events of one JetStream message
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string
	DebugAddr       string

	redis        *redis.Options        // one server
	redisCluster *redis.ClusterOptions // or a cluster
	keys         *httpapi.Keys
}

// ParseConfig reads flags and environment and validates everything before
// anything starts. Errors name the setting.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{Policy: sessions.DefaultPolicy(), Stream: eventbus.DefaultStreamOptions()}
	fs := cli.New("sessionsvc", getenv, out)
	fs.String(&c.Listen, "listen", "SESSIONSVC_LISTEN", "127.0.0.1:8080", "HTTP listen address")
	fs.String(&c.MetricsListen, "metrics-listen", "SESSIONSVC_METRICS_LISTEN", "", "listen address of /metrics on its own (empty: /metrics on the API listener)")
	fs.String(&c.Store, "store", "SESSIONSVC_STORE", "redis", "session store: redis, or memory (one process, nothing survives a restart: demos and tests)")
	fs.String(&c.RedisURL, "redis-url", "REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL")
	fs.Bool(&c.RedisCluster, "redis-cluster", "SESSIONSVC_REDIS_CLUSTER", false,
		"the Redis URL names a Redis Cluster: a node as its host, more as addr parameters (redis://host1:6379?addr=host2:6379)")
	c.NATS.RegisterFlags(fs)
	fs.String(&c.APIKeys, "api-keys", "SESSIONSVC_API_KEYS", "", "API keys, comma-separated name:role:secret (role app or admin)")
	fs.String(&c.APIKeysFile, "api-keys-file", "SESSIONSVC_API_KEYS_FILE", "", "file of API keys, one name:role:secret a line")
	fs.String(&c.KeyPrefix, "redis-key-prefix", "SESSIONSVC_REDIS_KEY_PREFIX", "sm", "prefix of every Redis key")
	fs.Duration(&c.Policy.IdleTimeout, "idle-timeout", "SESSIONSVC_IDLE_TIMEOUT", c.Policy.IdleTimeout, "idle timeout, sliding on validate")
	fs.Duration(&c.Policy.AbsoluteTimeout, "absolute-timeout", "SESSIONSVC_ABSOLUTE_TIMEOUT", c.Policy.AbsoluteTimeout, "absolute session lifetime")
	fs.Int(&c.Policy.MaxSessions, "max-sessions", "SESSIONSVC_MAX_SESSIONS", c.Policy.MaxSessions, "concurrent sessions per user (0: no limit)")
	fs.String(&c.LimitMode, "limit-mode", "SESSIONSVC_LIMIT_MODE", string(c.Policy.LimitMode), "at the session limit: evict (the oldest) or deny")
	fs.String(&c.Policy.CookieName, "cookie-name", "SESSIONSVC_COOKIE_NAME", c.Policy.CookieName, "name of the session cookie handed to apps")
	fs.Duration(&c.Stream.MaxAge, "stream-max-age", "SESSIONSVC_STREAM_MAX_AGE", c.Stream.MaxAge, "how long the SESSIONS stream keeps events")
	fs.Int(&c.Stream.Replicas, "stream-replicas", "SESSIONSVC_STREAM_REPLICAS", c.Stream.Replicas, "replicas of the SESSIONS stream")
	fs.Int(&c.EventBatch, "event-batch", "SESSIONSVC_EVENT_BATCH", eventbus.DefaultMaxBatch, "most events of one JetStream message: consecutive events of one subject share a message under load (1: one event a message)")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "SESSIONSVC_SHUTDOWN_TIMEOUT", 20*time.Second, "time to drain requests and flush the outbox on SIGTERM")
	fs.String(&c.DebugAddr, "debug-addr", "SESSIONSVC_DEBUG_ADDR", "", "address of a pprof listener (off when empty; keep it private)")
	fs.Logging(&c.LogLevel, &c.LogFormat)
	fs.Version()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	p := fs.Problems()
	p.Listen("listen", c.Listen)
	if c.MetricsListen != "" && p.Listen("metrics-listen", c.MetricsListen) &&
		c.MetricsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		p.Bad("metrics-listen", fmt.Errorf("the API listens on %s: give another address, or none", c.Listen))
	}
	var err error
	if c.Store != "redis" && c.Store != "memory" {
		p.Bad("store", fmt.Errorf("want redis or memory, got %q", c.Store))
	}
	if c.RedisCluster {
		if c.redisCluster, err = redis.ParseClusterURL(c.RedisURL); err != nil {
			p.Bad("redis-url", redisURLError(err))
		} else if u, _ := url.Parse(c.RedisURL); u.Path != "" && u.Path != "/" && u.Path != "/0" {
			// ParseClusterURL ignores a database number: refuse it rather
			// than share database 0 with whatever uses it.
			p.Bad("redis-url", fmt.Errorf("database %s: a Redis Cluster has database 0 only", strings.TrimPrefix(u.Path, "/")))
		}
	} else if c.redis, err = redis.ParseURL(c.RedisURL); err != nil {
		p.Bad("redis-url", redisURLError(err))
	}
	p.Add(c.NATS.Check())
	c.Policy.LimitMode = sessions.LimitMode(c.LimitMode)
	if err := c.Policy.Validate(); err != nil {
		p.Add(fmt.Errorf("session policy: %w", err))
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		p.Bad("stream-replicas", fmt.Errorf("must be 1 to 5, got %d", c.Stream.Replicas))
	}
	if c.EventBatch < 1 || c.EventBatch > events.MaxBatchEvents {
		p.Bad("event-batch", fmt.Errorf("must be 1 to %d, got %d", events.MaxBatchEvents, c.EventBatch))
	}
	if c.ShutdownTimeout <= 0 {
		p.Bad("shutdown-timeout", errors.New("must be positive"))
	}
	keys, err := httpapi.ParseAPIKeys(fs.Setting("api-keys"), c.APIKeys)
	p.Add(err)
	if c.APIKeysFile != "" {
		f, err := os.Open(c.APIKeysFile)
		if err != nil {
			p.Bad("api-keys-file", err)
		} else {
			more, err := httpapi.ReadAPIKeys(c.APIKeysFile, f)
			f.Close()
			p.Add(err)
			keys = append(keys, more...)
		}
	}
	if p.Err() == nil {
		if c.keys, err = httpapi.NewKeys(keys); err != nil {
			p.Add(fmt.Errorf("%s / %s: %w", fs.Setting("api-keys"), fs.Setting("api-keys-file"), err))
		}
	}
	p.Logging(c.LogLevel, c.LogFormat)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// redisClients returns the store's client and the relay's, of one server
// or of a cluster. The relay has a pool of its own, so that its blocking
// reads never wait behind validations, nor these behind them.
func (c *Config) redisClients() (store, relay redis.UniversalClient) {
	// RESP2: the service uses no RESP3 features, and go-redis checks for
	// RESP3 push notifications around every command (measured: ~4% of the
	// service's CPU under load).
	const protocol = 2
	if c.redisCluster != nil {
		o, r := *c.redisCluster, *c.redisCluster
		o.PoolSize = max(o.PoolSize, 128) // per node
		r.PoolSize = events.Partitions + 4
		if o.Protocol == 0 {
			o.Protocol, r.Protocol = protocol, protocol
		}
		return redis.NewClusterClient(&o), redis.NewClusterClient(&r)
	}
	o, r := *c.redis, *c.redis
	o.PoolSize = max(o.PoolSize, 128)
	r.PoolSize = events.Partitions + 4
	if o.Protocol == 0 {
		o.Protocol, r.Protocol = protocol, protocol
	}
	return redis.NewClient(&o), redis.NewClient(&r)
}

// redisURLError is err of parsing REDIS_URL without the URL itself, which
// net/url quotes whole, password included.
func redisURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("not a valid URL: %w", ue.Err)
	}
	return err
}
