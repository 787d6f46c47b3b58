package alerter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

// Notifier delivers notifications somewhere (a webhook, a chat). Notify
// makes one attempt; the service retries. An error wrapped with Permanent
// is not retried; one wrapped with RetryAfter is retried no sooner than
// it says.
type Notifier interface {
	Notify(ctx context.Context, n Notification) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n Notification) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n Notification) error { return f(ctx, n) }

// Notification is what notifiers are told.
type Notification struct {
	// DeliveryID is unique per incident, notifier and reason: receivers
	// de-duplicate on it.
	DeliveryID string
	// Reason is ReasonOpened or ReasonEscalated.
	Reason   string
	Incident IncidentSummary
	// Alert is the latest alert of the incident.
	Alert events.Alert
	// URL is the incident's page in the review console, when the console's
	// address is configured.
	URL string
}

// IncidentSummary is the part of an incident notifications carry.
type IncidentSummary struct {
	ID         string    `json:"id"`
	Rule       string    `json:"rule"`
	RuleType   string    `json:"rule_type"`
	Severity   string    `json:"severity"`
	State      State     `json:"state"`
	UserID     string    `json:"user_id,omitempty"`
	IP         string    `json:"ip,omitempty"`
	Count      int       `json:"count"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	SessionIDs []string  `json:"session_ids,omitempty"`
}

// Summary returns the summary of an incident.
func (inc *Incident) Summary() IncidentSummary {
	return IncidentSummary{
		ID: inc.ID, Rule: inc.Rule, RuleType: inc.RuleType, Severity: inc.Severity, State: inc.State,
		UserID: inc.UserID, IP: inc.IP, Count: inc.Count, FirstSeen: inc.FirstSeen, LastSeen: inc.LastSeen,
		SessionIDs: inc.SessionIDs,
	}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks an error that retrying cannot fix (the receiver refused
// the notification, e.g. with a 4xx answer).
func Permanent(err error) error { return &permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks an error after which the receiver asked to wait (HTTP
// 429 or 503 with Retry-After).
func RetryAfter(err error, d time.Duration) error { return &retryAfterError{err, d} }

// Retry is how notifications are retried: Attempts in all, waiting
// Initial, then twice as long each time up to Max, with ±20% jitter.
type Retry struct {
	Attempts int
	Initial  time.Duration
	Max      time.Duration
}

// DefaultRetry tries 8 times over about two minutes.
func DefaultRetry() Retry { return Retry{Attempts: 8, Initial: time.Second, Max: time.Minute} }

// Validate checks the settings.
func (r Retry) Validate() error {
	switch {
	case r.Attempts < 1 || r.Attempts > 100:
		return fmt.Errorf("attempts: must be 1 to 100, got %d", r.Attempts)
	case r.Initial <= 0:
		return fmt.Errorf("initial: must be positive, got %s", r.Initial)
	case r.Max < r.Initial:
		return fmt.Errorf("max: must be at least initial (%s), got %s", r.Initial, r.Max)
	}
	return nil
}

// Delay is the wait before attempt n+1 after n failed attempts (n ≥ 1),
// honouring a RetryAfter in err up to Max.
func (r Retry) Delay(n int, err error) time.Duration {
	d := r.Initial
	for i := 1; i < n && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > d {
		d = min(ra.after, r.Max)
	}
	return d
}

// Router says which notifiers hear of incidents of each severity.
type Router struct {
	notifiers map[string]Notifier
	routes    map[string][]string // severity (or "default") -> notifier names
}

// DefaultRoute is the route of severities without their own.
const DefaultRoute = "default"

// NewRouter checks that every route names a known notifier and severity.
func NewRouter(notifiers map[string]Notifier, routes map[string][]string) (*Router, error) {
	for sev, names := range routes {
		if sev != DefaultRoute && SeverityRank(sev) == 0 {
			return nil, fmt.Errorf("routes: %q is not a severity (want low, medium, high, critical or default)", sev)
		}
		for _, n := range names {
			if _, ok := notifiers[n]; !ok {
				return nil, fmt.Errorf("routes: %s: no notifier named %q", sev, n)
			}
		}
	}
	return &Router{notifiers: notifiers, routes: routes}, nil
}

// Route returns the names of the notifiers of a severity.
func (r *Router) Route(severity string) []string {
	if r == nil {
		return nil
	}
	if names, ok := r.routes[severity]; ok {
		return names
	}
	return r.routes[DefaultRoute]
}

// Notifier returns a notifier by name.
func (r *Router) Notifier(name string) (Notifier, bool) {
	if r == nil {
		return nil, false
	}
	n, ok := r.notifiers[name]
	return n, ok
}
