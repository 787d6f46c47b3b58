package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/sessionmon/sessionmon", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"}}}
	in := fromBuildInfo(bi, true, "")
	if in.Version != "v1.4.0" || in.Revision != "0123456789ab" || !in.Modified || in.GoVersion != runtime.Version() {
		t.Fatalf("%+v", in)
	}
	if s := in.String(); s != "v1.4.0 (revision 0123456789ab, modified, "+runtime.Version()+")" {
		t.Fatal(s)
	}
	// No build information, or none of VCS: "(devel)" and "unknown".
	for _, c := range []struct {
		bi *debug.BuildInfo
		ok bool
	}{{nil, false}, {&debug.BuildInfo{}, true}, {&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true}} {
		if in := fromBuildInfo(c.bi, c.ok, ""); in.Version != "(devel)" || in.Revision != "unknown" || in.Modified {
			t.Errorf("%+v: %+v", c.bi, in)
		}
	}
	// A version set at link time wins.
	if in := fromBuildInfo(bi, true, "v2.0.0-rc1"); in.Version != "v2.0.0-rc1" || in.Revision != "0123456789ab" {
		t.Fatalf("%+v", in)
	}
}

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	Register(reg)
	in := Get()
	want := `# HELP sessionmon_build_info Always 1; labelled with the version, VCS revision and Go version the program was built from.
# TYPE sessionmon_build_info gauge
sessionmon_build_info{go_version="` + in.GoVersion + `",revision="` + in.Revision + `",version="` + in.Version + `"} 1
`
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", got.String(), want)
	}
	if Version() == "" || Revision() == "" || len(LogAttrs()) != 4 {
		t.Fatal(Version(), Revision(), LogAttrs())
	}
}
