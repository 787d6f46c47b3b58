package audit

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// History is a user's complete session history, for an access request
// (GDPR article 15) or an investigation: every session with its start,
// the addresses and places it was used from, and its end and why.
type History struct {
	UserID    string          `json:"user_id"`
	From      time.Time       `json:"from,omitzero"` // zero: from the start of the log
	To        time.Time       `json:"to,omitzero"`   // zero: until now
	Generated time.Time       `json:"generated"`
	Sessions  []SessionRecord `json:"sessions"`
	// AuthEvents are the user's login attempts (auth.login_failed,
	// auth.login_succeeded), which belong to no session.
	AuthEvents []Entry `json:"auth_events"`
}

// SessionRecord is one session of a user's history.
type SessionRecord struct {
	SessionID string `json:"session_id"`
	App       string `json:"app,omitempty"`
	// Started is the time of session.created; zero when the creation is
	// not in the audit log (before the period asked for, or expired).
	Started    time.Time `json:"started,omitzero"`
	StartIP    string    `json:"start_ip,omitempty"`
	StartPlace Place     `json:"start_place,omitzero"`
	// PreviousSessionID is the session this one replaced at login.
	PreviousSessionID string    `json:"previous_session_id,omitempty"`
	FirstSeen         time.Time `json:"first_seen"`
	LastSeen          time.Time `json:"last_seen"`
	Events            int       `json:"events"`
	Addresses         []Address `json:"addresses"`
	UserAgents        []string  `json:"user_agents"`
	// Ended is the time of the ending event (terminated, expired,
	// revoked, evicted, replaced); zero while the session lives.
	Ended  time.Time `json:"ended,omitzero"`
	End    string    `json:"end,omitempty"` // the ending event's type
	Reason string    `json:"end_reason,omitempty"`
	Actor  string    `json:"end_actor,omitempty"`
	Rule   string    `json:"end_rule,omitempty"`
	// Endings counts ending events: 1 for an ended session, 0 for a live
	// one; more is a fault CheckEndings reports.
	Endings int `json:"endings"`
}

// Place is a coarse location.
type Place struct {
	Country string `json:"country,omitempty"`
	City    string `json:"city,omitempty"`
}

func (p Place) String() string {
	switch {
	case p.City != "" && p.Country != "":
		return p.City + ", " + p.Country
	default:
		return p.Country + p.City
	}
}

// Address is an address a session was used from: the address, or its
// pseudonym (PseudonymPrefix) when addresses are pseudonymized.
type Address struct {
	IP     string    `json:"ip"`
	Place  Place     `json:"place,omitzero"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Events int       `json:"events"`
}

// HistoryReader reads a user's session history from the audit trail.
type HistoryReader interface {
	UserHistory(ctx context.Context, userID string, from, to time.Time) (*History, error)
}

// WriteJSON writes h as one indented JSON document.
func WriteJSON(w io.Writer, h *History) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{
	"user_id", "session_id", "app", "started", "start_ip", "start_country", "start_city",
	"ended", "end", "end_reason", "end_actor", "end_rule", "endings", "first_seen", "last_seen",
	"events", "addresses", "user_agents", "previous_session_id",
}

// WriteCSV writes h's sessions, one a row (CSVHeader), times in RFC 3339
// UTC. Addresses are "ip country/city first..last (n events)" joined by
// "; ", user agents joined by " | ". Cells that a spreadsheet would take
// for a formula (user agents are chosen by clients) are prefixed with a
// quote.
func WriteCSV(w io.Writer, h *History) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	for _, s := range h.Sessions {
		addrs := make([]string, len(s.Addresses))
		for i, a := range s.Addresses {
			addrs[i] = fmt.Sprintf("%s %s %s..%s (%d events)", a.IP, a.Place, csvTime(a.First), csvTime(a.Last), a.Events)
		}
		row := []string{
			h.UserID, s.SessionID, s.App, csvTime(s.Started), s.StartIP, s.StartPlace.Country, s.StartPlace.City,
			csvTime(s.Ended), s.End, s.Reason, s.Actor, s.Rule, strconv.Itoa(s.Endings), csvTime(s.FirstSeen), csvTime(s.LastSeen),
			strconv.Itoa(s.Events), strings.Join(addrs, "; "), strings.Join(s.UserAgents, " | "), s.PreviousSessionID,
		}
		for i, c := range row {
			row[i] = csvSafe(c)
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write history: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// csvSafe defuses formula injection (OWASP "CSV Injection").
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Problems CheckEndings reports.
const (
	ProblemNoEnding      = "no_ending"        // started, absolute timeout passed, never ended
	ProblemManyEndings   = "multiple_endings" // ended more than once
	ProblemEndingNoStart = "ending_without_start"
	ProblemStartedTwice  = "started_twice"
)

// EndingViolation is a session that breaks the rule "every session that
// started has exactly one ending event once its absolute timeout passed".
type EndingViolation struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	Started   time.Time `json:"started,omitzero"`
	Endings   int       `json:"endings"`
	// EndTypes are the ending events' types, in time order.
	EndTypes []string `json:"end_types"`
	Problem  string   `json:"problem"`
}

// EndingCheck is the result of CheckEndings.
type EndingCheck struct {
	// Sessions started in [From, Until) were checked: Until is the check's
	// time minus the absolute timeout and the grace period.
	From       time.Time         `json:"from"`
	Until      time.Time         `json:"until"`
	Checked    int               `json:"checked"`
	Violations []EndingViolation `json:"violations"`
}
