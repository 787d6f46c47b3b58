package dashboards

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Grafana interpolates these in PromQL before Prometheus sees it; the test
// gives each a value of the right kind so that the result parses.
// Dashboard variables (query, custom) are replaced by their "All" value
// (or a plain value when they have none).
var grafanaPromVars = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "6h",
}

// promVarRef matches $name, ${name} and ${name:format}.
var promVarRef = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// interpolatePromQL does Grafana's part for the tests.
func interpolatePromQL(d *dashboard, expr string) (string, error) {
	var err error
	out := promVarRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := promVarRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if v, ok := grafanaPromVars[name]; ok {
			return v
		}
		for _, v := range d.Templating.List {
			if v.Name != name {
				continue
			}
			switch {
			case v.Type == "datasource":
				err = fmt.Errorf("data-source variable $%s inside a query", name)
			case v.IncludeAll && v.AllValue != "":
				return v.AllValue
			}
			return "value"
		}
		err = fmt.Errorf("unknown variable $%s", name)
		return ref
	})
	return out, err
}

var promParser = parser.NewParser(parser.Options{})

// checker checks PromQL against the catalog of exported metrics.
type checker struct {
	c    catalog
	errs []string
	used map[string]bool // families the queries name
}

func (ck *checker) errorf(format string, args ...any) {
	ck.errs = append(ck.errs, fmt.Sprintf(format, args...))
}

// selectorLabels checks a selector's metric and matchers and returns the
// labels its series carry.
func (ck *checker) selectorLabels(name string, matchers []*labels.Matcher) map[string]bool {
	out := map[string]bool{}
	for _, l := range targetLabels {
		out[l] = true
	}
	if name == "" {
		for _, m := range matchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
	}
	if name == "" {
		// A selector by a name pattern ({__name__=~"sessionmon_.+"})
		// must at least match exported metrics.
		var re *labels.Matcher
		for _, m := range matchers {
			if m.Name == labels.MetricName {
				re = m
			}
		}
		if re == nil {
			ck.errorf("a selector without a metric name: %v", matchers)
			return out
		}
		n := 0
		for fam := range ck.c {
			if re.Matches(fam) {
				n++
			}
		}
		if n == 0 {
			ck.errorf("%s matches no exported metric", re)
		}
		return out
	}
	var fl []string
	if synthetic[name] {
		ck.used[name] = true
	} else {
		f, l, err := ck.c.seriesFamily(name)
		if err != nil {
			ck.errorf("%v", err)
			return out
		}
		ck.used[f.name] = true
		fl = l
	}
	for _, l := range fl {
		out[l] = true
	}
	for _, m := range matchers {
		if m.Name != labels.MetricName && !out[m.Name] {
			ck.errorf("%s has no label %q (it has %v)", name, m.Name, sortedKeys(out))
		}
	}
	return out
}

