package memstore_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// The session service over the in-memory store, as a one-process program
// wires it: the store, its relay to JetStream (which also sweeps), and
// the metrics, which have redisstore's names (register one store's).
func Example() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	store, err := memstore.New(memstore.Options{}) // DefaultMaxOutbox
	if err != nil {
		log.Error("store", "err", err)
		return
	}
	reg.MustRegister(memstore.NewCollector(store))
	svc, err := sessions.NewService(store, sessions.DefaultPolicy(), nil)
	if err != nil {
		log.Error("service", "err", err)
		return
	}
	_ = svc // serve it with httpapi.Handler

	nc, err := nats.Connect(nats.DefaultURL, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		log.Error("nats", "err", err)
		return
	}
	defer nc.Close()
	pub, err := eventbus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		log.Error("publisher", "err", err)
		return
	}
	relay := memstore.NewRelay(store, pub, log, memstore.NewMetrics(reg), memstore.RelayConfig{})
	// Stop the relay after the HTTP server has drained, so that it flushes
	// what the last requests wrote.
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	go func() { _ = relay.Run(relayCtx) }()
}
