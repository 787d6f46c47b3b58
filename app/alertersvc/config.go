package alertersvc

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/alerter/notify"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/internal/cli"
)

// Config is the alerter's configuration, from flags, environment and the
// configuration file.
type Config struct {
	Listen          string
	NATS            eventbus.ConnConfig
	ConfigFile      string
	SessionsvcURL   string
	SessionsvcKey   string
	ClickHouseURL   string
	ConsoleURL      string
	Consumer        string
	Bucket          string
	Replicas        int
	GroupWindow     time.Duration
	NotifyMaxAge    time.Duration
	Retention       time.Duration
	JanitorInterval time.Duration
	TrustedProxies  string
	TLSCert         string
	TLSKey          string
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string

	file     *alerter.FileConfig
	accounts *console.Accounts
	router   *alerter.Router
	proxies  []netip.Prefix
	tls      *tls.Certificate
}

// ClickHouseOff disables the audit timeline in the console.
const ClickHouseOff = "off"

// ParseConfig reads flags, environment and the configuration file, and
// checks everything before anything starts. Errors name the setting.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := cli.New("alerter", getenv, out)
	fs.String(&c.Listen, "listen", "ALERTER_LISTEN", "127.0.0.1:8090", "HTTP listen address of the console, /metrics, /healthz and /readyz")
	c.NATS.RegisterFlags(fs)
	fs.String(&c.ConfigFile, "config", "ALERTER_CONFIG", "", "YAML file of reviewers, notifiers, routes and retries (required)")
	fs.String(&c.SessionsvcURL, "sessionsvc-url", "SESSIONSVC_URL", "http://127.0.0.1:8080", "session service URL")
	fs.String(&c.SessionsvcKey, "sessionsvc-api-key", "ALERTER_SESSIONSVC_API_KEY", "", "an admin API key secret of the session service (required; prefer the variable)")
	fs.String(&c.ClickHouseURL, "clickhouse-url", "CLICKHOUSE_URL", clickhouse.DefaultURL, "ClickHouse of the audit log, for users' timelines; off to disable")
	fs.String(&c.ConsoleURL, "console-url", "ALERTER_CONSOLE_URL", "", "the console's address as reviewers reach it (links in notifications; a trusted origin)")
	fs.String(&c.Consumer, "consumer", "ALERTER_CONSUMER", eventbus.AlerterConsumer, "durable consumer name on the ALERTS stream")
	fs.String(&c.Bucket, "bucket", "ALERTER_BUCKET", eventbus.DefaultAlerterBucket, "JetStream key-value bucket of the incidents")
	fs.Int(&c.Replicas, "bucket-replicas", "ALERTER_BUCKET_REPLICAS", 1, "replicas of the bucket")
	fs.Duration(&c.GroupWindow, "group-window", "ALERTER_GROUP_WINDOW", time.Hour, "repeats of a rule for one user (or IP) within this window join one incident")
	fs.Duration(&c.NotifyMaxAge, "notify-max-age", "ALERTER_NOTIFY_MAX_AGE", 24*time.Hour, "alerts older than this open incidents without notifying")
	fs.Duration(&c.Retention, "retention", "ALERTER_RETENTION", 90*24*time.Hour, "closed incidents are deleted this long after their last change")
	fs.Duration(&c.JanitorInterval, "janitor-interval", "ALERTER_JANITOR_INTERVAL", 15*time.Second, "how often pending deliveries and actions are retried")
	fs.String(&c.TrustedProxies, "trusted-proxies", "ALERTER_TRUSTED_PROXIES", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed")
	fs.String(&c.TLSCert, "tls-cert", "ALERTER_TLS_CERT", "", "TLS certificate file (serve HTTPS; without it, put a TLS proxy in front)")
	fs.String(&c.TLSKey, "tls-key", "ALERTER_TLS_KEY", "", "TLS key file")
	fs.Duration(&c.ShutdownTimeout, "shutdown-timeout", "ALERTER_SHUTDOWN_TIMEOUT", 20*time.Second, "time to drain requests on SIGTERM")
	fs.Logging(&c.LogLevel, &c.LogFormat)
	fs.Version()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommand: hash-password)", fs.Arg(0))
	}
	p := fs.Problems()
	p.Listen("listen", c.Listen)
	p.Add(c.NATS.Check())
	if u, err := url.Parse(c.SessionsvcURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Bad("sessionsvc-url", errors.New("want http(s)://host:port"))
	}
	if c.SessionsvcKey == "" {
		p.Bad("sessionsvc-api-key", errors.New("required: an admin API key of the session service"))
	}
	if c.ClickHouseURL != "" && c.ClickHouseURL != ClickHouseOff {
		if _, _, err := clickhouse.ParseURL(c.ClickHouseURL); err != nil {
			p.Bad("clickhouse-url", err)
		}
	}
	if c.ConsoleURL != "" {
		if u, err := url.Parse(c.ConsoleURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Bad("console-url", errors.New("want http(s)://host[:port]"))
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		p.Bad("bucket-replicas", fmt.Errorf("must be 1 to 5, got %d", c.Replicas))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"group-window", c.GroupWindow}, {"notify-max-age", c.NotifyMaxAge}, {"retention", c.Retention},
		{"janitor-interval", c.JanitorInterval}, {"shutdown-timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			p.Bad(d.flag, fmt.Errorf("must be positive, got %s", d.v))
		}
	}
	for cidr := range strings.SplitSeq(c.TrustedProxies, ",") {
		if cidr = strings.TrimSpace(cidr); cidr == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil {
			p.Bad("trusted-proxies", fmt.Errorf("%q is not a CIDR", cidr))
			continue
		}
		c.proxies = append(c.proxies, pfx.Masked())
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		p.Bad("tls-cert", errors.New("give both the certificate and the key (ALERTER_TLS_KEY), or neither"))
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			p.Bad("tls-cert", err)
		}
		c.tls = &cert
	}
	p.Logging(c.LogLevel, c.LogFormat)
	if c.ConfigFile == "" {
		p.Bad("config", errors.New("required: the file of reviewers, notifiers and routes"))
	} else if err := c.readFile(getenv); err != nil {
		p.Bad("config", err)
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// readFile reads the configuration file and builds accounts and routes.
func (c *Config) readFile(getenv func(string) string) error {
	data, err := os.ReadFile(c.ConfigFile)
	if err != nil {
		return err
	}
	if c.file, err = alerter.ParseConfig(c.ConfigFile, data, getenv); err != nil {
		return err
	}
	if c.accounts, err = console.NewAccounts(c.file.Reviewers); err != nil {
		return err
	}
	notifiers, err := notify.FromSpecs(c.file.Notifiers, nil)
	if err != nil {
		return err
	}
	if c.router, err = alerter.NewRouter(notifiers, c.file.Routes); err != nil {
		return fmt.Errorf("%s: %w", c.ConfigFile, err)
	}
	return nil
}
