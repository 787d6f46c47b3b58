package memstore

import (
	"github.com/prometheus/client_golang/prometheus"

	outboxmetrics "github.com/sessionmon/sessionmon/internal/outbox"
)

// Metrics of the outbox relay and sweeper: redisstore's, since they mean
// the same; a program registers one store's.
type Metrics = outboxmetrics.Metrics

// NewMetrics returns the relay metrics, registered with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return outboxmetrics.NewMetrics(reg, "publish", "sweep")
}

// Collector reports, at scrape time, the outbox depth and the number of
// live sessions (as redisstore.Collector does), and the outbox's bound and
// the operations it refused while full.
type Collector struct {
	store    *Store
	depth    *prometheus.Desc
	active   *prometheus.Desc
	capacity *prometheus.Desc
	refused  *prometheus.Desc
}

// NewCollector returns a collector over store.
func NewCollector(store *Store) *Collector {
	return &Collector{
		store: store,
		depth: prometheus.NewDesc("sessionmon_outbox_depth",
			"Events in the outbox not yet acknowledged by JetStream.", nil, nil),
		active: prometheus.NewDesc("sessionmon_sessions_active",
			"Live sessions (active or awaiting re-authentication).", nil, nil),
		capacity: prometheus.NewDesc("sessionmon_outbox_capacity",
			"Events the in-memory outbox holds before the store refuses writes.", nil, nil),
		refused: prometheus.NewDesc("sessionmon_outbox_full_refusals_total",
			"Store operations refused (unavailable) because the in-memory outbox was full.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.active
	ch <- c.capacity
	ch <- c.refused
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.store
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.depth.Load()))
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(s.active.Load()))
	ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(s.maxOutbox))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(s.refused.Load()))
}
