package alerter

import (
	"context"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

// Store keeps incidents and the grouping index (which incident a group key
// currently points to), with optimistic concurrency: every read returns a
// revision and every write names the revision it replaces, so that a
// reviewer's decision and a repeat alert arriving at once cannot overwrite
// each other. Several alerter instances may share one store.
type Store interface {
	// Get returns an incident and its revision, or ErrNotFound.
	Get(ctx context.Context, id string) (*Incident, uint64, error)
	// Create stores a new incident, or returns ErrExists.
	Create(ctx context.Context, inc *Incident) (uint64, error)
	// Update replaces the incident at revision rev, or returns ErrConflict.
	Update(ctx context.Context, inc *Incident, rev uint64) (uint64, error)
	// Delete removes the incident at revision rev, or returns ErrConflict.
	Delete(ctx context.Context, id string, rev uint64) error
	// Group returns the incident a group key points to, or ErrNotFound.
	Group(ctx context.Context, key string) (id string, rev uint64, err error)
	// SetGroup points a group key at an incident, replacing revision rev
	// (0: the key must not exist), or returns ErrConflict.
	SetGroup(ctx context.Context, key, id string, rev uint64) error
	// DeleteGroup removes a group key at revision rev, or returns
	// ErrConflict.
	DeleteGroup(ctx context.Context, key string, rev uint64) error
	// Watch calls fn with every stored incident, then calls loaded once,
	// then calls fn with every change (inc is nil when the incident was
	// deleted) until ctx ends. Calls are sequential.
	Watch(ctx context.Context, fn func(id string, inc *Incident, rev uint64), loaded func()) error
}

// ActionPublisher publishes reviewers' actions for the audit log; a nil
// error means the action is stored (eventbus.AlertPublisher).
type ActionPublisher interface {
	PublishAction(ctx context.Context, a events.Action) error
}

// Filter selects incidents for the console's list. Empty fields match
// everything.
type Filter struct {
	Severity string
	Rule     string
	// States: any of these; none means every state.
	States []State
	// User matches the user ID or the IP, case-insensitively, as a
	// substring.
	User string
	// From and To: incidents with alerts in [From, To].
	From, To time.Time
	// Limit caps the answer (default 200).
	Limit int
}
