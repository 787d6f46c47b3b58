// Package buildinfo tells what a sessionmon program was built from: the
// main module's version, the VCS revision and the Go version, read from
// the binary's embedded build information. Every program exports them as
// the sessionmon_build_info gauge and logs them at start.
package buildinfo

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// version, when set at link time, replaces the module version read from
// the build information, for builds without module version or VCS data
// (a Docker build without .git, say):
//
//	go build -ldflags "-X github.com/sessionmon/sessionmon/internal/buildinfo.version=v1.4.0" ./cmd/...
var version string

// Info is what a binary was built from.
type Info struct {
	// Version is the main module's version: a tag (v1.4.0), a
	// pseudo-version from VCS data (v0.0.0-20260101120000-0123456789ab,
	// with +dirty for uncommitted changes), or "(devel)".
	Version string
	// Revision is the VCS revision, shortened to 12 characters, or
	// "unknown" (a build outside a repository, a test binary).
	Revision string
	// Modified is set when the working tree had uncommitted changes.
	Modified bool
	// GoVersion is the Go release the binary was built with.
	GoVersion string
}

// Get returns the running binary's build information.
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok, version)
})

func fromBuildInfo(bi *debug.BuildInfo, ok bool, override string) Info {
	in := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	if ok && bi != nil {
		if bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if s.Value != "" {
					in.Revision = s.Value[:min(len(s.Value), 12)]
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if override != "" {
		in.Version = override
	}
	return in
}

// Version is the main module's version (see Info.Version).
func Version() string { return Get().Version }

// Revision is the short VCS revision, or "unknown".
func Revision() string { return Get().Revision }

// String is a one-line description: "v1.4.0 (revision 0123456789ab, go1.26.8)".
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += ", modified"
	}
	return i.Version + " (revision " + rev + ", " + i.GoVersion + ")"
}

// LogAttrs are the attributes a program adds to its start log line.
func LogAttrs() []any {
	in := Get()
	return []any{slog.String("version", in.Version), slog.String("revision", in.Revision),
		slog.Bool("vcs_modified", in.Modified), slog.String("go_version", in.GoVersion)}
}

// Name is the metric's name.
const Name = "sessionmon_build_info"

// NewCollector returns the sessionmon_build_info gauge: always 1, labelled
// with version, revision and go_version, so that dashboards and alerts can
// tell what runs where (count by (version) (sessionmon_build_info)).
func NewCollector() prometheus.Collector {
	in := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: Name,
		Help: "Always 1; labelled with the version, VCS revision and Go version the program was built from.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "revision": in.Revision, "go_version": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// Register registers the sessionmon_build_info gauge with reg; it panics
// if reg already holds it, like prometheus.MustRegister.
func Register(reg prometheus.Registerer) {
	reg.MustRegister(NewCollector())
}
