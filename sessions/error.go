package sessions

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code. The HTTP adapter maps each code to
// a status in one table; see httpapi.
type Code string

// Error codes.
const (
	CodeInvalid      Code = "invalid_request"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	CodeNoSuchID     Code = "not_found"
	CodeNotFound     Code = "session_not_found"
	CodeExpired      Code = "session_expired"
	CodeRevoked      Code = "session_revoked"
	CodeReauth       Code = "reauth_required"
	CodeCSRF         Code = "csrf_mismatch"
	CodeLimit        Code = "session_limit_reached"
	CodeUnavailable  Code = "unavailable"
	CodeInternal     Code = "internal"
)

// Error is an error with a code and a message that is safe to show to the
// caller. Field names the request field at fault, for invalid_request.
type Error struct {
	Code    Code
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Field == "" || t.Field == e.Field)
}

// Sentinel errors. Compare with errors.Is.
var (
	ErrNotFound = &Error{Code: CodeNotFound, Message: "session not found"}
	// ErrNoSuchSession answers operations that name a session by ID
	// (terminate, revoke, reauth), where the caller holds no token.
	ErrNoSuchSession = &Error{Code: CodeNoSuchID, Message: "no such session"}
	ErrExpired       = &Error{Code: CodeExpired, Message: "session expired"}
	ErrRevoked       = &Error{Code: CodeRevoked, Message: "session revoked"}
	ErrReauth        = &Error{Code: CodeReauth, Message: "re-authentication required"}
	ErrCSRF          = &Error{Code: CodeCSRF, Message: "CSRF token does not match"}
	ErrForbidden     = &Error{Code: CodeForbidden, Message: "session belongs to another app"}
	ErrLimit         = &Error{Code: CodeLimit, Message: "maximum number of concurrent sessions reached"}
	ErrUnavailable   = &Error{Code: CodeUnavailable, Message: "session store unavailable"}
	ErrUnauthorized  = &Error{Code: CodeUnauthorized, Message: "missing or invalid API key"}
)

// Invalid returns an invalid_request error naming the field at fault.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a store failure so that it maps to unavailable (503):
// the service fails closed when its store is down.
func Unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w", op, errors.Join(ErrUnavailable, err))
}

// ErrorCode returns the code of err, or internal for errors without one.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of err. Errors without a
// code are internal and their detail is never shown.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Field != "" {
			return e.Field + ": " + e.Message
		}
		return e.Message
	}
	return "internal error"
}
