// Package httpapi is the HTTP JSON API of the session service. Errors are
// mapped to statuses in one table (errors.go); every /v1 route needs an API
// key; tokens travel only in JSON bodies.
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/sessions"
)

// Config wires the API.
type Config struct {
	Service *sessions.Service
	Keys    *Keys
	// Ready reports whether the service can serve (the store is up).
	Ready func(ctx context.Context) (map[string]string, error)
	// MetricsHandler serves /metrics.
	MetricsHandler http.Handler
	Metrics        *Metrics
	Log            *slog.Logger
}

type api struct {
	Config
	cookieName  string
	validatedOK prometheus.Counter
}

// Handler returns the API's handler.
func Handler(c Config) http.Handler {
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	a := &api{Config: c, cookieName: c.Service.Policy().CookieName, validatedOK: c.Metrics.Validated.WithLabelValues("ok")}
	mux := http.NewServeMux()
	route := func(pattern string, h func(http.ResponseWriter, *http.Request, sessions.Caller) error, status int) {
		mux.Handle(pattern, a.instrument(pattern, a.authed(h, status)))
	}
	route("POST /v1/sessions", a.create, http.StatusCreated)
	route("POST /v1/sessions/validate", a.validate, http.StatusOK)
	route("POST /v1/sessions/regenerate", a.regenerate, http.StatusOK)
	route("POST /v1/sessions/logout", a.logout, http.StatusNoContent)
	route("GET /v1/users/{user_id}/sessions", a.list, http.StatusOK)
	route("DELETE /v1/users/{user_id}/sessions/{session_id}", a.terminate, http.StatusNoContent)
	route("POST /v1/users/{user_id}/sessions/revoke", a.revokeUser, http.StatusOK)
	route("POST /v1/sessions/{session_id}/revoke", a.revoke, http.StatusNoContent)
	route("POST /v1/sessions/{session_id}/reauth", a.reauth, http.StatusNoContent)
	route("POST /v1/auth-events", a.authEvent, http.StatusAccepted)
	mux.Handle("GET /healthz", a.instrument("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	mux.Handle("GET /readyz", a.instrument("GET /readyz", http.HandlerFunc(a.ready)))
	if c.MetricsHandler != nil {
		mux.Handle("GET /metrics", c.MetricsHandler)
	}
	mux.Handle("/", a.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFoundRoute)
	})))
	return mux
}

// statusWriter records the status written, and when the request began.
type statusWriter struct {
	http.ResponseWriter
	status int
	start  time.Time
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// requestStart returns when instrument began serving the request w
// answers, or now.
func requestStart(w http.ResponseWriter) time.Time {
	if sw, ok := w.(*statusWriter); ok {
		return sw.start
	}
	return time.Now()
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (a *api) instrument(route string, h http.Handler) http.Handler {
	hist := a.Metrics.RequestSeconds.WithLabelValues(route)
	byCode := a.Metrics.Requests.MustCurryWith(prometheus.Labels{"route": route})
	var counters sync.Map // status -> prometheus.Counter
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := statusWriters.Get().(*statusWriter)
		*sw = statusWriter{ResponseWriter: w, start: time.Now()}
		defer func() {
			if p := recover(); p != nil {
				a.Log.Error("handler panic", "route", route, "panic", fmt.Sprint(p))
				if sw.status == 0 {
					writeError(sw, fmt.Errorf("panic"))
				}
			}
			hist.Observe(time.Since(sw.start).Seconds())
			c, ok := counters.Load(sw.status)
			if !ok {
				c, _ = counters.LoadOrStore(sw.status, byCode.WithLabelValues(strconv.Itoa(sw.status)))
			}
			c.(prometheus.Counter).Inc()
			*sw = statusWriter{}
			statusWriters.Put(sw)
		}()
		h.ServeHTTP(sw, r)
	})
}

// authed authenticates the API key and runs h; h returns an error or
// writes its answer with status.
func (a *api) authed(h func(http.ResponseWriter, *http.Request, sessions.Caller) error, status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := a.Keys.Authenticate(r)
		if !ok {
			writeError(w, sessions.ErrUnauthorized)
			return
		}
		if err := h(w, r, caller); err != nil {
			if writeError(w, err) >= 500 && sessions.ErrorCode(err) == sessions.CodeInternal {
				a.Log.Error("internal error", "route", r.Pattern, "caller", caller.Name, "err", err)
			} else if sessions.ErrorCode(err) == sessions.CodeUnavailable {
				a.Log.Warn("store unavailable", "route", r.Pattern, "err", err)
			}
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
		}
	})
}

type createBody struct {
	UserID       string            `json:"user_id"`
	IP           string            `json:"ip"`
	UserAgent    string            `json:"user_agent"`
	ReplaceToken string            `json:"replace_token"`
	Attributes   map[string]string `json:"attributes"`
}

