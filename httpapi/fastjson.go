package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/sessionmon/sessionmon/sessions"
)

// The validate route's body and answer are decoded and encoded by hand
// when they take their usual form (flat objects of plain ASCII strings),
// which costs a fraction of encoding/json; anything else goes through
// encoding/json exactly as before, so the API answers byte for byte the
// same (FuzzAccessBody and FuzzSessionAnswer check the two agree).

// bodyBufs holds buffers for request bodies up to fastBodyMax bytes.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, fastBodyMax); return &b }}

// fastBodyMax is the largest body the hand-written decoder takes; a longer
// one is decoded by encoding/json.
const fastBodyMax = 4096

// decodeAccess is decode for the body of validate and regenerate.
func decodeAccess(w http.ResponseWriter, r *http.Request, b *accessBody) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	bp := bodyBufs.Get().(*[]byte)
	buf := *bp
	n, err := readFull(body, buf)
	// The buffer goes back to the pool without the token it held.
	defer func() { clear(buf[:n]); bodyBufs.Put(bp) }()
	if err == nil && parseAccess(buf[:n], b) {
		return nil
	}
	// The general path reads the same bytes, then the rest of the body
	// or the error that ended the read, as it would have without us.
	return decodeAccessSlow(buf[:n], body, err, b)
}

// decodeAccessSlow is decodeAccess's general path, apart so that b does not
// escape to the heap on the common one.
func decodeAccessSlow(read []byte, body io.Reader, err error, b *accessBody) error {
	var v accessBody
	var rest io.Reader
	switch err {
	case nil:
		rest = eofReader{}
	case errBufFull:
		rest = body
	default:
		rest = errReader{err}
	}
	err = decodeFrom(io.MultiReader(bytes.NewReader(read), rest), &v)
	*b = v
	return err
}

// readFull reads r into buf until EOF. err is nil at EOF, errBufFull when
// buf filled first, or the read error.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, errBufFull
}

var errBufFull = errors.New("body longer than the buffer")

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// parseAccess decodes b into v when b is a JSON object whose members are
// all known fields of accessBody with string values of printable ASCII
// without escapes, and reports whether it did. Anything else, valid or
// not, is left to encoding/json.
func parseAccess(b []byte, v *accessBody) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	// One string for the whole body: the fields are slices of it.
	s := string(b)
	var out accessBody
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		start := i + 1
		_, j, ok = plainString(b, i)
		if !ok {
			return false
		}
		val := s[start : j-1]
		switch string(key) {
		case "token":
			out.Token = val
		case "ip":
			out.IP = val
		case "user_agent":
			out.UserAgent = val
		case "csrf_token":
			out.CSRFToken = val
		case "path":
			out.Path = val
		default:
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			if skipWS(b, i+1) != len(b) {
				return false
			}
			*v = out
			return true
		}
		if b[i] != ',' {
			return false
		}
		i = skipWS(b, i+1)
	}
}

// plainString reads a JSON string at b[i] made of printable ASCII without
// escapes, and returns its contents and the index after its closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// answerBufs holds buffers for encoding answers.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// writeSession writes s as writeJSON would.
func writeSession(w http.ResponseWriter, status int, s *sessions.Session) {
	bp := answerBufs.Get().(*[]byte)
	b, ok := appendSession((*bp)[:0], s)
	*bp = b[:0]
	// The buffer goes back to the pool without the CSRF token it held.
	defer func() { clear(b); answerBufs.Put(bp) }()
	if !ok {
		writeJSON(w, status, s)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var jsonContentType = []string{"application/json"}

// appendSession appends s in JSON as encoding/json's Encoder writes it
// (with its newline), and reports whether it could: it declines sessions
// with attributes, text that encoding/json would escape, and times outside
// the years 0-9999.
func appendSession(b []byte, s *sessions.Session) ([]byte, bool) {
	if len(s.Attributes) > 0 {
		return b, false
	}
	ok := true
	str := func(name, v string) {
		b = append(b, name...)
		b = append(b, '"')
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				ok = false
				return
			}
		}
		b = append(b, v...)
		b = append(b, '"')
	}
	tm := func(name string, t time.Time) {
		b = append(b, name...)
		if y := t.Year(); y < 0 || y > 9999 {
			ok = false
			return
		}
		_, off := t.Zone()
		if off%60 != 0 || off <= -24*3600 || off >= 24*3600 {
			ok = false
			return
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	str(`{"session_id":`, s.ID)
	str(`,"user_id":`, s.UserID)
	str(`,"app":`, s.App)
	str(`,"ip":`, s.IP)
	str(`,"user_agent":`, s.UserAgent)
	tm(`,"created_at":`, s.CreatedAt)
	tm(`,"last_seen_at":`, s.LastSeenAt)
	tm(`,"expires_at":`, s.ExpiresAt)
	tm(`,"idle_expires_at":`, s.IdleExpiresAt)
	str(`,"state":`, string(s.State))
	if s.CSRFToken != "" {
		str(`,"csrf_token":`, s.CSRFToken)
	}
	b = append(b, "}\n"...)
	return b, ok
}
