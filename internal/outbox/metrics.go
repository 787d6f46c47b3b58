// Package outbox holds what the session stores' outbox relays share: their
// metrics. redisstore and memstore relay their outboxes to JetStream the
// same way and report it under the same names, so dashboards and alerts
// work with either store.
package outbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics of an outbox relay and its expiry sweeper.
type Metrics struct {
	Published       prometheus.Counter
	PublishSeconds  prometheus.Histogram
	RelayErrors     *prometheus.CounterVec
	SweepExpired    prometheus.Counter
	PartitionsOwned prometheus.Gauge
}

// NewMetrics returns the relay metrics, registered with reg when it is not
// nil; stages are the values of relay_errors_total's stage label the relay
// uses, reported as zero from the start.
func NewMetrics(reg prometheus.Registerer, stages ...string) *Metrics {
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
			Help: "Outbox relay failures by stage.",
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
	for _, s := range stages {
		m.RelayErrors.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.Published, m.PublishSeconds, m.RelayErrors, m.SweepExpired, m.PartitionsOwned)
	}
	return m
}
