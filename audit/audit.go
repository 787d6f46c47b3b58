// Package audit is the audit trail of sessionmon: every session event,
// alert and action, kept for investigation and compliance. This package
// holds the types that readers of the trail share (the review console, the
// export of a user's history, compliance checks); the ClickHouse adapter
// writes and queries them.
package audit

import (
	"context"
	"time"
)

// Entry kinds.
const (
	KindEvent  = "event"  // a session or auth event
	KindAlert  = "alert"  // a detector alert
	KindAction = "action" // enforcement or a reviewer's decision
)

// Entry is one line of a user's timeline.
type Entry struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	ID        string    `json:"id"`
	Type      string    `json:"type"` // event type, rule, or action
	SessionID string    `json:"session_id,omitempty"`
	IP        string    `json:"ip,omitempty"`
	Country   string    `json:"country,omitempty"`
	City      string    `json:"city,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	// Detail is the reason of an ending, the summary of an alert, or the
	// result and note of an action.
	Detail string `json:"detail,omitempty"`
}

// Timeline reads a user's history from the audit trail, newest first.
type Timeline interface {
	UserTimeline(ctx context.Context, userID string, from, to time.Time, limit int) ([]Entry, error)
}
