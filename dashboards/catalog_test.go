package dashboards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/buildinfo"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/redisstore"
)

// The catalog is every metric family the sessionmon programs export, read
// from the metrics themselves: each program's constructors are called as
// its wiring calls them (app/*/run.go, app/auditsvc/serve.go), with a fresh
// registry, and gathered. Vectors with no child yet (alerts by rule, dead
// letters by reason...) export nothing until they are used, so the
// catalog gives each of them one child with placeholder label values: the
// family, its type and its label names are then known.
// TestCatalogMatchesPrograms proves that the catalog is what the real
// programs serve.

// family is one exported metric family.
type family struct {
	name     string
	typ      dto.MetricType
	labels   []string // sorted
	services []string // the programs exporting it
}

// catalog maps family names to families.
type catalog map[string]*family

// A service's metrics, built as its program builds them.
type service struct {
	name string
	// build registers the service's collectors with reg.
	build func(t *testing.T, reg *recorder)
}

// programCollectors are what every program registers besides its own:
// Go runtime and process metrics, its build (sessionmon_build_info), and
// its /metrics handler's errors.
func programCollectors(reg *recorder) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildinfo.Register(reg)
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// lagCollector is eventbus's consumer lag collector over an in-process
// JetStream holding a stream and a durable consumer, so that it reports.
func lagCollector(t *testing.T) *eventbus.LagCollector {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CATALOG", Subjects: []string{"catalog.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "catalog"}); err != nil {
		t.Fatal(err)
	}
	lag := eventbus.NewLagCollector(js)
	lag.Add("CATALOG", "catalog")
	return lag
}

// services are the programs and what they register.
var services = []service{
	{"sessionsvc", func(t *testing.T, reg *recorder) { // -store redis (the default)
		programCollectors(reg)
		rdb := testenv.Redis(t)
		rs, err := redisstore.New(rdb, redisstore.Options{Prefix: testenv.Prefix(t, rdb)})
		if err != nil {
			t.Fatal(err)
		}
		reg.MustRegister(redisstore.NewCollector(rs))
		redisstore.NewMetrics(reg)
		httpapi.NewMetrics(reg)
	}},
	{"sessionsvc-memory", func(t *testing.T, reg *recorder) { // -store memory
		programCollectors(reg)
		ms, err := memstore.New(memstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		reg.MustRegister(memstore.NewCollector(ms))
		memstore.NewMetrics(reg)
		httpapi.NewMetrics(reg)
	}},
	{"detector", func(t *testing.T, reg *recorder) {
		programCollectors(reg)
		detector.NewMetrics(reg)
		reg.MustRegister(lagCollector(t))
	}},
	{"alerter", func(t *testing.T, reg *recorder) {
		programCollectors(reg)
		alerter.NewMetrics(reg)
		console.NewMetrics(reg)
		reg.MustRegister(lagCollector(t))
	}},
	{"auditor", func(t *testing.T, reg *recorder) {
		programCollectors(reg)
		clickhouse.NewMetrics(reg)
		eventbus.NewAuditMetrics(reg)
		reg.MustRegister(lagCollector(t))
	}},
}

// recorder is a registry that remembers what was registered.
type recorder struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// materialize gives every registered vector one child, with as many
// placeholder label values as it has labels.
func (r *recorder) materialize() error {
	for _, c := range r.collectors {
		var child func(lvs ...string) error
		switch v := c.(type) {
		case *prometheus.CounterVec:
			child = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
		case *prometheus.GaugeVec:
			child = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
		case *prometheus.HistogramVec:
			child = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
		case *prometheus.SummaryVec:
			child = func(lvs ...string) error { _, err := v.GetMetricWithLabelValues(lvs...); return err }
		default:
			continue
		}
		var err error
		for n := 1; n <= 10; n++ {
			lvs := make([]string, n)
			for i := range lvs {
				lvs[i] = "placeholder"
			}
			if err = child(lvs...); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("a vector of %T takes no count of labels from 1 to 10: %w", c, err)
		}
	}
	return nil
}

// gathered is what a gatherer exports, by family name.
type gathered map[string]*family

// add records a metric family: its name, type and label names.
func (out gathered) add(mf *dto.MetricFamily) {
	f := &family{name: mf.GetName(), typ: mf.GetType()}
	seen := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if !seen[lp.GetName()] {
				seen[lp.GetName()] = true
				f.labels = append(f.labels, lp.GetName())
			}
		}
	}
	sort.Strings(f.labels)
	out[f.name] = f
}

