package redisstore

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/internal/outbox"

	"github.com/sessionmon/sessionmon/events"
)

// Metrics of the outbox relay and sweeper (shared with memstore).
type Metrics = outbox.Metrics

// NewMetrics returns the relay metrics, registered with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return outbox.NewMetrics(reg, "lease", "read", "decode", "publish", "trim", "sweep")
}

// Collector reports, at scrape time, the outbox depth and the number of
// live sessions, read from Redis.
type Collector struct {
	store  *Store
	depth  *prometheus.Desc
	active *prometheus.Desc
}

// NewCollector returns a collector over store.
func NewCollector(store *Store) *Collector {
	return &Collector{
		store: store,
		depth: prometheus.NewDesc("sessionmon_outbox_depth",
			"Events in the Redis outbox not yet acknowledged by JetStream.", nil, nil),
		active: prometheus.NewDesc("sessionmon_sessions_active",
			"Live sessions (active or awaiting re-authentication).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.active }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pipe := c.store.rdb.Pipeline()
	var xl, zc []interface{ Val() int64 }
	for p := 0; p < events.Partitions; p++ {
		xl = append(xl, pipe.XLen(ctx, c.store.OutboxKey(p)))
		zc = append(zc, pipe.ZCard(ctx, c.store.DueKey(p)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.depth, err)
		ch <- prometheus.NewInvalidMetric(c.active, err)
		return
	}
	var depth, active int64
	for i := range xl {
		depth += xl[i].Val()
		active += zc[i].Val()
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(depth))
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(active))
}
