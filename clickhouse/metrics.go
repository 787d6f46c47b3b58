package clickhouse

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the ClickHouse side of the audit writer, in namespace
// sessionmon, subsystem audit.
type Metrics struct {
	rows     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// NewMetrics makes the metrics and registers them with reg when it is not
// nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "audit", Name: "rows_written_total",
			Help: "Rows ClickHouse confirmed, by table (a retried batch counts once per success).",
		}, []string{"table"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sessionmon", Subsystem: "audit", Name: "batch_duration_seconds",
			Help:    "Time of a successful batch insert into ClickHouse, by table.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"table"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "audit", Name: "clickhouse_errors_total",
			Help: "Failed ClickHouse calls, by operation (insert, ping, migrate, query).",
		}, []string{"op"}),
	}
	for _, t := range []string{TableSessionEvents, TableAlerts, TableActions} {
		m.rows.WithLabelValues(t)
		m.duration.WithLabelValues(t)
	}
	for _, op := range []string{"insert", "ping", "migrate", "query"} {
		m.errors.WithLabelValues(op)
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.duration, m.errors)
	}
	return m
}
