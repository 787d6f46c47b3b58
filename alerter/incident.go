// Package alerter turns detector alerts into incidents for people: repeats
// of one incident (same rule, same user or IP, within a window) are grouped,
// each incident has a state a reviewer moves (open, acknowledged, resolved,
// false positive) with who and when, and new incidents are routed to
// notifiers by severity, with retries.
//
// This package holds the domain: incidents, their state machine, grouping,
// routing and the service that applies them. Storage (a NATS JetStream
// key-value bucket, in eventbus), notifiers (webhook, Slack: alerter/notify)
// and the review console (console) are adapters around it.
package alerter

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionmon/sessionmon/events"
)

// State is where an incident is in its review.
type State string

// States. Open and acknowledged incidents are active: repeats of the alert
// join them. Resolved and false-positive incidents are closed: a repeat
// opens a new incident.
const (
	Open          State = "open"
	Acknowledged  State = "acknowledged"
	Resolved      State = "resolved"
	FalsePositive State = "false_positive"
)

// States lists every state, in review order.
var States = []State{Open, Acknowledged, Resolved, FalsePositive}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Active reports whether repeats of the alert join the incident.
func (s State) Active() bool { return s == Open || s == Acknowledged }

// Decision is what a reviewer decides about an incident; each moves it to
// a state, and each is published as an action with the same name.
type Decision string

// Decisions.
const (
	Acknowledge       Decision = "acknowledge"
	Resolve           Decision = "resolve"
	MarkFalsePositive Decision = "false_positive"
	Reopen            Decision = "reopen"
)

// Decisions lists every decision.
var Decisions = []Decision{Acknowledge, Resolve, MarkFalsePositive, Reopen}

// transitions: the states each decision may be taken from, and where it
// leads.
var transitions = map[Decision]struct {
	from []State
	to   State
}{
	Acknowledge:       {[]State{Open}, Acknowledged},
	Resolve:           {[]State{Open, Acknowledged}, Resolved},
	MarkFalsePositive: {[]State{Open, Acknowledged}, FalsePositive},
	Reopen:            {[]State{Acknowledged, Resolved, FalsePositive}, Open},
}

// Valid reports whether d is a known decision.
func (d Decision) Valid() bool { _, ok := transitions[d]; return ok }

// From returns the state a decision leads to from state s, or an error
// that says why it cannot be taken.
func (d Decision) From(s State) (State, error) {
	t, ok := transitions[d]
	if !ok {
		return "", fmt.Errorf("%w: unknown decision %q", ErrInvalid, d)
	}
	if !slices.Contains(t.from, s) {
		return "", fmt.Errorf("%w: cannot %s an incident that is %s", ErrTransition, strings.ReplaceAll(string(d), "_", " "), strings.ReplaceAll(string(s), "_", " "))
	}
	return t.to, nil
}

// Allowed returns the decisions that can be taken from state s.
func Allowed(s State) []Decision {
	var out []Decision
	for _, d := range Decisions {
		if slices.Contains(transitions[d].from, s) {
			out = append(out, d)
		}
	}
	return out
}

// Session actions a reviewer takes from an incident; they are recorded on
// the incident and published as actions like decisions.
const (
	ActionRevokeSession = "revoke_session"
	ActionRevokeUser    = "revoke_user"
	ActionReauth        = "reauth"
)

// Errors.
var (
	ErrNotFound   = errors.New("not found")
	ErrExists     = errors.New("already exists")
	ErrConflict   = errors.New("changed concurrently")
	ErrTransition = errors.New("transition not allowed")
	ErrInvalid    = errors.New("invalid")
)

// Severities in increasing order.
var Severities = []string{"low", "medium", "high", "critical"}

// SeverityRank orders severities: 1 for low to 4 for critical, 0 for
// anything else.
func SeverityRank(s string) int { return slices.Index(Severities, s) + 1 }

// Limits on what an incident keeps, so that a storm of repeats cannot grow
// one without bound (the audit log keeps everything).
const (
	MaxAlertsKept   = 20   // full alerts: the first and the latest ones
	MaxAlertIDsKept = 1000 // IDs, to recognise redelivered alerts
	MaxSessionsKept = 50
	MaxChangesKept  = 500
	MaxEnforcements = 50
	MaxNoteLen      = 2000
)

