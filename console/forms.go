package console

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionmon/sessionmon/alerter"
)

// filterForm is the list page's filter as typed, to render back.
type filterForm struct {
	Severity string
	Rule     string
	State    string
	User     string
	From     string
	To       string
}

// State filter values beyond the states themselves.
const (
	stateActive = "active" // open or acknowledged: the default
	stateAll    = "all"
)

// datetime-local inputs send "2006-01-02T15:04"; the console reads them as
// UTC (and says so). RFC 3339 is accepted too.
const localLayout = "2006-01-02T15:04"

const maxFilterText = 256

// parseFilter reads the list page's query. Bad values are reported and
// left out of the filter; it never fails as a whole.
func parseFilter(q url.Values) (alerter.Filter, filterForm, []string) {
	var f alerter.Filter
	var form filterForm
	var problems []string
	get := func(k string) string { return strings.TrimSpace(q.Get(k)) }

	if s := get("severity"); s != "" {
		if alerter.SeverityRank(s) > 0 {
			f.Severity, form.Severity = s, s
		} else {
			problems = append(problems, "severity: want low, medium, high or critical")
		}
	}
	if s := get("rule"); s != "" {
		if okText(s) {
			f.Rule, form.Rule = s, s
		} else {
			problems = append(problems, "rule: not a rule name")
		}
	}
	form.State = stateActive
	switch s := get("state"); {
	case s == "" || s == stateActive:
		f.States = []alerter.State{alerter.Open, alerter.Acknowledged}
	case s == stateAll:
		form.State = stateAll
	case alerter.State(s).Valid():
		f.States, form.State = []alerter.State{alerter.State(s)}, s
	default:
		f.States = []alerter.State{alerter.Open, alerter.Acknowledged}
		problems = append(problems, "state: want active, open, acknowledged, resolved, false_positive or all")
	}
	if s := get("user"); s != "" {
		if okText(s) {
			f.User, form.User = s, s
		} else {
			problems = append(problems, "user: too long or not text")
		}
	}
	for _, tf := range []struct {
		key  string
		dst  *time.Time
		form *string
	}{{"from", &f.From, &form.From}, {"to", &f.To, &form.To}} {
		s := get(tf.key)
		if s == "" {
			continue
		}
		t, err := parseTime(s)
		if err != nil {
			problems = append(problems, tf.key+": want a date and time such as 2026-11-22T10:00 (UTC)")
			continue
		}
		*tf.dst, *tf.form = t, t.Format(localLayout)
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		problems = append(problems, "to: before from")
	}
	return f, form, problems
}

func parseTime(s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, errors.New("too long")
	}
	if t, err := time.ParseInLocation(localLayout, s, time.UTC); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

// okText accepts a short line of UTF-8 text without control characters.
func okText(s string) bool {
	return len(s) <= maxFilterText && utf8.ValidString(s) &&
		!strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// query renders the filter back into a query string.
func (f filterForm) query() string {
	q := url.Values{}
	for k, v := range map[string]string{"severity": f.Severity, "rule": f.Rule, "user": f.User, "from": f.From, "to": f.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.State != stateActive {
		q.Set("state", f.State)
	}
	return q.Encode()
}

// decisionForm is a decision as posted.
type decisionForm struct {
	Decision alerter.Decision
	Note     string
}

// parseDecision reads a decision form: decision and note.
func parseDecision(form url.Values) (decisionForm, error) {
	d := alerter.Decision(form.Get("decision"))
	if !slices.Contains(alerter.Decisions, d) {
		return decisionForm{}, fmt.Errorf("decision: want one of %v", alerter.Decisions)
	}
	note, err := parseNote(form)
	if err != nil {
		return decisionForm{}, err
	}
	return decisionForm{Decision: d, Note: note}, nil
}

// parseNote reads and checks the note field, normalising line breaks.
func parseNote(form url.Values) (string, error) {
	note := strings.TrimSpace(strings.ReplaceAll(form.Get("note"), "\r\n", "\n"))
	if err := alerter.CheckNote(note); err != nil {
		return "", errors.New(strings.TrimPrefix(err.Error(), alerter.ErrInvalid.Error()+": "))
	}
	return note, nil
}

// sessionForm is a session action as posted.
type sessionForm struct {
	SessionID string
	Note      string
}

// parseSessionAction reads session_id (required when needID) and note.
func parseSessionAction(form url.Values, needID bool) (sessionForm, error) {
	var sf sessionForm
	if needID {
		sf.SessionID = form.Get("session_id")
		if !validSessionID(sf.SessionID) {
			return sessionForm{}, errors.New("session_id: not a session ID")
		}
	}
	note, err := parseNote(form)
	if err != nil {
		return sessionForm{}, err
	}
	sf.Note = note
	return sf, nil
}

func validSessionID(s string) bool {
	return s != "" && len(s) <= 128 && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// safeNext returns a local path to go to after signing in, or "/alerts":
// never another origin ("//evil", "/\evil", "https://...").
func safeNext(s string) string {
	if len(s) > 512 || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") ||
		strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "/alerts"
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/alerts"
	}
	return s
}
