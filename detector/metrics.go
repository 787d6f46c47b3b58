package detector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/events"
)

// Metrics of the detector service and its enforcer.
type Metrics struct {
	events        map[events.Type]prometheus.Counter
	eventsVec     *prometheus.CounterVec
	warmupEvents  prometheus.Counter
	warmupSeconds prometheus.Gauge
	lag           prometheus.Histogram
	alerts        *prometheus.CounterVec
	deadLetters   *prometheus.CounterVec
	sinkErrors    prometheus.Counter
	state         *prometheus.GaugeVec
	reloads       *prometheus.CounterVec
	rulesInfo     *prometheus.GaugeVec

	evaluations     *evalCollector
	actions         *prometheus.CounterVec
	callbackSeconds prometheus.Histogram
	callbackErrors  *prometheus.CounterVec
}

// NewMetrics returns the detector's metrics, registered with reg when it
// is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "sessionmon", "detector"
	m := &Metrics{
		eventsVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Live events evaluated, by type (warm-up events are counted apart).",
		}, []string{"type"}),
		warmupEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "warmup_events_total",
			Help: "Events replayed from the stream's history to rebuild windows at start, without acting.",
		}),
		warmupSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "warmup_duration_seconds",
			Help: "How long the last warm-up took.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "event_lag_seconds",
			Help:    "Time from an event happening to the detector evaluating it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "alerts_total",
			Help: "Alerts raised and stored, by rule, severity and action.",
		}, []string{"rule", "severity", "action"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Malformed messages sent to the dead-letter stream, by the field that was wrong (time_out_of_range, time_in_future: an event time the detector refuses).",
		}, []string{"reason"}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "publish_errors_total",
			Help: "Failed attempts to store alerts or dead letters (retried until they succeed).",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "state_entries",
			Help: "Entries in the detector's state, by kind (users, sessions, ips).",
		}, []string{"kind"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rules_reloads_total",
			Help: "Rule file reloads, by result (success, failure: the running rules stay).",
		}, []string{"result"}),
		rulesInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "rules_info",
			Help: "1 for the version of the rules in force.",
		}, []string{"version"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "actions_total",
			Help: "Enforcement actions by action and result (done, failed: refused for good, retry: to be retried).",
		}, []string{"action", "result"}),
		callbackSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "callback_duration_seconds",
			Help:    "Duration of calls to the session service.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		callbackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "callback_errors_total",
			Help: "Failed calls to the session service, by kind (unavailable, rejected).",
		}, []string{"kind"}),
	}
	m.evaluations = &evalCollector{desc: prometheus.NewDesc(ns+"_"+sub+"_rule_evaluations_total",
		"Live events each rule in force was given (the events of the types it looks at), as of the last state snapshot.", []string{"rule"}, nil)}
	m.events = map[events.Type]prometheus.Counter{}
	for _, t := range events.Types {
		m.events[t] = m.eventsVec.WithLabelValues(string(t))
	}
	for _, k := range []string{"users", "sessions", "ips"} {
		m.state.WithLabelValues(k)
	}
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	for _, k := range []string{"unavailable", "rejected"} {
		m.callbackErrors.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.eventsVec, m.warmupEvents, m.warmupSeconds, m.lag, m.alerts, m.deadLetters, m.sinkErrors,
			m.state, m.reloads, m.rulesInfo, m.actions, m.callbackSeconds, m.callbackErrors, m.evaluations)
	}
	return m
}

func (m *Metrics) eventsFor(t events.Type) prometheus.Counter {
	if c, ok := m.events[t]; ok {
		return c
	}
	return m.eventsVec.WithLabelValues("other")
}

// SetState records a snapshot of the service's state.
func (m *Metrics) SetState(st Stats) {
	m.state.WithLabelValues("users").Set(float64(st.Users))
	m.state.WithLabelValues("sessions").Set(float64(st.Sessions))
	m.state.WithLabelValues("ips").Set(float64(st.IPs))
	m.evaluations.set(st.Evaluations)
}

// evalCollector exports the engine's evaluation counts, which the engine's
// goroutine snapshots (the engine is not safe for concurrent use). Counts
// only grow while the detector runs; a rule renamed by a reload starts a
// new series.
type evalCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	seen map[string]uint64 // the highest count reported per rule
}

func (c *evalCollector) set(m map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]uint64{}
	}
	for k, v := range m {
		c.seen[k] = max(c.seen[k], v)
	}
}

func (c *evalCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *evalCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for rule, n := range c.seen {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), rule)
	}
}

// Reloaded records a rules reload; version is the new rules' version on
// success.
func (m *Metrics) Reloaded(ok bool, version string) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.rulesInfo.Reset()
	m.rulesInfo.WithLabelValues(version).Set(1)
}
