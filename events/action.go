package events

import (
	"fmt"
	json "github.com/segmentio/encoding/json"
	"time"
)

// Actions are what was done about alerts: enforcement by the detector (a
// session revoked, a re-auth forced) and decisions by reviewers in the
// console (acknowledged, resolved, false positive, revocations by hand).
// They are published on actions.<partition>.<action> in the ALERTS stream,
// each a CloudEvent of type ActionTaken whose data is an Action, and the
// audit writer stores every one.
const (
	ActionSubjects = "actions.>"
	ActionTaken    = "action.taken"
	// ActionSchema names the version of the action payload.
	ActionSchema = "urn:sessionmon:actions:v1"
)

// Action kinds.
const (
	KindEnforcement = "enforcement" // the detector carried out a rule's action
	KindReview      = "review"      // a reviewer decided in the console
)

// Action results.
const (
	ResultDone   = "done"   // carried out
	ResultFailed = "failed" // refused for good (e.g. the session was gone); Error says why
)

// Action is one thing done about an alert, or by a reviewer.
type Action struct {
	// ID is unique per action; for enforcement it is derived from the
	// alert, so a retried enforcement records one action.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Actor is "detector" for enforcement, the reviewer's name for reviews.
	Actor string `json:"actor"`
	// Action: reauth, revoke_session, revoke_user for enforcement; for
	// reviews also acknowledge, resolve, false_positive, reopen.
	Action    string `json:"action"`
	AlertID   string `json:"alert_id,omitempty"`
	Rule      string `json:"rule,omitempty"`
	UserID    string `json:"user_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Result    string `json:"result"`
	// Error is the session service's error code when Result is failed.
	Error string `json:"error,omitempty"`
	// Attempts is how many calls the enforcement took.
	Attempts int    `json:"attempts,omitempty"`
	Note     string `json:"note,omitempty"`
	// Count is how many sessions a revocation ended, when known.
	Count int `json:"count,omitempty"`
}

// ActionSubject is the subject of an action.
func ActionSubject(a Action) string {
	return fmt.Sprintf("actions.%02d.%s", PartitionOf(a.UserID), a.Action)
}

// EncodeAction wraps an action in a CloudEvent of type ActionTaken.
func EncodeAction(a Action, source string) ([]byte, error) {
	return encodeEnvelope(a.ID, source, ActionTaken, a.Time, a.UserID, ActionSchema, a)
}

// envelope is the CloudEvents envelope of alerts and actions.
type envelope struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	DataSchema      string          `json:"dataschema"`
	Data            json.RawMessage `json:"data"`
}

func encodeEnvelope(id, source, typ string, t time.Time, subject, schema string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{SpecVersion, id, source, typ, t.UTC(), subject, "application/json", schema, data})
}

// decodeEnvelope checks the envelope of an alert or action and decodes its
// data into v (strictly: unknown data fields are allowed, wrong types not).
func decodeEnvelope(b []byte, typ, schema string, v any) error {
	if len(b) > MaxSize*4 {
		return &DecodeError{Reason: fmt.Sprintf("larger than %d bytes", MaxSize*4)}
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return &DecodeError{Field: jsonField(err), Reason: err.Error()}
	}
	switch {
	case env.SpecVersion != SpecVersion:
		return &DecodeError{Field: "specversion", Reason: fmt.Sprintf("want %q, got %q", SpecVersion, env.SpecVersion)}
	case env.ID == "":
		return &DecodeError{Field: "id", Reason: "missing"}
	case env.Source == "":
		return &DecodeError{Field: "source", Reason: "missing"}
	case env.Type != typ:
		return &DecodeError{Field: "type", Reason: fmt.Sprintf("want %q, got %q", typ, env.Type)}
	case env.DataSchema != schema:
		return &DecodeError{Field: "dataschema", Reason: fmt.Sprintf("want %q, got %q", schema, env.DataSchema)}
	case len(env.Data) == 0 || string(env.Data) == "null":
		return &DecodeError{Field: "data", Reason: "missing"}
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		f := jsonField(err)
		if f != "" {
			f = "data." + f
		}
		return &DecodeError{Field: f, Reason: err.Error()}
	}
	return nil
}

// DecodeAlert parses and validates an encoded alert.
func DecodeAlert(b []byte) (Alert, error) {
	var a Alert
	if err := decodeEnvelope(b, AlertRaised, AlertSchema, &a); err != nil {
		return Alert{}, err
	}
	switch {
	case a.ID == "":
		return Alert{}, &DecodeError{Field: "data.id", Reason: "missing"}
	case a.Time.IsZero():
		return Alert{}, &DecodeError{Field: "data.time", Reason: "missing"}
	case a.Rule == "":
		return Alert{}, &DecodeError{Field: "data.rule", Reason: "missing"}
	case a.Severity == "":
		return Alert{}, &DecodeError{Field: "data.severity", Reason: "missing"}
	case a.UserID == "" && a.IP == "":
		return Alert{}, &DecodeError{Field: "data.user_id", Reason: "missing (and no data.ip)"}
	case a.Action == "":
		return Alert{}, &DecodeError{Field: "data.action", Reason: "missing"}
	}
	return a, nil
}

// DecodeAction parses and validates an encoded action.
func DecodeAction(b []byte) (Action, error) {
	var a Action
	if err := decodeEnvelope(b, ActionTaken, ActionSchema, &a); err != nil {
		return Action{}, err
	}
	switch {
	case a.ID == "":
		return Action{}, &DecodeError{Field: "data.id", Reason: "missing"}
	case a.Time.IsZero():
		return Action{}, &DecodeError{Field: "data.time", Reason: "missing"}
	case a.Kind != KindEnforcement && a.Kind != KindReview:
		return Action{}, &DecodeError{Field: "data.kind", Reason: fmt.Sprintf("want %q or %q, got %q", KindEnforcement, KindReview, a.Kind)}
	case a.Actor == "":
		return Action{}, &DecodeError{Field: "data.actor", Reason: "missing"}
	case a.Action == "":
		return Action{}, &DecodeError{Field: "data.action", Reason: "missing"}
	case a.Result == "":
		return Action{}, &DecodeError{Field: "data.result", Reason: "missing"}
	}
	return a, nil
}
