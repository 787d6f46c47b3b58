// Command sessionsvc is the session service: apps create, validate and end
// sessions over its HTTP JSON API; sessions live in Redis and every change
// is an event on NATS JetStream.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionmon/sessionmon/app/sessionsvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sessionsvc.Run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "sessionsvc:", err)
		os.Exit(1)
	}
}
