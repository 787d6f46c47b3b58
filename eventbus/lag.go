package eventbus

import (
	"context"
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
	stream    string
	consumers func() []string
	pending   *prometheus.Desc
	ackPend   *prometheus.Desc
}

// NewLagCollector returns a collector for the consumers of stream that
// consumers lists (called at each scrape).
func NewLagCollector(js jetstream.JetStream, stream string, consumers func() []string) *LagCollector {
	return &LagCollector{js: js, stream: stream, consumers: consumers,
		pending: prometheus.NewDesc("sessionmon_consumer_pending_messages",
			"Messages stored in the stream that the consumer has not been delivered yet (its lag).", []string{"stream", "consumer"}, nil),
		ackPend: prometheus.NewDesc("sessionmon_consumer_ack_pending_messages",
			"Messages delivered to the consumer and not yet acknowledged.", []string{"stream", "consumer"}, nil),
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
	for _, name := range c.consumers() {
		cons, err := c.js.Consumer(ctx, c.stream, name)
		if err != nil {
			continue
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(ci.NumPending), c.stream, name)
		ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(ci.NumAckPending), c.stream, name)
	}
}