func gather(g prometheus.Gatherer) (gathered, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := gathered{}
	for _, mf := range mfs {
		out.add(mf)
	}
	return out, nil
}

// serviceMetrics builds one service's metrics and returns what it exports
// as it starts (fresh) and every family it can export (all).
func serviceMetrics(t *testing.T, s service) (fresh, all gathered) {
	t.Helper()
	r := &recorder{Registry: prometheus.NewRegistry()}
	s.build(t, r)
	fresh, err := gather(r)
	if err != nil {
		t.Fatalf("%s: gather: %v", s.name, err)
	}
	if err := r.materialize(); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	all, err = gather(r)
	if err != nil {
		t.Fatalf("%s: gather: %v", s.name, err)
	}
	return fresh, all
}

// buildCatalog is the union of every service's families. A family two
// services export must have one type and one set of labels.
func buildCatalog(t *testing.T) catalog {
	t.Helper()
	c := catalog{}
	for _, s := range services {
		_, all := serviceMetrics(t, s)
		for name, f := range all {
			if prev, ok := c[name]; ok {
				if prev.typ != f.typ || !slices.Equal(prev.labels, f.labels) {
					t.Errorf("%s is %s%v in %v but %s%v in %s", name, prev.typ, prev.labels, prev.services, f.typ, f.labels, s.name)
				}
				prev.services = append(prev.services, s.name)
				continue
			}
			f.services = []string{s.name}
			c[name] = f
		}
	}
	return c
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// synthetic are series Prometheus makes itself for each target.
var synthetic = map[string]bool{"up": true}

// seriesFamily resolves the name of a series, as PromQL names it, to its
// family and the labels it carries: a counter or gauge by its name, a
// classic histogram by name_bucket (with le), name_sum and name_count, a
// summary by its name (with quantile), name_sum and name_count.
func (c catalog) seriesFamily(series string) (*family, []string, error) {
	if f, ok := c[series]; ok {
		switch f.typ {
		case dto.MetricType_HISTOGRAM:
			// A classic histogram has no series of its bare name (the
			// programs export no native histograms).
			return nil, nil, fmt.Errorf("%s is a histogram: query %[1]s_bucket, %[1]s_sum or %[1]s_count", series)
		case dto.MetricType_SUMMARY:
			return f, append(slices.Clone(f.labels), "quantile"), nil
		}
		return f, f.labels, nil
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		f, ok := c[base]
		if !ok {
			continue
		}
		switch {
		case f.typ == dto.MetricType_HISTOGRAM && suffix == "_bucket":
			return f, append(slices.Clone(f.labels), "le"), nil
		case f.typ == dto.MetricType_HISTOGRAM || f.typ == dto.MetricType_SUMMARY:
			if suffix != "_bucket" {
				return f, f.labels, nil
			}
		}
	}
	return nil, nil, errors.New("no sessionmon program exports " + series)
}

func TestCatalog(t *testing.T) {
	c := buildCatalog(t)
	// A few families the dashboards rely on, of the right type, so that a
	// broken catalog (nothing gathered) cannot pass the dashboards' tests.
	for name, typ := range map[string]dto.MetricType{
		"sessionmon_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"sessionmon_sessions_active":               dto.MetricType_GAUGE,
		"sessionmon_detector_alerts_total":         dto.MetricType_COUNTER,
		"sessionmon_consumer_pending_messages":     dto.MetricType_GAUGE,
		"sessionmon_audit_rows_written_total":      dto.MetricType_COUNTER,
		"go_goroutines":                            dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                dto.MetricType_COUNTER,
	} {
		f, ok := c[name]
		if !ok {
			t.Errorf("%s is not in the catalog", name)
			continue
		}
		if f.typ != typ {
			t.Errorf("%s is a %s, want %s", name, f.typ, typ)
		}
	}
	if f := c["sessionmon_detector_alerts_total"]; f != nil && !slices.Equal(f.labels, []string{"action", "rule", "severity"}) {
		t.Errorf("sessionmon_detector_alerts_total labels %v", f.labels)
	}
	if testing.Verbose() {
		names := make([]string, 0, len(c))
		for n := range c {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			f := c[n]
			t.Logf("%-60s %-9s %v %v", n, f.typ, f.labels, f.services)
		}
	}
}
