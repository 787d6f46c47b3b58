// Command auditor writes sessionmon's audit trail into ClickHouse and
// answers compliance questions from it.
//
//	auditor [serve]       consume SESSIONS and ALERTS into ClickHouse (the default)
//	auditor migrate       apply the schema migrations and exit
//	auditor export        a user's session history, as JSON or CSV
//	auditor check-endings report sessions without exactly one ending (exit 2 if any)
//	auditor events        events of a time range as JSON lines (for detector replay)
//
// Every setting is a flag with an environment fallback; `auditor <command>
// -h` lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessionmon/sessionmon/app/auditsvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := auditsvc.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "auditor:", err)
	var v *auditsvc.ViolationsError
	if errors.As(err, &v) {
		os.Exit(2)
	}
	os.Exit(1)
}