// labelsOf checks an expression and returns the labels of its result
// series.
func (ck *checker) labelsOf(e parser.Expr) map[string]bool {
	switch e := e.(type) {
	case *parser.VectorSelector:
		return ck.selectorLabels(e.Name, e.LabelMatchers)
	case *parser.MatrixSelector:
		return ck.labelsOf(e.VectorSelector)
	case *parser.SubqueryExpr:
		return ck.labelsOf(e.Expr)
	case *parser.ParenExpr:
		return ck.labelsOf(e.Expr)
	case *parser.UnaryExpr:
		return ck.labelsOf(e.Expr)
	case *parser.StepInvariantExpr:
		return ck.labelsOf(e.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}
	case *parser.Call:
		out := map[string]bool{}
		for _, a := range e.Args {
			maps.Copy(out, ck.labelsOf(a))
		}
		switch e.Func.Name {
		case "histogram_quantile":
			if !out["le"] {
				ck.errorf("histogram_quantile over series without le (group by le): %s", e)
			}
			delete(out, "le")
		case "label_replace":
			if s, ok := e.Args[1].(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
		case "time", "vector", "scalar":
			return map[string]bool{}
		}
		return out
	case *parser.AggregateExpr:
		in := ck.labelsOf(e.Expr)
		if e.Param != nil {
			ck.labelsOf(e.Param)
		}
		if e.Without {
			out := maps.Clone(in)
			for _, l := range e.Grouping {
				delete(out, l)
			}
			return out
		}
		out := map[string]bool{}
		for _, l := range e.Grouping {
			if !in[l] {
				ck.errorf("%s by (%s): the series aggregated have no label %s (they have %v)", e.Op, strings.Join(e.Grouping, ", "), l, sortedKeys(in))
			}
			out[l] = true
		}
		if e.Op == parser.COUNT_VALUES {
			if s, ok := e.Param.(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
		}
		return out
	case *parser.BinaryExpr:
		lhs, rhs := ck.labelsOf(e.LHS), ck.labelsOf(e.RHS)
		vm := e.VectorMatching
		if vm != nil {
			for _, l := range vm.MatchingLabels {
				if vm.On && (!lhs[l] || !rhs[l]) {
					ck.errorf("on(%s): both sides need the label %s", strings.Join(vm.MatchingLabels, ", "), l)
				}
			}
			if vm.Card == parser.CardOneToMany {
				lhs, rhs = rhs, lhs
			}
		}
		if e.LHS.Type() == parser.ValueTypeScalar {
			return rhs
		}
		if vm != nil && vm.On && vm.Card == parser.CardOneToOne {
			out := map[string]bool{}
			for _, l := range vm.MatchingLabels {
				out[l] = true
			}
			return out
		}
		out := maps.Clone(lhs)
		if vm != nil {
			for _, l := range vm.Include {
				out[l] = true
			}
		}
		return out
	}
	ck.errorf("unexpected expression %T: %s", e, e)
	return map[string]bool{}
}

func sortedKeys(m map[string]bool) []string {
	ks := slices.Collect(maps.Keys(m))
	sort.Strings(ks)
	return ks
}

// legendRef matches {{label}} in a legend format.
var legendRef = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// labelValuesQuery is a Prometheus variable query of Grafana's:
// label_values(selector, label) or label_values(label).
var labelValuesQuery = regexp.MustCompile(`^label_values\((?:(.+),\s*)?(\w+)\)$`)

func TestPromQL(t *testing.T) {
	c := buildCatalog(t)
	ds := loadDashboards(t)
	ck := &checker{c: c, used: map[string]bool{}}
	n := 0
	for _, q := range queries(t, ds) {
		if q.ds.Type != typePrometheus {
			continue
		}
		n++
		ck.errs = nil
		expr, err := interpolatePromQL(q.dash, q.target.Expr)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		e, err := promParser.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %s\n%v", q, expr, err)
			continue
		}
		if e.Type() != parser.ValueTypeVector && e.Type() != parser.ValueTypeScalar {
			t.Errorf("%s: a panel query gives a vector or a scalar, this gives a %s", q, e.Type())
		}
		out := ck.labelsOf(e)
		for _, m := range legendRef.FindAllStringSubmatch(q.target.LegendFormat, -1) {
			if !out[m[1]] {
				ck.errorf("legend {{%s}}: the result has no such label (it has %v)", m[1], sortedKeys(out))
			}
		}
		for _, msg := range ck.errs {
			t.Errorf("%s: %s\n  %s", q, msg, q.target.Expr)
		}
	}
	// Variables' queries select exported metrics too.
	for _, d := range ds {
		for _, v := range d.Templating.List {
			if v.Type != "query" || v.Datasource == nil || v.Datasource.Type != typePrometheus {
				continue
			}
			var def string
			if err := json.Unmarshal(v.Query, &def); err != nil {
				var obj struct{ Query string }
				if err := json.Unmarshal(v.Query, &obj); err != nil {
					t.Errorf("%s: variable %s: query %s", d.file, v.Name, v.Query)
					continue
				}
				def = obj.Query
			}
			if def != v.Definition {
				t.Errorf("%s: variable %s: query %q and definition %q differ", d.file, v.Name, def, v.Definition)
			}
			m := labelValuesQuery.FindStringSubmatch(def)
			if m == nil {
				t.Errorf("%s: variable %s: %q is not label_values(selector, label)", d.file, v.Name, def)
				continue
			}
			ck.errs = nil
			avail := map[string]bool{}
			for _, l := range targetLabels {
				avail[l] = true
			}
			if m[1] != "" {
				ms, err := promParser.ParseMetricSelector(m[1])
				if err != nil {
					t.Errorf("%s: variable %s: %s: %v", d.file, v.Name, m[1], err)
					continue
				}
				avail = ck.selectorLabels("", ms)
			}
			if !avail[m[2]] {
				ck.errorf("no label %s to list", m[2])
			}
			for _, msg := range ck.errs {
				t.Errorf("%s: variable %s: %s", d.file, v.Name, msg)
			}
		}
	}
	if n == 0 {
		t.Fatal("no Prometheus queries")
	}
	t.Logf("%d PromQL queries name %d metric families", n, len(ck.used))
	// What the issue asks the operations dashboard to show, by the
	// families that show it.
	for what, fams := range map[string][]string{
		"request rate and latency":       {"sessionmon_http_requests_total", "sessionmon_http_request_duration_seconds"},
		"sessions created":               {"sessionmon_sessions_created_total"},
		"sessions validated and refused": {"sessionmon_sessions_validations_total"},
		"validate latency":               {"sessionmon_sessions_validate_duration_seconds"},
		"active sessions":                {"sessionmon_sessions_active"},
		"outbox depth":                   {"sessionmon_outbox_depth"},
		"events published":               {"sessionmon_outbox_events_published_total"},
		"consumer lag":                   {"sessionmon_consumer_pending_messages"},
		"detector events":                {"sessionmon_detector_events_total"},
		"alerts per rule":                {"sessionmon_detector_alerts_total"},
		"actions and failures":           {"sessionmon_detector_actions_total", "sessionmon_detector_callback_errors_total"},
		"dead letters":                   {"sessionmon_detector_dead_letters_total", "sessionmon_audit_dead_letters_total"},
		"warm-up":                        {"sessionmon_detector_warmup_duration_seconds", "sessionmon_detector_warmup_events_total"},
		"alerts by severity and state":   {"sessionmon_alerter_alerts_received_total", "sessionmon_alerter_incidents"},
		"notification failures":          {"sessionmon_alerter_notifications_failed_total"},
		"audit rows written":             {"sessionmon_audit_rows_written_total"},
		"audit batch latency":            {"sessionmon_audit_batch_duration_seconds"},
		"ClickHouse errors":              {"sessionmon_audit_clickhouse_errors_total"},
		"Go runtime and process":         {"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds", "process_cpu_seconds_total", "process_resident_memory_bytes"},
	} {
		for _, f := range fams {
			if !ck.used[f] {
				t.Errorf("%s: no panel queries %s", what, f)
			}
		}
	}
	if testing.Verbose() {
		var unused []string
		for name := range c {
			if !ck.used[name] && strings.HasPrefix(name, "sessionmon_") {
				unused = append(unused, name)
			}
		}
		sort.Strings(unused)
		t.Logf("exported and on no panel: %v", unused)
	}
}

// The checker must catch what it is for: a query that a typo makes
// silently empty.
func TestPromQLCheckerCatches(t *testing.T) {
	c := buildCatalog(t)
	for _, tc := range []struct{ expr, want string }{
		{`rate(sessionmon_sessions_creatd_total[1m])`, "no sessionmon program exports sessionmon_sessions_creatd_total"},
		{`sessionmon_http_request_duration_seconds`, "is a histogram"},
		{`rate(sessionmon_sessions_created_total_bucket[1m])`, "no sessionmon program exports"},
		{`sessionmon_http_requests_total{status="500"}`, `has no label "status"`},
		{`sum by (reason) (rate(sessionmon_sessions_validations_total[1m]))`, "have no label reason"},
		{`histogram_quantile(0.9, sum by (route) (rate(sessionmon_http_request_duration_seconds_bucket[1m])))`, "without le"},
		{`{__name__=~"nothing_.+"}`, "matches no exported metric"},
	} {
		ck := &checker{c: c, used: map[string]bool{}}
		e, err := promParser.ParseExpr(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		ck.labelsOf(e)
		if !slices.ContainsFunc(ck.errs, func(s string) bool { return strings.Contains(s, tc.want) }) {
			t.Errorf("%s: errors %q, want one containing %q", tc.expr, ck.errs, tc.want)
		}
	}
	ck := &checker{c: c, used: map[string]bool{}}
	e, _ := promParser.ParseExpr(`sum by (route) (rate(sessionmon_http_requests_total{code=~"5..", job="x"}[5m]))`)
	if out := ck.labelsOf(e); len(ck.errs) > 0 || !slices.Equal(sortedKeys(out), []string{"route"}) {
		t.Errorf("a correct query: errors %q, labels %v", ck.errs, sortedKeys(out))
	}
}
