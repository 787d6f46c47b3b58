package memstore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the outbox relay and sweeper. The names and types are
// redisstore's, since they mean the same; a program registers one store's.
type Metrics struct {
	Published      prometheus.Counter
	PublishSeconds prometheus.Histogram
	RelayErrors    *prometheus.CounterVec
	SweepExpired   prometheus.Counter
	// PartitionsOwned is events.Partitions while the relay runs: one
	// process relays every partition.
	PartitionsOwned prometheus.Gauge
}

// NewMetrics returns the relay metrics, registered with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "outbox", Name: "events_published_total",
			Help: "Events relayed from the outbox to JetStream and acknowledged.",
		}),
		PublishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sessionmon", Subsystem: "outbox", Name: "publish_batch_duration_seconds",
			Help:    "Time to publish one outbox batch and receive every ack.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		RelayErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "outbox", Name: "relay_errors_total",
			Help: "Outbox relay failures by stage (publish, sweep).",
		}, []string{"stage"}),
		SweepExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "sessions", Name: "swept_total",
			Help: "Sessions ended by the expiry sweeper.",
		}),
		PartitionsOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sessionmon", Subsystem: "outbox", Name: "partitions_owned",
			Help: "Partitions whose outbox this instance relays.",
		}),
	}
	for _, s := range []string{"publish", "sweep"} {
		m.RelayErrors.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.Published, m.PublishSeconds, m.RelayErrors, m.SweepExpired, m.PartitionsOwned)
	}
	return m
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
