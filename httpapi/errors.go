package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/sessionmon/sessionmon/sessions"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[sessions.Code]int{
	sessions.CodeInvalid:      http.StatusBadRequest,
	sessions.CodeUnauthorized: http.StatusUnauthorized,
	sessions.CodeForbidden:    http.StatusForbidden,
	sessions.CodeNoSuchID:     http.StatusNotFound,
	sessions.CodeNotFound:     http.StatusUnauthorized,
	sessions.CodeExpired:      http.StatusUnauthorized,
	sessions.CodeRevoked:      http.StatusUnauthorized,
	sessions.CodeReauth:       http.StatusUnauthorized,
	sessions.CodeCSRF:         http.StatusForbidden,
	sessions.CodeLimit:        http.StatusConflict,
	sessions.CodeUnavailable:  http.StatusServiceUnavailable,
	sessions.CodeInternal:     http.StatusInternalServerError,
}

// ErrorBody is the JSON form of every error answer.
type ErrorBody struct {
	Error struct {
		Code    sessions.Code `json:"code"`
		Message string        `json:"message"`
	} `json:"error"`
}

// Status returns the HTTP status of err.
func Status(err error) int {
	if s, ok := statusOf[sessions.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// decode reads a JSON body into v strictly: one object, no unknown fields,
// at most MaxBody bytes. Its errors name the field at fault.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := checkContentType(r); err != nil {
		return err
	}
	return decodeFrom(http.MaxBytesReader(w, r.Body, MaxBody), v)
}

// checkContentType accepts JSON or no Content-Type.
func checkContentType(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return sessions.Invalid("Content-Type", "must be application/json, got %q", ct)
	}
	return nil
}

// decodeFrom is decode of a body read from body.
func decodeFrom(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeErr(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return sessions.Invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

func decodeErr(err error) error {
	var (
		syn  *json.SyntaxError
		typ  *json.UnmarshalTypeError
		tooL *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return sessions.Invalid("body", "required: a JSON object")
	case errors.As(err, &tooL):
		return sessions.Invalid("body", "larger than %d bytes", tooL.Limit)
	case errors.As(err, &syn):
		return sessions.Invalid("body", "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return sessions.Invalid("body", "must be a JSON object, not %s", typ.Value)
		}
		return sessions.Invalid(typ.Field, "must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return sessions.Invalid("body", "truncated JSON")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return sessions.Invalid(strings.Trim(f, `"`), "unknown field")
	}
	return sessions.Invalid("body", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return "a " + k
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes err as {"error":{"code","message"}}. Internal errors
// are logged by the caller and shown only as "internal error".
func writeError(w http.ResponseWriter, err error) int {
	status := Status(err)
	var body ErrorBody
	body.Error.Code = sessions.ErrorCode(err)
	body.Error.Message = sessions.ErrorMessage(err)
	if status == http.StatusUnauthorized && body.Error.Code == sessions.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sessionsvc"`)
	}
	writeJSON(w, status, body)
	return status
}

var errNotFoundRoute = &sessions.Error{Code: sessions.CodeNoSuchID, Message: "no such endpoint"}
