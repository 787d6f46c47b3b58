// Package detectorsvc is the detector program (cmd/detector): `detector run`
// consumes the event stream and enforces alerts; `detector replay` runs
// rules over a file of events.
package detectorsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/internal/cli"
	"github.com/sessionmon/sessionmon/rules"
)

// Run runs a detector subcommand.
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: detector run [flags] | detector replay -events FILE [-rules FILE] [-geoip-city DB]")
	}
	switch args[0] {
	case "run":
		return run(ctx, args[1:], getenv, stderr)
	case "replay":
		return replay(ctx, args[1:], getenv, stdin, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q (want run or replay)", args[0])
}

// geoFlags are the GeoIP settings shared by the detector's commands.
type geoFlags struct {
	city, asn, anonymous, overrides string
}

func (g *geoFlags) register(fs *cli.FlagSet) {
	fs.String(&g.city, "geoip-city", "GEOIP_CITY_DB", "", "GeoIP2/GeoLite2 City database (geographic rules are off without one)")
	fs.String(&g.asn, "geoip-asn", "GEOIP_ASN_DB", "", "GeoLite2 ASN database (optional)")
	fs.String(&g.anonymous, "geoip-anonymous", "GEOIP_ANONYMOUS_DB", "", "GeoIP2 Anonymous IP database (optional)")
	fs.String(&g.overrides, "geoip-overrides", "GEOIP_OVERRIDES", "", "YAML file mapping internal CIDRs to locations (optional)")
}

// open returns the resolver; without a city database, geo.None and a
// warning: the geographic rules are off, everything else runs.
func (g *geoFlags) open(warn io.Writer) (geo.Resolver, func(), error) {
	if g.city == "" {
		fmt.Fprintln(warn, "detector: warning: no GeoIP city database (GEOIP_CITY_DB): impossible travel and new country are off")
		return geo.None{}, func() {}, nil
	}
	cfg := geo.Config{CityDB: g.city, ASNDB: g.asn, AnonymousDB: g.anonymous}
	if g.overrides != "" {
		f, err := os.Open(g.overrides)
		if err != nil {
			return nil, nil, fmt.Errorf("GEOIP_OVERRIDES: %w", err)
		}
		cfg.Overrides, err = geo.ParseOverrides(g.overrides, f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
	}
	m, err := geo.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return m, func() { _ = m.Close() }, nil
}

func loadRules(path string) (*rules.Set, error) {
	if path == "" {
		return rules.Default(), nil
	}
	return rules.Load(path)
}

// replayAudit replays a time range of the audit log in ClickHouse.
func replayAudit(ctx context.Context, set *rules.Set, res geo.Resolver, url string, span [2]time.Time, w io.Writer) (detector.ReplayStats, error) {
	store, err := clickhouse.Open(clickhouse.Config{URL: url})
	if err != nil {
		return detector.ReplayStats{}, fmt.Errorf("CLICKHOUSE_URL: %w", err)
	}
	defer store.Close()
	return detector.ReplayEach(detector.New(set, res), func(fn func(events.Event) error) error {
		return store.Events(ctx, span[0], span[1], fn)
	}, w)
}

func replay(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.New("detector replay", getenv, stderr)
	var rulesFile, eventsFile string
	var g geoFlags
	fs.String(&rulesFile, "rules", "RULES_FILE", "", "rules file (the built-in rules without one)")
	var chURL, from, to string
	fs.String(&eventsFile, "events", "", "-", "events file, JSON lines; - for standard input")
	fs.String(&chURL, "clickhouse-url", "CLICKHOUSE_URL", "", "read the events from the audit log in ClickHouse instead (with -from and -to)")
	fs.String(&from, "from", "", "", "with -clickhouse-url: start of the time range (RFC 3339)")
	fs.String(&to, "to", "", "", "with -clickhouse-url: end of the time range (RFC 3339, default now)")
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var span [2]time.Time
	if from != "" || to != "" {
		if chURL == "" {
			return fmt.Errorf("-from and -to read the audit log: %s is required", fs.Setting("clickhouse-url"))
		}
		var err error
		if span[0], err = time.Parse(time.RFC3339, from); err != nil {
			return fmt.Errorf("-from: want an RFC 3339 time, e.g. 2026-11-22T10:00:00Z, got %q", from)
		}
		span[1] = time.Now()
		if to != "" {
			if span[1], err = time.Parse(time.RFC3339, to); err != nil {
				return fmt.Errorf("-to: want an RFC 3339 time, got %q", to)
			}
		}
		if !span[0].Before(span[1]) {
			return errors.New("-from must be before -to")
		}
	}
	set, err := loadRules(rulesFile)
	if err != nil {
		return err
	}
	res, closeGeo, err := g.open(stderr)
	if err != nil {
		return err
	}
	defer closeGeo()
	if !span[0].IsZero() {
		st, err := replayAudit(ctx, set, res, chURL, span, stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "detector: replayed %d events of the audit log from %s to %s with %d rules (%s): %d alerts\n",
			st.Events, span[0].Format(time.RFC3339), span[1].Format(time.RFC3339), len(set.Rules), set.Source, st.Alerts)
		return nil
	}
	in := stdin
	if eventsFile != "-" {
		f, err := os.Open(eventsFile)
		if err != nil {
			return fmt.Errorf("events file: %w", err)
		}
		defer f.Close()
		in = f
	}
	st, err := detector.Replay(detector.New(set, res), in, stdout)
	if err != nil {
		return fmt.Errorf("%s: %w", eventsFile, err)
	}
	fmt.Fprintf(stderr, "detector: replayed %d events with %d rules (%s): %d alerts\n", st.Events, len(set.Rules), set.Source, st.Alerts)
	return nil
}