// Incident is a group of alerts of one rule about one user (or IP), with
// its review state and notification deliveries.
type Incident struct {
	// ID is the ID of the alert that opened it (see IncidentID).
	ID string `json:"id"`
	// Key is the grouping key: rule and user (or IP), hashed.
	Key      string `json:"key"`
	Rule     string `json:"rule"`
	RuleType string `json:"rule_type"`
	// Severity is the highest severity of its alerts.
	Severity string `json:"severity"`
	UserID   string `json:"user_id,omitempty"`
	IP       string `json:"ip,omitempty"`
	State    State  `json:"state"`
	// FirstSeen and LastSeen are the times of its earliest and latest
	// alerts (event time).
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Count is how many alerts it grouped.
	Count int `json:"count"`
	// Alerts are the first alert and the latest ones, oldest first.
	Alerts     []events.Alert `json:"alerts"`
	AlertIDs   []string       `json:"alert_ids"`
	SessionIDs []string       `json:"session_ids,omitempty"`
	// Changes are the decisions and session actions taken, oldest first.
	Changes    []Change   `json:"changes,omitempty"`
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// Enforcements are the outcomes of the detector's actions on the
	// incident's alerts (reauth, revocations), as the enforcer reported
	// them.
	Enforcements []Enforcement `json:"enforcements,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
}

// Change is one thing a reviewer did about an incident.
type Change struct {
	// ActionID is the ID of the action published for it.
	ActionID string    `json:"action_id"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`
	// Action is a Decision or a session action (ActionRevokeSession, ...).
	Action    string `json:"action"`
	From      State  `json:"from,omitempty"`
	To        State  `json:"to,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Result    string `json:"result"`
	Error     string `json:"error,omitempty"`
	Count     int    `json:"count,omitempty"`
	Note      string `json:"note,omitempty"`
	// Recorded: the action is stored in the ALERTS stream (for the audit
	// log). Until then the alerter keeps republishing it.
	Recorded bool `json:"recorded"`
}

// Enforcement is the outcome of the detector's action on one alert.
type Enforcement struct {
	ActionID  string    `json:"action_id"`
	AlertID   string    `json:"alert_id"`
	Time      time.Time `json:"time"`
	Action    string    `json:"action"`
	SessionID string    `json:"session_id,omitempty"`
	Result    string    `json:"result"`
	Error     string    `json:"error,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	Count     int       `json:"count,omitempty"`
}

// Delivery states.
const (
	DeliveryPending = "pending"
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"  // gave up after the retries, or refused for good
	DeliverySkipped = "skipped" // the alert was too old to notify about
)

// Notification reasons.
const (
	ReasonOpened    = "opened"    // a new incident
	ReasonEscalated = "escalated" // a repeat raised its severity
)

// Delivery is one notification of an incident to one notifier.
type Delivery struct {
	// ID is unique per incident, notifier and reason; receivers
	// de-duplicate on it (deliveries are at least once).
	ID          string    `json:"id"`
	Notifier    string    `json:"notifier"`
	Reason      string    `json:"reason"`
	Severity    string    `json:"severity"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	DoneAt      time.Time `json:"done_at,omitzero"`
	// Owner and LeaseUntil: the alerter instance delivering it; another
	// instance takes over when the lease has run out.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
}

// IncidentID is the ID of an incident opened by the alert with this ID: the
// alert ID itself when it is a safe key (the detector's are hex), else a
// hash of it.
func IncidentID(alertID string) string {
	if alertID != "" && len(alertID) <= 64 && !strings.ContainsFunc(alertID, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return alertID
	}
	h := sha256.Sum256([]byte(alertID))
	return hex.EncodeToString(h[:16])
}

// GroupKey is the key that repeats of one incident share: the rule and the
// user, or the IP for alerts about an address.
func GroupKey(a events.Alert) string {
	subject := "user:" + a.UserID
	if a.UserID == "" {
		subject = "ip:" + a.IP
	}
	h := sha256.Sum256([]byte(a.Rule + "\x00" + subject))
	return hex.EncodeToString(h[:16])
}

// NewIncident opens an incident with its first alert.
func NewIncident(a events.Alert, now time.Time) *Incident {
	inc := &Incident{
		ID: IncidentID(a.ID), Key: GroupKey(a), Rule: a.Rule, RuleType: a.RuleType,
		Severity: a.Severity, UserID: a.UserID, IP: a.IP, State: Open,
		FirstSeen: a.Time, LastSeen: a.Time, CreatedAt: now, UpdatedAt: now,
	}
	inc.add(a)
	return inc
}

