// Command alerter turns the detector's alerts into incidents, notifies the
// security team (signed webhooks, Slack) and serves the review console.
//
//	alerter                 run (flags and environment: alerter -h)
//	alerter hash-password   read a password on stdin, print its argon2id hash
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionmon/sessionmon/app/alertersvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "hash-password" {
		err = alertersvc.HashPassword(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	} else {
		err = alertersvc.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alerter:", err)
		os.Exit(1)
	}
}
