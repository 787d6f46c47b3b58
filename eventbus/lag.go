package eventbus

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// LagCollector reports, at scrape time, how far durable consumers are
// behind their stream: sessionmon_consumer_pending_messages (stored, not
// yet delivered) and sessionmon_consumer_ack_pending_messages (delivered,
// not yet acknowledged), labelled by stream and consumer. Any sessionmon
// consumer registers one for its consumers.
type LagCollector struct {
	js        jetstream.JetStream
	mu        sync.Mutex
	consumers [][2]string // stream, consumer
	pending   *prometheus.Desc
	ackPend   *prometheus.Desc
}

// NewLagCollector returns a collector of no consumers yet; Add them.
func NewLagCollector(js jetstream.JetStream) *LagCollector {
	return &LagCollector{js: js,
		pending: prometheus.NewDesc("sessionmon_consumer_pending_messages",
			"Messages stored in the stream that the consumer has not been delivered yet (its lag).", []string{"stream", "consumer"}, nil),
		ackPend: prometheus.NewDesc("sessionmon_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil),
	}
}

// Add reports the lag of consumers of stream.
func (c *LagCollector) Add(stream string, consumers ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range consumers {
		c.consumers = append(c.consumers, [2]string{stream, name})
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
}

// Collect implements prometheus.Collector. A consumer that cannot be read
// (NATS down) is left out of the scrape.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	consumers := slices.Clone(c.consumers)
	c.mu.Unlock()
	for _, sc := range consumers {
		stream, name := sc[0], sc[1]
		cons, err := c.js.Consumer(ctx, stream, name)
		if err != nil {
			continue
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending), stream, name)
		ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(ci.NumAckPending), stream, name)
	}
}
