package auditfile

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/events"
)

// Batch stages messages of one stream for one write; it implements the
// audit consumer's batch (eventbus.AuditBatch). It is not safe for
// concurrent use.
type Batch struct {
	s      *Store
	alerts bool // the ALERTS stream: alerts and actions; else SESSIONS
	recs   []record
}

// NewEventBatch returns a batch for the SESSIONS stream.
func (s *Store) NewEventBatch() *Batch { return &Batch{s: s} }

// NewAlertBatch returns a batch for the ALERTS stream (alerts and actions).
func (s *Store) NewAlertBatch() *Batch { return &Batch{s: s, alerts: true} }

// Add decodes one message and stages it. An *audit.Rejection says why a
// message cannot be stored.
func (b *Batch) Add(subject string, data []byte) error {
	if !b.alerts {
		e, err := events.Decode(data)
		if err != nil {
			return audit.DecodeRejection(err)
		}
		return b.AddEvent(e)
	}
	m, err := audit.DecodeAlertMessage(subject, data)
	if err != nil {
		return err
	}
	if m.Alert != nil {
		return b.AddAlert(*m.Alert)
	}
	return b.AddAction(*m.Action)
}

// Times outside these are refused, as ClickHouse's DateTime64 would.
var (
	minTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2299, 12, 31, 0, 0, 0, 0, time.UTC)
)

func checkTime(t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return &audit.Rejection{Reason: "time_out_of_range", Err: fmt.Errorf("time %s outside 1900 to 2299", t.UTC().Format(time.RFC3339))}
	}
	return nil
}

// AddEvent stages a session or auth event.
func (b *Batch) AddEvent(e events.Event) error {
	if err := checkTime(e.Time); err != nil {
		return err
	}
	d := &e.Data
	ip, err := b.s.o.IP.Apply(d.IP)
	if err != nil {
		return &audit.Rejection{Reason: "bad_data_ip", Err: err}
	}
	// Free text from apps and clients: never a token in the log.
	detail := audit.RedactTokens(d.Reason)
	if d.Rule != "" {
		detail += " (rule " + d.Rule + ")"
	}
	b.recs = append(b.recs, record{UserID: d.UserID, Entry: audit.Entry{
		Time: e.Time.UTC(), Kind: audit.KindEvent, ID: e.ID, Type: string(e.Type), SessionID: d.SessionID,
		IP: ip.Display(), Country: ip.Country, City: ip.City, UserAgent: audit.RedactTokens(d.UserAgent), Detail: detail,
	}})
	return nil
}

// AddAlert stages an alert.
func (b *Batch) AddAlert(a events.Alert) error {
	if err := checkTime(a.Time); err != nil {
		return err
	}
	ip, err := b.s.o.IP.Apply(a.IP)
	if err != nil {
		return &audit.Rejection{Reason: "bad_data_ip", Err: err}
	}
	_, summary := b.s.o.IP.AlertEvidence(a)
	b.recs = append(b.recs, record{UserID: a.UserID, Entry: audit.Entry{
		Time: a.Time.UTC(), Kind: audit.KindAlert, ID: a.ID, Type: a.Rule, SessionID: strings.Join(a.SessionIDs, ","),
		IP: ip.Display(), Country: ip.Country, City: ip.City, Detail: a.Severity + ": " + audit.RedactTokens(summary),
	}})
	return nil
}

// AddAction stages an action: an enforcement or a reviewer's decision.
func (b *Batch) AddAction(a events.Action) error {
	if err := checkTime(a.Time); err != nil {
		return err
	}
	detail := a.Result
	if a.Error != "" {
		detail += " (" + a.Error + ")"
	}
	detail += " by " + a.Actor
	if a.Note != "" {
		detail += ": " + audit.RedactTokens(a.Note)
	}
	b.recs = append(b.recs, record{UserID: a.UserID, Entry: audit.Entry{
		Time: a.Time.UTC(), Kind: audit.KindAction, ID: a.ID, Type: a.Action, SessionID: a.SessionID, Detail: detail,
	}})
	return nil
}

// Len is the number of staged entries.
func (b *Batch) Len() int { return len(b.recs) }

// Write stores the staged entries, each once, and syncs the file. After an
// error it can be called again.
func (b *Batch) Write(context.Context) error { return b.s.append(b.recs) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.recs)
	b.recs = b.recs[:0]
}
