package auditsvc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/cli"
)

// migrate applies the schema migrations and the retention, and lists the
// applied migrations.
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c common
	var retention int
	fs := cli.New("auditor migrate", getenv, stderr)
	c.register(fs)
	fs.Int(&retention, "retention-months", "AUDITOR_RETENTION_MONTHS", clickhouse.DefaultRetentionMonths, "rows are kept at least this long (0: forever)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := fs.Problems()
	c.check(p)
	if retention < 0 || retention > 1200 {
		p.Bad("retention-months", fmt.Errorf("must be 0 (forever) to 1200, got %d", retention))
	}
	if err := p.Err(); err != nil {
		return err
	}
	s, err := clickhouse.Open(clickhouse.Config{URL: c.ClickHouseURL, RetentionMonths: retention, Log: c.logger(stderr)})
	if err != nil {
		return fmt.Errorf("CLICKHOUSE_URL: %w", err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		return err
	}
	applied, err := s.AppliedMigrations(ctx)
	if err != nil {
		return err
	}
	for _, a := range applied {
		fmt.Fprintf(stdout, "%04d %-20s %.12s applied %s\n", a.Version, a.Name, a.Checksum, a.AppliedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// export writes a user's session history (for an access request or an
// investigation) as JSON or CSV.
func export(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c common
	var user, format, out string
	var from, to time.Time
	fs := cli.New("auditor export", getenv, stderr)
	c.register(fs)
	fs.String(&user, "user", "", "", "the user ID (required)")
	fs.String(&format, "format", "", "json", "json (sessions with their addresses, and login attempts) or csv (one row a session)")
	fs.String(&out, "out", "", "-", "output file; - for standard output")
	fs.Var(timeFlag{&from}, "from", "only sessions with events from this time (RFC 3339 or a date; default: the start of the log)")
	fs.Var(timeFlag{&to}, "to", "... and before this time (default: now)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := fs.Problems()
	c.check(p)
	if user == "" {
		p.Bad("user", errors.New("required"))
	}
	if format != "json" && format != "csv" {
		p.Bad("format", fmt.Errorf("%q: want json or csv", format))
	}
	if !from.IsZero() && !to.IsZero() && !to.After(from) {
		p.Bad("to", errors.New("must be after -from"))
	}
	if err := p.Err(); err != nil {
		return err
	}
	s, err := c.openStore(c.logger(stderr))
	if err != nil {
		return err
	}
	defer s.Close()
	h, err := s.UserHistory(ctx, user, from, to)
	if err != nil {
		return err
	}
	w, done, err := output(out, stdout)
	if err != nil {
		return err
	}
	if format == "csv" {
		err = audit.WriteCSV(w, h)
	} else {
		err = audit.WriteJSON(w, h)
	}
	if err := done(err); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "auditor: exported %d sessions and %d login attempts of %q\n", len(h.Sessions), len(h.AuthEvents), user)
	return nil
}

// output opens the output file ("-": w itself); done closes it, keeping
// the first error.
func output(path string, w io.Writer) (io.Writer, func(error) error, error) {
	if path == "-" || path == "" {
		return w, func(err error) error { return err }, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("-out: %w", err)
	}
	return f, func(err error) error {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("-out: %w", cerr)
		}
		return err
	}, nil
}

// checkEndings reports the sessions that do not have exactly one ending
// event once their absolute timeout passed; ViolationsError (exit status
// 2) when there are some.
func checkEndings(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c common
	var abs, grace, window time.Duration
	var format string
	fs := cli.New("auditor check-endings", getenv, stderr)
	c.register(fs)
	fs.Duration(&abs, "absolute-timeout", "SESSIONSVC_ABSOLUTE_TIMEOUT", 8*time.Hour, "the session service's absolute timeout")
	fs.Duration(&grace, "grace", "AUDITOR_ENDINGS_GRACE", 15*time.Minute, "allowance for the expiry sweeper and the pipeline's lag")
	fs.Duration(&window, "window", "AUDITOR_ENDINGS_WINDOW", 30*24*time.Hour, "check the sessions started this far back (up to the timeout and grace ago)")
	fs.String(&format, "format", "", "text", "text or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := fs.Problems()
	c.check(p)
	if abs <= 0 {
		p.Bad("absolute-timeout", errors.New("must be positive"))
	}
	if grace < 0 {
		p.Bad("grace", errors.New("must not be negative"))
	}
	if window <= abs+grace {
		p.Bad("window", fmt.Errorf("must exceed the absolute timeout and the grace (%s)", abs+grace))
	}
	if format != "text" && format != "json" {
		p.Bad("format", fmt.Errorf("%q: want text or json", format))
	}
	if err := p.Err(); err != nil {
		return err
	}
	s, err := c.openStore(c.logger(stderr))
	if err != nil {
		return err
	}
	defer s.Close()
	now := time.Now()
	res, err := s.CheckEndings(ctx, clickhouse.EndingCheckOptions{AbsoluteTimeout: abs, Grace: grace, From: now.Add(-window), Now: now})
	if err != nil {
		return err
	}
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "checked %d sessions started from %s until %s: %d violation(s)\n",
			res.Checked, res.From.Format(time.RFC3339), res.Until.Format(time.RFC3339), len(res.Violations))
		if len(res.Violations) > 0 {
			tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tUSER\tSTARTED\tENDINGS\tPROBLEM\tEND EVENTS")
			for _, v := range res.Violations {
				started := "-"
				if !v.Started.IsZero() {
					started = v.Started.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%q\t%s\t%d\t%s\t%v\n", v.SessionID, v.UserID, started, v.Endings, v.Problem, v.EndTypes)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
	}
	if n := len(res.Violations); n > 0 {
		return &ViolationsError{N: n}
	}
	return nil
}

// dumpEvents writes the session events of a time range as JSON lines, in
// time order, each once: the input of detector replay.
func dumpEvents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c common
	var from, to time.Time
	fs := cli.New("auditor events", getenv, stderr)
	c.register(fs)
	fs.Var(timeFlag{&from}, "from", "first time (RFC 3339 or a date; required)")
	fs.Var(timeFlag{&to}, "to", "end of the range, excluded (default: now)")
	if err := parse(fs, args); err != nil {
		return err
	}
	p := fs.Problems()
	c.check(p)
	if from.IsZero() {
		p.Bad("from", errors.New("required"))
	}
	if to.IsZero() {
		to = time.Now()
	}
	if !to.After(from) {
		p.Bad("to", errors.New("must be after -from"))
	}
	if err := p.Err(); err != nil {
		return err
	}
	s, err := c.openStore(c.logger(stderr))
	if err != nil {
		return err
	}
	defer s.Close()
	w := bufio.NewWriterSize(stdout, 64<<10)
	n := 0
	err = s.Events(ctx, from, to, func(e events.Event) error {
		b, err := e.Encode()
		if err != nil {
			return err
		}
		n++
		w.Write(b)
		return w.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "auditor: %d events\n", n)
	return nil
}
