package standalone

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/internal/cli"
)

// Config is the one-process pipeline's configuration. The services'
// own settings (SESSIONSVC_*, DETECTOR_*, ALERTER_*, AUDITOR_*, RULES_FILE,
// GEOIP_*) still apply through the environment; these are what the
// pipeline decides for them.
type Config struct {
	DataDir         string
	NATSListen      string
	SessionsvcAddr  string
	DetectorAddr    string
	AuditorAddr     string
	ConsoleAddr     string
	ClickHouseURL   string
	Simulate        bool
	Users           int
	Rate            int
	AttackEvery     time.Duration
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	Reviewer        string
	LogLevel        string
	LogFormat       string
}

// ParseConfig reads flags and environment; errors name the setting.
func ParseConfig(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := cli.New("sessionmon", getenv, out)
	fs.String(&c.DataDir, "data-dir", "SESSIONMON_DATA_DIR", "sessionmon-data", "directory of the JetStream store, the audit log and the demo GeoIP databases")
	fs.String(&c.NATSListen, "nats-listen", "SESSIONMON_NATS_LISTEN", "127.0.0.1:0", "address of the embedded NATS server (port 0: any free port)")
	fs.String(&c.SessionsvcAddr, "sessionsvc-listen", "SESSIONSVC_LISTEN", "127.0.0.1:8080", "the session service's HTTP API")
	fs.String(&c.DetectorAddr, "detector-listen", "DETECTOR_LISTEN", "127.0.0.1:8081", "the detector's /metrics, /healthz and /readyz")
	fs.String(&c.AuditorAddr, "auditor-listen", "AUDITOR_LISTEN", "127.0.0.1:8082", "the audit writer's /metrics, /healthz and /readyz")
	fs.String(&c.ConsoleAddr, "console-listen", "ALERTER_LISTEN", "127.0.0.1:8090", "the review console (and the alerter's /metrics)")
	fs.String(&c.ClickHouseURL, "clickhouse-url", "CLICKHOUSE_URL", "", "write the audit log to this ClickHouse instead of files in the data directory")
	fs.Bool(&c.Simulate, "simulate", "SESSIONMON_SIMULATE", true, "drive simulated users and attacks through the session service's API")
	fs.Int(&c.Users, "users", "SESSIONMON_USERS", 200, "simulated users")
	fs.Int(&c.Rate, "rate", "SESSIONMON_RATE", 20, "simulated user actions per second")
	fs.Duration(&c.AttackEvery, "attack-every", "SESSIONMON_ATTACK_EVERY", 20*time.Second, "pause between simulated attack rounds")
	fs.Duration(&c.IdleTimeout, "idle-timeout", "SESSIONSVC_IDLE_TIMEOUT", 3*time.Minute, "sessions' idle timeout (short, so that abandoned demo sessions time out while you watch)")
	fs.Duration(&c.AbsoluteTimeout, "absolute-timeout", "SESSIONSVC_ABSOLUTE_TIMEOUT", time.Hour, "sessions' absolute timeout")
	fs.String(&c.Reviewer, "reviewer", "SESSIONMON_REVIEWER", "demo", "name of the demo reviewer of the console (a new password each start)")
	fs.String(&c.LogLevel, "log-level", "LOG_LEVEL", "warn", "the services' log level: debug, info, warn or error")
	fs.String(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "json or text")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	p := fs.Problems()
	if c.DataDir == "" {
		p.Bad("data-dir", errors.New("required"))
	}
	for _, f := range []struct{ flag, addr string }{{"nats-listen", c.NATSListen}, {"sessionsvc-listen", c.SessionsvcAddr},
		{"detector-listen", c.DetectorAddr}, {"auditor-listen", c.AuditorAddr}, {"console-listen", c.ConsoleAddr}} {
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			p.Bad(f.flag, err)
		}
	}
	if c.ClickHouseURL != "" {
		if _, _, err := clickhouse.ParseURL(c.ClickHouseURL); err != nil {
			p.Bad("clickhouse-url", err)
		}
	}
	if c.Users < 1 || c.Users > 100_000 {
		p.Bad("users", fmt.Errorf("must be 1 to 100000, got %d", c.Users))
	}
	if c.Rate < 1 || c.Rate > 10_000 {
		p.Bad("rate", fmt.Errorf("must be 1 to 10000 actions/s, got %d", c.Rate))
	}
	if c.AttackEvery < time.Second {
		p.Bad("attack-every", fmt.Errorf("must be at least 1s, got %s", c.AttackEvery))
	}
	if c.Reviewer == "" {
		p.Bad("reviewer", errors.New("required"))
	}
	p.Logging(c.LogLevel, c.LogFormat)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return c, nil
}
