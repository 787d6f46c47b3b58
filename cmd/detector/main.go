// Command detector finds session abuse in sessionmon's event stream.
//
//	detector run [-group G -groups N] [-rules FILE] [-geoip-city DB ...]
//
// consumes the session events of its partition group from JetStream,
// raises alerts on the ALERTS stream and enforces their actions through the
// session service (SESSIONSVC_URL); SIGHUP reloads the rules file.
//
//	detector replay -events FILE [-rules FILE] [-geoip-city DB ...]
//
// replays a file of events (JSON lines, one CloudEvent each) through the
// rules on the events' own clock and prints the alerts it would raise, one
// JSON object a line: for rule tests and backtests.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionmon/sessionmon/app/detectorsvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := detectorsvc.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "detector:", err)
		os.Exit(1)
	}
}
