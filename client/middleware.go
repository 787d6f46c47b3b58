package client

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Middleware guards handlers with the session service. Only Client is
// required; every other field has a default.
//
// For each request, Require:
//
//  1. reads the session cookie; without one, the request is
//     unauthenticated;
//  2. for a method other than GET, HEAD, OPTIONS and TRACE, takes the CSRF
//     token from the CSRFHeader header or, only for form posts
//     (application/x-www-form-urlencoded, multipart/form-data), from the
//     CSRFFormField field. Without one the request is refused with 403
//     csrf_required before the service is asked: a forged request must
//     not even slide the session's idle expiry;
//  3. validates the token with the service, passing the CSRF token so
//     that the service compares it with the session's;
//  4. calls the next handler with the *Session in the request context
//     (see SessionFrom), or refuses the request.
//
// Requests are refused thus:
//
//	no cookie, or the session is unknown,
//	expired, ended, or needs re-auth    OnUnauthenticated (default 401)
//	CSRF token missing or wrong         403
//	service unreachable, 502/503/504    OnUnavailable (default 503)
//	anything else (e.g. a bad API key)  500, logged with log/slog
//
// When the session is unknown, expired or ended, the cookie is cleared
// (ClearCookie). When it needs re-authentication the cookie is kept: pass
// it as CreateRequest.ReplaceToken once the user has re-authenticated, so
// that the service ends the flagged session.
//
// The next handler is never called unless the service said the session
// is valid: when the service cannot be reached, requests are refused.
type Middleware struct {
	Client *Client
	// CookieName is the session cookie's name; "__Host-sid" by default,
	// the service's default.
	CookieName string
	// CSRFHeader is the header scripts send the CSRF token in;
	// "X-CSRF-Token" by default.
	CSRFHeader string
	// CSRFFormField is the form field HTML forms send the CSRF token in;
	// "csrf_token" by default. It is read with r.PostFormValue, which
	// parses (and consumes) a form body: limit the body size with
	// http.MaxBytesReader before this middleware if forms may be large.
	CSRFFormField string
	// ClientIP returns the IP address of the client. By default it is the
	// host of r.RemoteAddr, which is wrong behind a reverse proxy or load
	// balancer: there, supply a function that takes the address from the
	// header your proxy sets, trusting only what the proxy wrote.
	ClientIP func(*http.Request) string
	// OnUnauthenticated answers a request without a usable session. err
	// satisfies IsUnauthenticated, and IsReauthRequired when the user must
	// re-authenticate. By default it answers 401 with a JSON error.
	OnUnauthenticated func(w http.ResponseWriter, r *http.Request, err error)
	// OnUnavailable answers a request whose session could not be checked
	// (err satisfies IsUnavailable). By default it logs a warning and
	// answers 503 with a JSON error. It must not call the next handler.
	OnUnavailable func(w http.ResponseWriter, r *http.Request, err error)
}

// Defaults of the Middleware's fields.
const (
	DefaultCookieName    = "__Host-sid"
	DefaultCSRFHeader    = "X-CSRF-Token"
	DefaultCSRFFormField = "csrf_token"
)

// Limits of the service on what a request may carry; longer or stranger
// values would be refused by the service as invalid_request.
const (
	maxUserAgent = 1024
	maxPath      = 2048
	maxCSRF      = 256
)

// errNoCookie is the error of a request without a session cookie.
var errNoCookie = &Error{Status: http.StatusUnauthorized, Code: codeNotFound, Message: "no session cookie"}

type sessionKey struct{}

// SessionFrom returns the session that Require validated for a request.
func SessionFrom(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(*Session)
	return s, ok && s != nil
}

// SetCookie sends the browser the session cookie of a new or regenerated
// session.
func SetCookie(w http.ResponseWriter, issued *Issued) {
	if issued != nil && issued.Cookie != "" {
		w.Header().Add("Set-Cookie", issued.Cookie)
	}
}

// ClearCookie tells the browser to delete the session cookie name.
func ClearCookie(w http.ResponseWriter, name string) {
	w.Header().Add("Set-Cookie", name+"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax")
}

// Require returns a handler that calls next only for requests with a
// valid session (see Middleware). It reads m's fields once, now; it panics
// if m.Client is nil.
func (m *Middleware) Require(next http.Handler) http.Handler {
	if m.Client == nil {
		panic("sessionmon client: Middleware.Client is nil")
	}
	cookieName := or(m.CookieName, DefaultCookieName)
	csrfHeader := or(m.CSRFHeader, DefaultCSRFHeader)
	csrfField := or(m.CSRFFormField, DefaultCSRFFormField)
	clientIP := m.ClientIP
	if clientIP == nil {
		clientIP = remoteIP
	}
	onUnauth := m.OnUnauthenticated
	if onUnauth == nil {
		onUnauth = defaultUnauthenticated
	}
	onUnavail := m.OnUnavailable
	if onUnavail == nil {
		onUnavail = defaultUnavailable
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		if err != nil || c.Value == "" {
			onUnauth(w, r, errNoCookie)
			return
		}
		var csrf string
		if !safeMethod(r.Method) {
			csrf = csrfToken(r, csrfHeader, csrfField)
			if csrf == "" {
				writeError(w, http.StatusForbidden, "csrf_required", "CSRF token required")
				return
			}
			if !plausibleCSRF(csrf) {
				writeError(w, http.StatusForbidden, codeCSRF, "CSRF token does not match")
				return
			}
		}
		s, err := m.Client.Validate(r.Context(), AccessRequest{
			Token:     c.Value,
			IP:        clientIP(r),
			UserAgent: clean(r.UserAgent(), maxUserAgent),
			CSRFToken: csrf,
			Path:      clean(r.URL.Path, maxPath),
		})
		switch {
		case err == nil:
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
		case IsUnauthenticated(err):
			if !IsReauthRequired(err) {
				ClearCookie(w, cookieName)
			}
			onUnauth(w, r, err)
		case IsCSRFMismatch(err):
			writeError(w, http.StatusForbidden, codeCSRF, "CSRF token does not match")
		case IsUnavailable(err):
			onUnavail(w, r, err)
		default:
			slog.ErrorContext(r.Context(), "sessionmon: session validation failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "internal error")
		}
	})
}

// safeMethod reports whether a method must not change state (RFC 9110),
// so needs no CSRF token.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// csrfToken returns the CSRF token of a request: the header, or for a form
// post the form field. Other bodies are left unread for the handler.
func csrfToken(r *http.Request, header, field string) string {
	if t := r.Header.Get(header); t != "" {
		return t
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
		return r.PostFormValue(field)
	}
	return ""
}

// plausibleCSRF reports whether t could be a CSRF token at all: printable
// ASCII within the service's limit. Anything else cannot match, and would
// make the service answer invalid_request.
func plausibleCSRF(t string) bool {
	if len(t) > maxCSRF {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] >= 0x7f {
			return false
		}
	}
	return true
}

// clean makes s acceptable to the service: valid UTF-8 without control
// characters, at most max bytes. The User-Agent and path are the client's
// to choose, and must not turn a request into a 500.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// remoteIP is the host of r.RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func defaultUnauthenticated(w http.ResponseWriter, _ *http.Request, err error) {
	code := codeNotFound
	msg := "authentication required"
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		code, msg = e.Code, e.Message
	}
	writeError(w, http.StatusUnauthorized, code, msg)
}

func defaultUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	slog.WarnContext(r.Context(), "sessionmon: session service unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusServiceUnavailable, "unavailable", "session service unavailable")
}

// writeError answers {"error":{"code":..., "message":...}}, the service's
// error form.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
