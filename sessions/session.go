// Package sessions is the session domain: the session record, the policy
// (timeouts, concurrent-session limit), the Service that apps call through
// the HTTP API, and the Store interface that adapters implement atomically
// together with the outbox of events.
package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

// State is the state of a session.
type State string

// Session states. Only Active and ReauthRequired sessions are live; the
// others are tombstones kept until the absolute expiry so that a dead token
// answers session_revoked or session_expired, and its reuse is an event.
const (
	StateActive         State = "active"
	StateReauthRequired State = "reauth_required"
	StateExpired        State = "expired"
	StateTerminated     State = "terminated"
	StateRevoked        State = "revoked"
	StateEvicted        State = "evicted"
	StateReplaced       State = "replaced"
)

// Session is a session as apps see it. It never holds the token.
type Session struct {
	ID     string `json:"session_id"`
	UserID string `json:"user_id"`
	App    string `json:"app"`
	// IP and UserAgent are those of the last validated request.
	IP            string            `json:"ip"`
	UserAgent     string            `json:"user_agent"`
	CreatedAt     time.Time         `json:"created_at"`
	LastSeenAt    time.Time         `json:"last_seen_at"`
	ExpiresAt     time.Time         `json:"expires_at"`
	IdleExpiresAt time.Time         `json:"idle_expires_at"`
	State         State             `json:"state"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	// CSRFToken is the session's synchronizer token. It is returned by
	// validate (so the app can render it into forms) but never listed.
	CSRFToken string `json:"csrf_token,omitempty"`
}

// LimitMode says what happens when a user at the concurrent-session limit
// creates another session.
type LimitMode string

// Limit modes.
const (
	LimitEvictOldest LimitMode = "evict"
	LimitDeny        LimitMode = "deny"
)

// Policy is the session policy of a service.
type Policy struct {
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// MaxSessions is the concurrent-session limit per user; 0 means none.
	MaxSessions int
	LimitMode   LimitMode
	// CookieName is the name of the cookie the service hands to apps.
	CookieName string
}

// DefaultPolicy is the policy without configuration: 30 min idle, 8 h
// absolute, 5 concurrent sessions per user evicting the oldest.
func DefaultPolicy() Policy {
	return Policy{
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 8 * time.Hour,
		MaxSessions:     5,
		LimitMode:       LimitEvictOldest,
		CookieName:      "__Host-sid",
	}
}

// Validate checks the policy, naming the setting at fault.
func (p Policy) Validate() error {
	switch {
	case p.IdleTimeout <= 0:
		return fmt.Errorf("idle timeout: must be positive, got %s", p.IdleTimeout)
	case p.AbsoluteTimeout <= 0:
		return fmt.Errorf("absolute timeout: must be positive, got %s", p.AbsoluteTimeout)
	case p.AbsoluteTimeout < p.IdleTimeout:
		return fmt.Errorf("absolute timeout: %s is shorter than the idle timeout %s", p.AbsoluteTimeout, p.IdleTimeout)
	case p.MaxSessions < 0:
		return fmt.Errorf("max sessions: must be 0 (no limit) or more, got %d", p.MaxSessions)
	case p.LimitMode != LimitEvictOldest && p.LimitMode != LimitDeny:
		return fmt.Errorf("limit mode: must be %q or %q, got %q", LimitEvictOldest, LimitDeny, p.LimitMode)
	case p.CookieName == "":
		return fmt.Errorf("cookie name: must not be empty")
	}
	return nil
}

// Caller is the authenticated API client on whose behalf the service acts.
// An app acts only on sessions it created; an admin acts on all.
type Caller struct {
	Name  string
	Admin bool
}

// owner returns the app a store operation is restricted to ("" for admins).
func (c Caller) owner() string {
	if c.Admin {
		return ""
	}
	return c.Name
}

// Store keeps sessions and, atomically with each change, the event that
// records it (a transactional outbox). Implementations must make each
// method one atomic step: no session change without its event, no event
// without its change, and no race between concurrent logins of one user.
//
// Times are passed in, so the service's clock rules every timeout.
type Store interface {
	// Create stores a new session, first ending the user's expired
	// sessions and, at the limit, evicting the oldest or refusing with
	// ErrLimit. It returns the IDs of evicted sessions.
	Create(ctx context.Context, n NewSession) (evicted []string, err error)
	// Access validates a token's session and slides its idle expiry.
	Access(ctx context.Context, a Access) (*Session, error)
	// Rotate replaces a live session's token and CSRF token.
	Rotate(ctx context.Context, r Rotation) (*Session, error)
	// End ends one live session. Ending a session that is already dead
	// is not an error; with a token, its reuse is recorded.
	End(ctx context.Context, e End) error
	// EndUser ends all live sessions of a user (visible to Owner) but
	// Except, returning how many it ended.
	EndUser(ctx context.Context, e EndUser) (int, error)
	// Reauth marks a live session as needing re-authentication.
	Reauth(ctx context.Context, m Mark) error
	// List returns the live sessions of a user visible to owner.
	List(ctx context.Context, userID, owner string, now time.Time) ([]Session, error)
	// Append records an event that changes no session (auth events).
	Append(ctx context.Context, e events.Event) error
	// Ping reports whether the store can be reached.
	Ping(ctx context.Context) error
}

// Op carries what every store operation needs to write its event.
type Op struct {
	Now     time.Time
	EventID string // unique; further events of one operation add "-N"
	Actor   string // API key name of the caller
	Owner   string // app the caller is restricted to; "" for admins
}

// NewSession is a session to create.
type NewSession struct {
	Op
	Session    Session
	SecretHash SecretHash
	Policy     Policy
	// Replaced is the session this one replaces (for the event link).
	Replaced string
}

// Access is a validation of a token.
type Access struct {
	Op
	SessionID  string
	SecretHash SecretHash
	IP         string
	UserAgent  string
	Path       string
	// CSRFToken, when not empty, must match the session's token.
	CSRFToken string
}

// Rotation replaces a session's token (regenerate).
type Rotation struct {
	Access
	NewSecretHash SecretHash
	NewCSRFToken  string
}

// End ends a session, identified by its token (logout, replace) or by ID.
type End struct {
	Op
	SessionID string
	// SecretHash, when set, must match: the caller holds the token.
	SecretHash *SecretHash
	// UserID, when set, must be the session's user.
	UserID string
	// As is the state the session ends in: terminated, revoked or replaced.
	As     State
	Reason string
	Rule   string
}

// EndUser ends all of a user's sessions.
type EndUser struct {
	Op
	UserID string
	Except string
	As     State
	Reason string
}

// Mark flags a session (re-auth required).
type Mark struct {
	Op
	SessionID string
	Reason    string
	Rule      string
}

// EventType returns the event type that records a session ending in s.
func (s State) EventType() events.Type {
	switch s {
	case StateExpired:
		return events.SessionExpired
	case StateRevoked:
		return events.SessionRevoked
	case StateEvicted:
		return events.SessionEvicted
	case StateReplaced:
		return events.SessionReplaced
	default:
		return events.SessionTerminated
	}
}
