package detector

import (
	"fmt"
	"time"
)

// Event times the detector refuses.
//
// events.Decode takes any RFC 3339 time (years 0 to 9999). The engine
// takes any time.Time without a panic, but it runs on the newest event
// time it has seen: one event dated in the future moves every window and
// cooldown forward (state is dropped as idle, credential stuffing counts
// no one as recent, gc waits for the clock), and one from before 2000 is
// a producer without a clock (1970) or a forgery. Either is treated as a
// malformed event: the service dead-letters it with a counted reason and
// goes on; a replay stops at it. The bounds hold no wall clock, so that
// replays of old files are deterministic; the service adds its own
// bound on the future (ServiceConfig.MaxFuture).
var (
	minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEventTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// DefaultMaxFuture is how far ahead of the service's clock an event time
// may be: clock skew between hosts, no more. (The audit writer allows a
// day, for it stores events; the detector acts on them, and each minute
// an event is ahead moves the engine's windows by as much.)
const DefaultMaxFuture = 5 * time.Minute

// Dead-letter reasons of refused event times, as the audit writer names
// them.
const (
	ReasonTimeOutOfRange = "time_out_of_range"
	ReasonTimeInFuture   = "time_in_future"
)

// TimeError is why the detector refuses an event's time.
type TimeError struct {
	Reason string // ReasonTimeOutOfRange or ReasonTimeInFuture
	Time   time.Time
	Latest time.Time // ReasonTimeInFuture: the latest time taken then
}

func (e *TimeError) Error() string {
	// Format, not MarshalText: the time may be past year 9999 in UTC.
	t := e.Time.Format(time.RFC3339Nano)
	if e.Reason == ReasonTimeInFuture {
		return fmt.Sprintf("event time %s is in the future: the latest the detector takes now is %s", t, e.Latest.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("event time %s is outside the times the detector takes, %s to %s", t,
		minEventTime.Format(time.DateOnly), maxEventTime.Format(time.DateOnly))
}

// CheckTime returns a *TimeError when the detector does not evaluate
// events at t: before 2000-01-01 or from 2200-01-01 on. It uses no clock,
// so replays of old files check the same.
func CheckTime(t time.Time) error {
	if t.Before(minEventTime) || !t.Before(maxEventTime) {
		return &TimeError{Reason: ReasonTimeOutOfRange, Time: t}
	}
	return nil
}

// checkLive is CheckTime, and at most maxFuture ahead of now.
func checkLive(t, now time.Time, maxFuture time.Duration) error {
	if err := CheckTime(t); err != nil {
		return err
	}
	if limit := now.Add(maxFuture); t.After(limit) {
		return &TimeError{Reason: ReasonTimeInFuture, Time: t, Latest: limit}
	}
	return nil
}
