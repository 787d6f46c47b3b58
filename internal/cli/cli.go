// Package cli declares command-line flags whose defaults come from
// environment variables, and reports bad values naming the setting.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/internal/buildinfo"
)

// FlagSet is a flag.FlagSet with environment fallbacks: each flag takes its
// value from its environment variable when set, and the command line wins
// over both.
type FlagSet struct {
	*flag.FlagSet
	getenv  func(string) string
	env     map[string]string // flag name -> variable
	version *bool             // -version, when declared
}

// ErrVersion is Parse's answer to -version, once the version is printed:
// the program exits without error.
var ErrVersion = errors.New("version requested")

// New returns a flag set for a command; getenv is os.Getenv outside tests.
func New(name string, getenv func(string) string, out io.Writer) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &FlagSet{FlagSet: fs, getenv: getenv, env: map[string]string{}}
}

// bind ties a flag to its environment variable; "" means none.
func (f *FlagSet) bind(name, env string) string {
	if env == "" {
		return ""
	}
	f.env[name] = env
	return fmt.Sprintf(" (env %s)", env)
}

// String declares a string flag.
func (f *FlagSet) String(p *string, name, env, def, usage string) {
	f.StringVar(p, name, def, usage+f.bind(name, env))
}

// Duration declares a duration flag (Go syntax: 30m, 8h).
func (f *FlagSet) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	f.DurationVar(p, name, def, usage+f.bind(name, env))
}

// Int declares an integer flag.
func (f *FlagSet) Int(p *int, name, env string, def int, usage string) {
	f.IntVar(p, name, def, usage+f.bind(name, env))
}

// Bool declares a boolean flag.
func (f *FlagSet) Bool(p *bool, name, env string, def bool, usage string) {
	f.BoolVar(p, name, def, usage+f.bind(name, env))
}

// Version declares -version, which prints the program's name and build
// (version, VCS revision, Go version) to the flag set's output; Parse then
// returns ErrVersion.
func (f *FlagSet) Version() {
	f.version = new(bool)
	f.BoolVar(f.version, "version", false, "print the version and exit")
}

// Parse applies the environment, then the arguments. An error names the
// variable or flag with the bad value.
func (f *FlagSet) Parse(args []string) error {
	var errs []error
	f.VisitAll(func(fl *flag.Flag) {
		env, ok := f.env[fl.Name]
		if !ok {
			return
		}
		if v, set := lookup(f.getenv, env); set {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: invalid value %q: %v", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	if f.version != nil && *f.version {
		fmt.Fprintln(f.Output(), f.Name(), buildinfo.Get())
		return ErrVersion
	}
	return nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Setting names a setting by its flag and variable, for error messages.
func (f *FlagSet) Setting(name string) string {
	if env, ok := f.env[name]; ok {
		return fmt.Sprintf("%s (-%s)", env, name)
	}
	return "-" + name
}

// Logging declares -log-level and -log-format (LOG_LEVEL, LOG_FORMAT), the
// settings of Logger.
func (f *FlagSet) Logging(level, format *string) {
	f.String(level, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	f.String(format, "log-format", "LOG_FORMAT", "json", "json or text")
}

// Problems collects what is wrong with a command's settings, each problem
// naming its setting, so that one run reports all of them.
type Problems struct {
	fs   *FlagSet
	errs []error
}

// Problems returns an empty collection for the settings of f.
func (f *FlagSet) Problems() *Problems { return &Problems{fs: f} }

// Bad records that the setting of flag is wrong, and why.
func (p *Problems) Bad(flag string, err error) {
	p.errs = append(p.errs, fmt.Errorf("%s: %w", p.fs.Setting(flag), err))
}

// Add records an error that names its setting itself; nil is no problem.
func (p *Problems) Add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Listen records a problem unless the setting of flag, addr, is a
// host:port listen address, and reports whether it is.
func (p *Problems) Listen(flag, addr string) bool {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		p.Bad(flag, err)
		return false
	}
	return true
}

// Logging records a problem unless level and format (the values of the
// flags Logging declares) make a Logger.
func (p *Problems) Logging(level, format string) {
	_, err := Logger(io.Discard, level, format)
	p.Add(err)
}

// Err returns the problems joined, one a line, or nil when there are none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Logger builds the process logger from -log-level and -log-format values.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}
