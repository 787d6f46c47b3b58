// Package events defines the event envelope that every sessionmon service
// publishes and consumes: session lifecycle and access events, auth events,
// and (later) detector alerts. Events are CloudEvents 1.0 in structured JSON
// mode; the sessionmon fields travel in "data".
package events

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	json "github.com/segmentio/encoding/json"
	"hash/fnv"
	"net/netip"
	"sync"
	"time"
)

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// DataSchema names the version of the data payload. A breaking change to
// Data gets a new schema URI; consumers reject schemas they do not know.
const DataSchema = "urn:sessionmon:events:v1"

// Type is the CloudEvents type of an event.
type Type string

// Session lifecycle, access and authentication event types.
const (
	SessionCreated        Type = "session.created"
	SessionAccessed       Type = "session.accessed"
	SessionRegenerated    Type = "session.regenerated"
	SessionTerminated     Type = "session.terminated"
	SessionExpired        Type = "session.expired"
	SessionRevoked        Type = "session.revoked"
	SessionReauthRequired Type = "session.reauth_required"
	SessionEvicted        Type = "session.evicted"
	SessionReplaced       Type = "session.replaced"
	SessionRejected       Type = "session.rejected"
	AuthLoginFailed       Type = "auth.login_failed"
	AuthLoginSucceeded    Type = "auth.login_succeeded"
)

// Types lists every known event type.
var Types = []Type{
	SessionCreated, SessionAccessed, SessionRegenerated, SessionTerminated,
	SessionExpired, SessionRevoked, SessionReauthRequired, SessionEvicted,
	SessionReplaced, SessionRejected, AuthLoginFailed, AuthLoginSucceeded,
}

// Valid reports whether t is a known event type.
func (t Type) Valid() bool {
	for _, k := range Types {
		if t == k {
			return true
		}
	}
	return false
}

// Ending reports whether an event of this type ends a session. Every session
// that starts gets exactly one ending event.
func (t Type) Ending() bool {
	switch t {
	case SessionTerminated, SessionExpired, SessionRevoked, SessionEvicted, SessionReplaced:
		return true
	}
	return false
}

// Event is one sessionmon event. The JSON form is a CloudEvents 1.0
// structured-mode envelope; see MarshalJSON.
type Event struct {
	ID     string    // unique per event; consumers de-duplicate on it
	Type   Type      // one of Types
	Source string    // the producing service, e.g. "sessionsvc"
	Time   time.Time // when it happened, on the producer's clock
	Data   Data
}

// Data is the sessionmon payload of an event. Tokens never appear here:
// SessionID is the public handle of a session, safe to log.
type Data struct {
	SessionID string `json:"session_id,omitempty"`
	UserID    string `json:"user_id"`
	App       string `json:"app,omitempty"`
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Actor     string `json:"actor,omitempty"`
	// Rule names the detector rule behind a revocation or re-auth.
	Rule string `json:"rule,omitempty"`
	// Path is the request path an access was for, when the app gave one.
	Path string `json:"path,omitempty"`
	// PreviousSessionID links a session.created to the session it replaced.
	PreviousSessionID string `json:"previous_session_id,omitempty"`
}

// wire is the encoded form of an event.
type wire struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            Type      `json:"type"`
	Time            time.Time `json:"time"`
	Subject         string    `json:"subject,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`
	Data            Data      `json:"data"`
}

// Encode returns e as a CloudEvents structured-mode JSON object; the
// CloudEvents subject is the session ID. Publishers call it directly:
// json.Marshal(e) gives the same bytes but re-scans them.
func (e Event) Encode() ([]byte, error) {
	return json.Marshal(wire{
		SpecVersion:     SpecVersion,
		ID:              e.ID,
		Source:          e.Source,
		Type:            e.Type,
		Time:            e.Time.UTC(),
		Subject:         e.Data.SessionID,
		DataContentType: "application/json",
		DataSchema:      DataSchema,
		Data:            e.Data,
	})
}

// MarshalJSON implements json.Marshaler with Encode.
func (e Event) MarshalJSON() ([]byte, error) { return e.Encode() }

// MaxSize bounds an encoded event; a larger one is rejected by Decode.
const MaxSize = 16 << 10

