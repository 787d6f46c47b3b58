package audit

import (
	"bytes"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionmon/sessionmon/events"
)

// DecodeEvent decodes an encoded session event exactly as events.Decode
// does: the same Event for what it accepts, the same error for what it
// rejects. It is several times faster for the envelopes events.Encode
// writes (about 1 µs instead of 9 µs here), which matters at the audit
// writer's rate: a scanner reads the envelope without reflection, and
// anything it does not expect (escapes, non-string values, duplicate or
// case-folded keys, invalid UTF-8, an invalid event) goes to
// events.Decode, so errors and edge cases are events.Decode's own.
// FuzzDecodeEvent checks the equivalence.
func DecodeEvent(b []byte) (events.Event, error) {
	if e, ok := decodeFast(b); ok {
		return e, nil
	}
	return events.Decode(b)
}

// Field bits, to refuse duplicate keys (encoding/json keeps the last one;
// the slow path does that).
const (
	fSpec = 1 << iota
	fID
	fSource
	fType
	fTime
	fSubject
	fContentType
	fSchema
	fData
)

var envelopeKeys = []string{"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema", "data"}

var dataKeys = []string{"session_id", "user_id", "app", "ip", "user_agent", "reason", "actor", "rule", "path", "previous_session_id"}

// decodeFast decodes the common form of an event; ok is false when it
// cannot, or when the event is invalid (events.Decode then says why).
func decodeFast(b []byte) (e events.Event, ok bool) {
	if len(b) > events.MaxSize {
		return e, false
	}
	s := scanner{b: b}
	s.ws()
	if !s.byte('{') {
		return e, false
	}
	var (
		seen                       uint
		spec, schema, typ, rawTime []byte
		hasData                    bool
	)
	s.ws()
	if s.peek() == '}' {
		return e, false
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return e, false
		}
		s.ws()
		if !s.byte(':') {
			return e, false
		}
		s.ws()
		var bit uint
		var dst *string
		var raw *[]byte
		switch string(key) {
		case "specversion":
			bit, raw = fSpec, &spec
		case "id":
			bit, dst = fID, &e.ID
		case "source":
			bit, dst = fSource, &e.Source
		case "type":
			bit, raw = fType, &typ
		case "time":
			bit, raw = fTime, &rawTime
		case "subject":
			bit = fSubject
		case "datacontenttype":
			bit = fContentType
		case "dataschema":
			bit, raw = fSchema, &schema
		case "data":
			bit = fData
		default:
			if foldsTo(key, envelopeKeys) {
				return e, false
			}
		}
		if bit != 0 {
			if seen&bit != 0 {
				return e, false
			}
			seen |= bit
		}
		if bit == fData {
			if !s.data(&e.Data) {
				return e, false
			}
			hasData = true
		} else {
			v, ok := s.str()
			if !ok {
				return e, false
			}
			switch {
			case dst != nil:
				*dst = string(v)
			case raw != nil:
				*raw = v
			}
		}
		s.ws()
		if s.byte(',') {
			continue
		}
		if !s.byte('}') {
			return e, false
		}
		break
	}
	s.ws()
	if s.i != len(b) {
		return e, false
	}
	// The checks of events.Decode, in its order; a failure goes to the
	// slow path for the error.
	for _, t := range events.Types {
		if string(typ) == string(t) {
			e.Type = t // no allocation: the constant
		}
	}
	if string(spec) != events.SpecVersion || e.ID == "" || e.Source == "" || !e.Type.Valid() || rawTime == nil {
		return e, false
	}
	var tok bool
	if e.Time, tok = parseUTC(rawTime); !tok || e.Time.IsZero() {
		return e, false
	}
	if string(schema) != events.DataSchema || !hasData || e.Data.UserID == "" {
		return e, false
	}
	if e.Data.IP != "" {
		if _, err := netip.ParseAddr(e.Data.IP); err != nil {
			return e, false
		}
	}
	if e.Data.SessionID == "" && e.Type != events.AuthLoginFailed && e.Type != events.AuthLoginSucceeded {
		return e, false
	}
	return e, true
}

// data decodes the data object: string fields only.
func (s *scanner) data(d *events.Data) bool {
	if !s.byte('{') {
		return false
	}
	s.ws()
	if s.byte('}') {
		return true
	}
	var seen uint
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if !s.byte(':') {
			return false
		}
		s.ws()
		var dst *string
		var bit uint
		switch string(key) {
		case "session_id":
			dst, bit = &d.SessionID, 1<<0
		case "user_id":
			dst, bit = &d.UserID, 1<<1
		case "app":
			dst, bit = &d.App, 1<<2
		case "ip":
			dst, bit = &d.IP, 1<<3
		case "user_agent":
			dst, bit = &d.UserAgent, 1<<4
		case "reason":
			dst, bit = &d.Reason, 1<<5
		case "actor":
			dst, bit = &d.Actor, 1<<6
		case "rule":
			dst, bit = &d.Rule, 1<<7
		case "path":
			dst, bit = &d.Path, 1<<8
		case "previous_session_id":
			dst, bit = &d.PreviousSessionID, 1<<9
		default:
			if foldsTo(key, dataKeys) {
				return false
			}
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		v, ok := s.str()
		if !ok {
			return false
		}
		if dst != nil {
			*dst = string(v)
		}
		s.ws()
		if s.byte(',') {
			continue
		}
		return s.byte('}')
	}
}

// foldsTo reports whether key matches one of keys case-insensitively
// (encoding/json would take it for that field).
func foldsTo(key []byte, keys []string) bool {
	for _, k := range keys {
		if strings.EqualFold(k, string(key)) {
			return true
		}
	}
	return false
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string without escapes, of valid UTF-8 and no control
// characters, and returns its bytes (aliasing the input).
func (s *scanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	rest := s.b[s.i:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	v := rest[:end]
	ascii := true
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			return nil, false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(v) {
		return nil, false
	}
	s.i += end + 1
	return v, true
}

// parseUTC parses the time form events.Encode writes, RFC 3339 in UTC:
// 2006-01-02T15:04:05Z with 0 to 9 fraction digits. Anything else (other
// offsets, other forms that encoding/json may or may not accept) is left
// to the slow path.
func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 ||
		day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}