// issuedBody answers create and regenerate.
type issuedBody struct {
	Token         string    `json:"token"`
	SessionID     string    `json:"session_id"`
	UserID        string    `json:"user_id"`
	CSRFToken     string    `json:"csrf_token"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	Cookie        string    `json:"cookie"`
}

func (a *api) issued(is *sessions.Issued) issuedBody {
	s := is.Session
	return issuedBody{
		Token: is.Token.Reveal(), SessionID: s.ID, UserID: s.UserID, CSRFToken: s.CSRFToken,
		CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, IdleExpiresAt: s.IdleExpiresAt,
		Cookie: Cookie(a.cookieName, is.Token),
	}
}

// Cookie returns the Set-Cookie value that carries a token: a host-only,
// HTTPS-only cookie that scripts cannot read, withheld from cross-site
// subrequests, and gone when the browser closes.
func Cookie(name string, t sessions.Token) string {
	return name + "=" + t.Reveal() + "; Path=/; Secure; HttpOnly; SameSite=Lax"
}

func (a *api) create(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b createBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	is, err := a.Service.Create(r.Context(), c, sessions.CreateRequest{
		UserID: b.UserID, IP: b.IP, UserAgent: b.UserAgent, ReplaceToken: sessions.Token(b.ReplaceToken), Attributes: b.Attributes,
	})
	if err != nil {
		return err
	}
	a.Metrics.Created.Inc()
	writeJSON(w, http.StatusCreated, a.issued(is))
	return nil
}

type accessBody struct {
	Token     string `json:"token"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	CSRFToken string `json:"csrf_token"`
	Path      string `json:"path"`
}

func (b accessBody) request() sessions.AccessRequest {
	return sessions.AccessRequest{Token: sessions.Token(b.Token), IP: b.IP, UserAgent: b.UserAgent, CSRFToken: b.CSRFToken, Path: b.Path}
}

func (a *api) validate(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	start := requestStart(w)
	var b accessBody
	err := decodeAccess(w, r, &b)
	var s *sessions.Session
	if err == nil {
		s, err = a.Service.Validate(r.Context(), c, b.request())
	}
	a.Metrics.ValidateSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		a.Metrics.Validated.WithLabelValues(string(sessions.ErrorCode(err))).Inc()
		return err
	}
	a.validatedOK.Inc()
	writeSession(w, http.StatusOK, s)
	return nil
}

func (a *api) regenerate(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b accessBody
	if err := decodeAccess(w, r, &b); err != nil {
		return err
	}
	is, err := a.Service.Regenerate(r.Context(), c, b.request())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.issued(is))
	return nil
}

func (a *api) logout(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b struct {
		Token string `json:"token"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if err := a.Service.Logout(r.Context(), c, sessions.Token(b.Token)); err != nil {
		return err
	}
	a.Metrics.SessionsEndedAPI.WithLabelValues("logout").Inc()
	return nil
}

// listedSession is a session in a user's list: no CSRF token, no attributes.
type listedSession struct {
	ID            string         `json:"session_id"`
	App           string         `json:"app"`
	CreatedAt     time.Time      `json:"created_at"`
	LastSeenAt    time.Time      `json:"last_seen_at"`
	IP            string         `json:"ip"`
	UserAgent     string         `json:"user_agent"`
	ExpiresAt     time.Time      `json:"expires_at"`
	IdleExpiresAt time.Time      `json:"idle_expires_at"`
	State         sessions.State `json:"state"`
}

func (a *api) list(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	list, err := a.Service.ListUser(r.Context(), c, r.PathValue("user_id"))
	if err != nil {
		return err
	}
	out := make([]listedSession, 0, len(list))
	for _, s := range list {
		out = append(out, listedSession{ID: s.ID, App: s.App, CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt, IP: s.IP,
			UserAgent: s.UserAgent, ExpiresAt: s.ExpiresAt, IdleExpiresAt: s.IdleExpiresAt, State: s.State})
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

func (a *api) terminate(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	if err := a.Service.TerminateUserSession(r.Context(), c, r.PathValue("user_id"), r.PathValue("session_id")); err != nil {
		return err
	}
	a.Metrics.SessionsEndedAPI.WithLabelValues("terminate").Inc()
	return nil
}

func (a *api) revokeUser(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b struct {
		Reason          string `json:"reason"`
		ExceptSessionID string `json:"except_session_id"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	n, err := a.Service.RevokeUser(r.Context(), c, r.PathValue("user_id"), b.Reason, b.ExceptSessionID)
	if err != nil {
		return err
	}
	a.Metrics.SessionsEndedAPI.WithLabelValues("revoke_user").Add(float64(n))
	writeJSON(w, http.StatusOK, map[string]int{"revoked": n})
	return nil
}

type markBody struct {
	Reason string `json:"reason"`
	Rule   string `json:"rule"`
}

func (a *api) revoke(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b markBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if err := a.Service.Revoke(r.Context(), c, r.PathValue("session_id"), b.Reason, b.Rule); err != nil {
		return err
	}
	a.Metrics.SessionsEndedAPI.WithLabelValues("revoke").Inc()
	return nil
}

func (a *api) reauth(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b markBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	return a.Service.Reauth(r.Context(), c, r.PathValue("session_id"), b.Reason, b.Rule)
}

func (a *api) authEvent(w http.ResponseWriter, r *http.Request, c sessions.Caller) error {
	var b struct {
		Type      string `json:"type"`
		UserID    string `json:"user_id"`
		IP        string `json:"ip"`
		UserAgent string `json:"user_agent"`
	}
	if err := decode(w, r, &b); err != nil {
		return err
	}
	typ := events.Type("auth." + b.Type)
	if err := a.Service.RecordAuthEvent(r.Context(), c, sessions.AuthEvent{Type: typ, UserID: b.UserID, IP: b.IP, UserAgent: b.UserAgent}); err != nil {
		return err
	}
	a.Metrics.AuthEvents.WithLabelValues(b.Type).Inc()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
	return nil
}

func (a *api) ready(w http.ResponseWriter, r *http.Request) {
	if a.Ready == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks, err := a.Ready(ctx)
	if checks == nil {
		checks = map[string]string{}
	}
	if err != nil {
		checks["status"] = "not ready"
		writeJSON(w, http.StatusServiceUnavailable, checks)
		return
	}
	checks["status"] = "ready"
	writeJSON(w, http.StatusOK, checks)
}
