// Command sessionmon runs the whole pipeline in one process, with nothing
// else to install or start: NATS with JetStream embedded, the session
// service over an in-memory store, the detector, the audit log (files, or
// ClickHouse with CLICKHOUSE_URL), the alerter and its review console, and
// simulated users and attacks:
//
//	go run ./cmd/sessionmon
//
// It prints the console's address and the demo reviewer's credentials.
// `sessionmon -h` lists the settings; each is a flag with an environment
// fallback. To run the services on their own against real Redis, NATS and
// ClickHouse, see cmd/sessionsvc, cmd/detector, cmd/auditor and
// cmd/alerter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionmon/sessionmon/app/standalone"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := standalone.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sessionmon:", err)
		os.Exit(1)
	}
}
