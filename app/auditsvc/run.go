// Package auditsvc is the audit writer program (cmd/auditor): `auditor
// serve` consumes the SESSIONS and ALERTS streams into the audit log
// (ClickHouse, or a Sink given by an embedding program); `auditor
// migrate`, `export`, `check-endings` and `events` apply the schema and
// answer compliance questions from ClickHouse.
package auditsvc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/internal/cli"
)

const usage = `usage: auditor [command] [flags]
commands:
  serve          consume SESSIONS and ALERTS into ClickHouse (the default)
  migrate        apply the schema migrations and exit
  export         -user U [-format json|csv] [-from T] [-to T] [-out FILE]: a user's session history
  check-endings  [-absolute-timeout 8h] [-grace 15m] [-window 720h]: sessions without exactly one ending (exit 2 if any)
  events         -from T [-to T]: session events as JSON lines, e.g. for detector replay -events -
"auditor <command> -h" lists the command's flags.`

// Run runs an auditor command: serve (the default), migrate, export,
// check-endings or events.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, getenv, stderr)
	case "migrate":
		err = migrate(ctx, args, getenv, stdout, stderr)
	case "export":
		err = export(ctx, args, getenv, stdout, stderr)
	case "check-endings":
		err = checkEndings(ctx, args, getenv, stdout, stderr)
	case "events":
		err = dumpEvents(ctx, args, getenv, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// common are the settings every command has.
type common struct {
	ClickHouseURL string
	LogLevel      string
	LogFormat     string
}

func (c *common) register(fs *cli.FlagSet) {
	fs.String(&c.ClickHouseURL, "clickhouse-url", "CLICKHOUSE_URL", clickhouse.DefaultURL,
		"ClickHouse, native protocol: clickhouse://[user[:password]@]host:port/database[?dial_timeout=..&secure=true]")
	fs.Logging(&c.LogLevel, &c.LogFormat)
}

// check adds the common settings' problems to p.
func (c *common) check(p *cli.Problems) {
	if _, _, err := clickhouse.ParseURL(c.ClickHouseURL); err != nil {
		p.Bad("clickhouse-url", err)
	}
	p.Logging(c.LogLevel, c.LogFormat)
}

func (c *common) logger(w io.Writer) *slog.Logger {
	log, _ := cli.Logger(w, c.LogLevel, c.LogFormat) // checked by check
	return log.With("service", "auditor")
}

// parse parses a command's flags and refuses positional arguments.
func parse(fs *cli.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// timeFlag is a time given as RFC 3339 (2026-11-22T10:00:00Z) or a date
// (2026-11-22, midnight UTC); empty is the zero time.
type timeFlag struct{ t *time.Time }

func (f timeFlag) String() string {
	if f.t == nil || f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f timeFlag) Set(s string) error {
	if s == "" {
		*f.t = time.Time{}
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			*f.t = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("want RFC 3339 (2026-11-22T10:00:00Z) or a date (2026-11-22)")
}

// openStore opens the store of the common settings.
func (c *common) openStore(log *slog.Logger) (*clickhouse.Store, error) {
	s, err := clickhouse.Open(clickhouse.Config{URL: c.ClickHouseURL, Log: log})
	if err != nil {
		return nil, fmt.Errorf("CLICKHOUSE_URL: %w", err)
	}
	return s, nil
}

// ViolationsError is check-endings' result when sessions break the rule;
// the command exits with status 2.
type ViolationsError struct{ N int }

func (e *ViolationsError) Error() string {
	return fmt.Sprintf("%d session(s) without exactly one ending event", e.N)
}
