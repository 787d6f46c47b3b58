package client

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error answered by the service: its HTTP status and its
// machine-readable code and message, as in
//
//	{"error": {"code": "session_expired", "message": "session expired"}}
//
// Code is empty when the answer was not the service's (for example a
// proxy's 502 page). Error never holds a token.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("sessionmon: %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("sessionmon: %d %s: %s", e.Status, e.Code, e.Message)
}

// Error codes of the service that callers commonly branch on.
const (
	codeNotFound = "session_not_found"
	codeExpired  = "session_expired"
	codeRevoked  = "session_revoked"
	codeReauth   = "reauth_required"
	codeCSRF     = "csrf_mismatch"
)

// IsUnauthenticated reports whether err means that the token does not
// name a usable session: it is unknown, expired, ended, or its session
// needs re-authentication. The user must log in (again). A rejected API
// key (code "unauthorized") is a configuration error, not this.
func IsUnauthenticated(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
		return false
	}
	switch e.Code {
	case codeNotFound, codeExpired, codeRevoked, codeReauth:
		return true
	}
	return false
}

// IsReauthRequired reports whether err means that the session is live but
// the user must re-authenticate (the detector flagged it). When the user
// has, create the new session with the old token as ReplaceToken.
func IsReauthRequired(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Code == codeReauth
}

// IsCSRFMismatch reports whether err means that the CSRF token given did
// not match the session's.
func IsCSRFMismatch(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == codeCSRF
}

// IsUnavailable reports whether err means that the service could not
// answer: it said 503 (its store is down), a gateway in front of it said
// 502 or 504, or the call failed in transport (refused, reset, timed out,
// cancelled). The session could not be checked: fail closed.
func IsUnavailable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	var t *transportError
	return errors.As(err, &t)
}

// transportError marks a call that got no answer from the service.
type transportError struct{ err error }

func (t *transportError) Error() string { return t.err.Error() }
func (t *transportError) Unwrap() error { return t.err }