// DecodeError says which field of an event is wrong.
type DecodeError struct {
	Field  string
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "event: " + e.Reason
	}
	return fmt.Sprintf("event: field %q: %s", e.Field, e.Reason)
}

// Decode parses and validates one encoded event. Unknown envelope
// attributes are allowed (CloudEvents extensions); unknown data fields are
// allowed too, so producers can add fields without breaking consumers.
func Decode(b []byte) (Event, error) { return decode(b, 0) }

// DecodeShared is Decode for a caller that leaves b unchanged for as long
// as it uses the event: the event's strings share b's memory rather than
// copies of it (those with escapes excepted), which saves an allocation a
// field. The audit writer decodes each message into a batch that lives no
// longer than the message.
func DecodeShared(b []byte) (Event, error) { return decode(b, json.DontCopyString) }

// eventEnvelope is the decoded form: the wire form with data optional, so that
// a missing data object is told apart from an empty one. They are reused:
// one escapes to the heap with each decoding otherwise.
type eventEnvelope struct {
	wire
	Data *Data `json:"data"`
}

var eventEnvelopes = sync.Pool{New: func() any { return new(eventEnvelope) }}

func decode(b []byte, flags json.ParseFlags) (Event, error) {
	if len(b) > MaxSize {
		return Event{}, &DecodeError{Reason: fmt.Sprintf("larger than %d bytes", MaxSize)}
	}
	env := eventEnvelopes.Get().(*eventEnvelope)
	defer eventEnvelopes.Put(env)
	*env = eventEnvelope{} // fields absent from b stay as they are
	if err := unmarshal(b, env, flags); err != nil {
		return Event{}, &DecodeError{Field: jsonField(err), Reason: err.Error()}
	}
	switch {
	case env.SpecVersion != SpecVersion:
		return Event{}, &DecodeError{Field: "specversion", Reason: fmt.Sprintf("want %q, got %q", SpecVersion, env.SpecVersion)}
	case env.ID == "":
		return Event{}, &DecodeError{Field: "id", Reason: "missing"}
	case env.Source == "":
		return Event{}, &DecodeError{Field: "source", Reason: "missing"}
	case !env.Type.Valid():
		return Event{}, &DecodeError{Field: "type", Reason: fmt.Sprintf("unknown type %q", env.Type)}
	case env.Time.IsZero():
		return Event{}, &DecodeError{Field: "time", Reason: "missing"}
	case env.DataSchema != DataSchema:
		return Event{}, &DecodeError{Field: "dataschema", Reason: fmt.Sprintf("want %q, got %q", DataSchema, env.DataSchema)}
	case env.Data == nil:
		return Event{}, &DecodeError{Field: "data", Reason: "missing"}
	}
	d := *env.Data
	if d.UserID == "" {
		return Event{}, &DecodeError{Field: "data.user_id", Reason: "missing"}
	}
	if d.IP != "" {
		if _, err := netip.ParseAddr(d.IP); err != nil {
			return Event{}, &DecodeError{Field: "data.ip", Reason: "not an IP address"}
		}
	}
	if d.SessionID == "" && env.Type != AuthLoginFailed && env.Type != AuthLoginSucceeded {
		return Event{}, &DecodeError{Field: "data.session_id", Reason: "missing"}
	}
	return Event{ID: env.ID, Type: env.Type, Source: env.Source, Time: env.Time, Data: d}, nil
}

// unmarshal is json.Unmarshal with parse flags.
func unmarshal(b []byte, v any, flags json.ParseFlags) error {
	if flags == 0 {
		return json.Unmarshal(b, v)
	}
	rest, err := json.Parse(b, v, flags)
	if len(rest) != 0 {
		// Trailing data: json.Unmarshal's error (it tells the trailing
		// data apart from other syntax errors).
		return json.Unmarshal(b, v)
	}
	return err
}

func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}

// NewID returns a new random event ID (128 bits, hex).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b[:])
}

// Partitions is the number of partitions of the session event stream. Every
// user belongs to one partition (PartitionOf), all of a user's events are
// published on that partition's subjects in order, and the session store
// shards its keys by the same number. It is part of the wire contract: a
// change needs a new stream.
const Partitions = 16

// PartitionOf returns the partition of a user: FNV-1a of the user ID.
func PartitionOf(userID string) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % Partitions)
}