// Has reports whether the incident grouped the alert with this ID.
func (inc *Incident) Has(alertID string) bool { return slices.Contains(inc.AlertIDs, alertID) }

// Accepts reports whether a repeat joins the incident: it is active and
// the alert is within window of the alerts it has.
func (inc *Incident) Accepts(a events.Alert, window time.Duration) bool {
	return inc.State.Active() && !a.Time.Before(inc.FirstSeen.Add(-window)) && !a.Time.After(inc.LastSeen.Add(window))
}

// Add groups a repeat into the incident. It returns whether the repeat
// raised the incident's severity.
func (inc *Incident) Add(a events.Alert, now time.Time) (escalated bool) {
	if SeverityRank(a.Severity) > SeverityRank(inc.Severity) {
		inc.Severity = a.Severity
		escalated = true
	}
	if a.Time.Before(inc.FirstSeen) {
		inc.FirstSeen = a.Time
	}
	if a.Time.After(inc.LastSeen) {
		inc.LastSeen = a.Time
	}
	inc.add(a)
	inc.UpdatedAt = now
	return escalated
}

func (inc *Incident) add(a events.Alert) {
	inc.Count++
	inc.Alerts = append(inc.Alerts, a)
	if len(inc.Alerts) > MaxAlertsKept {
		// Keep the first (what opened it) and the latest.
		inc.Alerts = append(inc.Alerts[:1], inc.Alerts[len(inc.Alerts)-MaxAlertsKept+1:]...)
	}
	inc.AlertIDs = append(inc.AlertIDs, a.ID)
	if len(inc.AlertIDs) > MaxAlertIDsKept {
		inc.AlertIDs = inc.AlertIDs[len(inc.AlertIDs)-MaxAlertIDsKept:]
	}
	for _, s := range a.SessionIDs {
		if !slices.Contains(inc.SessionIDs, s) && len(inc.SessionIDs) < MaxSessionsKept {
			inc.SessionIDs = append(inc.SessionIDs, s)
		}
	}
}

// Latest returns the latest alert of the incident.
func (inc *Incident) Latest() events.Alert {
	if len(inc.Alerts) == 0 {
		return events.Alert{}
	}
	latest := inc.Alerts[0]
	for _, a := range inc.Alerts[1:] {
		if !a.Time.Before(latest.Time) {
			latest = a
		}
	}
	return latest
}

// Subject is who the incident is about: the user, or the IP.
func (inc *Incident) Subject() string {
	if inc.UserID != "" {
		return inc.UserID
	}
	return inc.IP
}

// addChange appends a change, dropping the oldest recorded ones past the
// limit.
func (inc *Incident) addChange(c Change) {
	inc.Changes = append(inc.Changes, c)
	for len(inc.Changes) > MaxChangesKept {
		i := slices.IndexFunc(inc.Changes, func(c Change) bool { return c.Recorded })
		if i < 0 {
			break
		}
		inc.Changes = slices.Delete(inc.Changes, i, i+1)
	}
}

// Clone returns a deep copy.
func (inc *Incident) Clone() *Incident {
	c := *inc
	c.Alerts = slices.Clone(inc.Alerts)
	c.AlertIDs = slices.Clone(inc.AlertIDs)
	c.SessionIDs = slices.Clone(inc.SessionIDs)
	c.Changes = slices.Clone(inc.Changes)
	c.Deliveries = slices.Clone(inc.Deliveries)
	c.Enforcements = slices.Clone(inc.Enforcements)
	return &c
}

// CheckNote validates a reviewer's note: at most MaxNoteLen bytes of
// UTF-8 text without control characters other than line breaks and tabs.
func CheckNote(note string) error {
	switch {
	case len(note) > MaxNoteLen:
		return fmt.Errorf("%w: note: longer than %d bytes", ErrInvalid, MaxNoteLen)
	case !utf8.ValidString(note):
		return fmt.Errorf("%w: note: not valid UTF-8", ErrInvalid)
	case strings.ContainsFunc(note, func(r rune) bool { return (r < 0x20 && r != '\n' && r != '\r' && r != '\t') || r == 0x7f }):
		return fmt.Errorf("%w: note: contains control characters", ErrInvalid)
	}
	return nil
}
