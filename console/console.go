// Package console is the review console of the alerter: a server-rendered
// web UI (net/http, html/template, embedded CSS and a small script, no
// build step) where reviewers sign in, list and filter incidents, read
// their evidence, the user's audit timeline and live sessions, decide
// (acknowledge, resolve, false positive, reopen) and act on sessions
// (revoke one or all, force re-authentication).
//
// The console's own sessions come from the session service: signing in
// creates a session for user "reviewer:<name>", every request is checked
// with client.Middleware (the CSRF token on every unsafe request), and
// signing out ends the session at the service. Every decision and action
// is published as an events.Action through the alerter, for the audit log.
//
// Security: __Host- cookies (Secure, HttpOnly, SameSite=Strict), a
// synchronizer CSRF token plus Go's cross-origin protection (Sec-Fetch-Site
// / Origin), a strict Content-Security-Policy without inline scripts or
// styles, the usual security headers, no-store caching, authorization
// (reviewer and role) on every page and action, constant-time password
// and token comparisons, throttled sign-in, and no token in any log.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/events"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names. The __Host- prefix makes browsers insist on Secure,
// Path=/ and no Domain: the cookie belongs to this host only.
const (
	SessionCookie = "__Host-sessionmon-console"
	loginCookie   = "__Host-sessionmon-login"
)

// Reason is the reason given to the session service for revocations and
// re-authentications ordered from the console (the reviewer is in the
// action).
const Reason = "security_review"

// ContentSecurityPolicy is sent with every answer: only this origin's
// script and style files, no inline code, no framing, forms post here.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Alerts is what the console needs of the alerter (*alerter.Service).
type Alerts interface {
	List(f alerter.Filter) []*alerter.Incident
	Rules() []string
	Get(ctx context.Context, id string) (*alerter.Incident, error)
	Decide(ctx context.Context, id, actor string, d alerter.Decision, note string) (*alerter.Incident, error)
	Record(ctx context.Context, id string, c alerter.Change) (*alerter.Incident, error)
}

var _ Alerts = (*alerter.Service)(nil)

// Config wires the console.
type Config struct {
	Alerts Alerts
	// Sessions is a client of the session service with an admin API key:
	// it holds the console's own sessions, lists users' sessions and
	// revokes them.
	Sessions *client.Client
	// Timeline reads users' history from the audit log; nil when the
	// audit log is not configured (the page says so).
	Timeline audit.Timeline
	Accounts *Accounts
	// ClientIP returns the client's address; by default the host of
	// RemoteAddr (see TrustedProxyIP).
	ClientIP func(*http.Request) string
	// PublicURL is the console's address as browsers see it, when a
	// proxy in front changes the Host (trusted as an origin).
	PublicURL string
	// TimelineSpan is how far before an incident its user's timeline
	// starts (default 7 days).
	TimelineSpan time.Duration
	Log          *slog.Logger
	Metrics      *Metrics
	Now          func() time.Time
}

// Console is the review console.
type Console struct {
	cfg      Config
	log      *slog.Logger
	m        *Metrics
	pages    map[string]*template.Template
	throttle *throttle
	handler  http.Handler
}

// New checks the configuration and builds the console.
func New(c Config) (*Console, error) {
	if c.Alerts == nil || c.Sessions == nil || c.Accounts == nil {
		return nil, errors.New("console: Alerts, Sessions and Accounts are required")
	}
	if c.ClientIP == nil {
		c.ClientIP = remoteIP
	}
	if c.TimelineSpan <= 0 {
		c.TimelineSpan = 7 * 24 * time.Hour
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	con := &Console{cfg: c, log: c.Log.With("component", "console"), m: c.Metrics, pages: map[string]*template.Template{},
		throttle: newThrottle(10, 15*time.Minute)}
	for _, p := range []string{"login", "list", "alert", "error"} {
		t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, err
		}
		con.pages[p] = t
	}
	cop := http.NewCrossOriginProtection()
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil {
			return nil, err
		}
		if err := cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			return nil, err
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		con.m.Refused.WithLabelValues("cross_origin").Inc()
		con.fail(w, r, http.StatusForbidden, "Cross-origin request refused.")
	}))
	con.handler = secure(http.MaxBytesHandler(cop.Handler(con.routes()), 64<<10))
	return con, nil
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/alerts", http.StatusSeeOther) })
	mux.HandleFunc("GET /login", c.loginForm)
	mux.HandleFunc("POST /login", c.login)
	mux.Handle("POST /logout", c.authed(false, c.logout))
	mux.Handle("GET /alerts", c.authed(false, c.list))
	mux.Handle("GET /alerts/{id}", c.authed(false, c.detail))
	mux.Handle("POST /alerts/{id}/decide", c.authed(true, c.decide))
	mux.Handle("POST /alerts/{id}/sessions/revoke", c.authed(true, c.sessionAction(alerter.ActionRevokeSession)))
	mux.Handle("POST /alerts/{id}/sessions/reauth", c.authed(true, c.sessionAction(alerter.ActionReauth)))
	mux.Handle("POST /alerts/{id}/user/revoke", c.authed(true, c.sessionAction(alerter.ActionRevokeUser)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "Page not found.")
	})
	return mux
}

// secure sets the security headers of every answer.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// viewer is the signed-in reviewer of a request.
type viewer struct {
	*Account
	SessionID string
	CSRF      string
	token     string
}

// authed guards a page: a valid console session (checked by the session
// service, with the CSRF token on unsafe methods), of a reviewer still in
// the configuration, with the responder role when act is set.
func (c *Console) authed(act bool, h func(http.ResponseWriter, *http.Request, *viewer)) http.Handler {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := client.SessionFrom(r.Context())
		if !ok {
			c.fail(w, r, http.StatusUnauthorized, "Sign in first.")
			return
		}
		name, isReviewer := strings.CutPrefix(s.UserID, UserPrefix)
		acct, known := c.cfg.Accounts.Get(name)
		if !isReviewer || !known {
			// A session of someone who is no longer a reviewer: end it.
			if ck, err := r.Cookie(SessionCookie); err == nil {
				_ = c.cfg.Sessions.Logout(r.Context(), ck.Value)
			}
			client.ClearCookie(w, SessionCookie)
			c.m.Refused.WithLabelValues("not_a_reviewer").Inc()
			c.log.Warn("session of an unknown reviewer refused and ended", "user_id", s.UserID, "session_id", s.SessionID)
			c.fail(w, r, http.StatusForbidden, "This account may not use the console.")
			return
		}
		if act && !acct.CanAct() {
			c.m.Refused.WithLabelValues("role").Inc()
			c.fail(w, r, http.StatusForbidden, "Your role ("+acct.Role+") may look but not act.")
			return
		}
		ck, _ := r.Cookie(SessionCookie)
		h(w, r, &viewer{Account: acct, SessionID: s.SessionID, CSRF: s.CSRFToken, token: ck.Value})
	})
	mw := &client.Middleware{
		Client:     c.cfg.Sessions,
		CookieName: SessionCookie,
		ClientIP:   c.cfg.ClientIP,
		OnUnauthenticated: func(w http.ResponseWriter, r *http.Request, err error) {
			c.m.Refused.WithLabelValues("unauthenticated").Inc()
			next := "/alerts"
			if r.Method == http.MethodGet {
				next = r.URL.RequestURI()
			}
			v := url.Values{"next": {next}}
			if client.IsReauthRequired(err) {
				v.Set("why", "reauth")
			} else if _, e := r.Cookie(SessionCookie); e == nil {
				v.Set("why", "expired")
			}
			http.Redirect(w, r, "/login?"+v.Encode(), http.StatusSeeOther)
		},
		OnUnavailable: func(w http.ResponseWriter, r *http.Request, err error) {
			c.m.Refused.WithLabelValues("unavailable").Inc()
			c.log.Warn("session service unreachable: refusing the request", "path", r.URL.Path, "err", err)
			c.fail(w, r, http.StatusServiceUnavailable, "The session service cannot be reached, so your session cannot be checked. Try again shortly.")
		},
	}
	return mw.Require(inner)
}

// render executes a page into a buffer, then writes it.
func (c *Console) render(w http.ResponseWriter, status int, page string, data any) {
	var b bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		c.log.Error("render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

type errorPage struct {
	base
	Status  int
	Message string
}

// base is what every page's layout needs.
type base struct {
	Title    string
	Reviewer *viewer
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, status, "error", errorPage{base: base{Title: http.StatusText(status)}, Status: status, Message: msg})
}

// sign-in

type loginPage struct {
	base
	CSRF    string
	Next    string
	Name    string
	Error   string
	Message string
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	p := loginPage{base: base{Title: "Sign in"}, Next: safeNext(r.URL.Query().Get("next"))}
	switch r.URL.Query().Get("why") {
	case "expired":
		p.Message = "Your session ended. Sign in again."
	case "reauth":
		p.Message = "Your session was flagged and needs a new sign-in."
	case "out":
		p.Message = "Signed out."
	}
	c.showLogin(w, http.StatusOK, p)
}

// showLogin renders the form with a fresh sign-in CSRF token, in a cookie
// and a hidden field (double submit: a cross-site form cannot read the
// cookie to copy it).
func (c *Console) showLogin(w http.ResponseWriter, status int, p loginPage) {
	p.CSRF = randomToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: p.CSRF, Path: "/", MaxAge: 1800,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.render(w, status, "login", p)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, http.StatusBadRequest, "Bad form.")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	p := loginPage{base: base{Title: "Sign in"}, Next: safeNext(r.PostForm.Get("next")), Name: name}
	if len(name) > 64 {
		p.Name = ""
	}
	ck, err := r.Cookie(loginCookie)
	formTok := r.PostForm.Get("login_csrf")
	if err != nil || formTok == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(formTok)) != 1 {
		c.m.Logins.WithLabelValues("csrf").Inc()
		p.Error = "The sign-in form expired. Try again."
		c.showLogin(w, http.StatusForbidden, p)
		return
	}
	ip, ua := c.cfg.ClientIP(r), cleanUA(r.UserAgent())
	password := r.PostForm.Get("password")
	now := c.cfg.Now()
	if c.throttle.blocked("name:"+name, now) || c.throttle.blocked("ip:"+ip, now) {
		c.m.Logins.WithLabelValues("throttled").Inc()
		c.log.Warn("sign-in throttled", "reviewer", userID(name), "ip", ip)
		p.Error = "Too many failed sign-ins. Wait 15 minutes."
		c.showLogin(w, http.StatusTooManyRequests, p)
		return
	}
	acct, ok := c.cfg.Accounts.Authenticate(name, password)
	if !ok || len(password) > 1024 {
		c.throttle.fail("name:"+name, now)
		c.throttle.fail("ip:"+ip, now)
		c.m.Logins.WithLabelValues("bad_credentials").Inc()
		c.log.Warn("sign-in failed", "reviewer", userID(name), "ip", ip)
		c.report(ctx, client.LoginEvent{Failed: true, UserID: userID(name), IP: ip, UserAgent: ua})
		p.Error = "Wrong name or password."
		c.showLogin(w, http.StatusUnauthorized, p)
		return
	}
	c.throttle.reset("name:" + name)
	req := client.CreateRequest{UserID: UserPrefix + acct.Name, IP: ip, UserAgent: ua,
		Attributes: map[string]string{"via": "console", "role": acct.Role}}
	if old, err := r.Cookie(SessionCookie); err == nil && old.Value != "" {
		// End whatever session the browser held: a planted (fixated) or
		// flagged one never becomes the signed-in one.
		req.ReplaceToken = old.Value
	}
	issued, err := c.cfg.Sessions.CreateSession(ctx, req)
	if err != nil {
		c.m.Logins.WithLabelValues("error").Inc()
		c.log.Error("create console session", "reviewer", acct.Name, "err", err)
		p.Error = "Cannot sign in now: the session service did not answer. Try again shortly."
		status := http.StatusInternalServerError
		if client.IsUnavailable(err) {
			status = http.StatusServiceUnavailable
		}
		c.showLogin(w, status, p)
		return
	}
	c.report(ctx, client.LoginEvent{UserID: UserPrefix + acct.Name, IP: ip, UserAgent: ua})
	c.m.Logins.WithLabelValues("ok").Inc()
	c.log.Info("reviewer signed in", "reviewer", acct.Name, "session_id", issued.SessionID, "ip", ip)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: issued.Token, Path: "/",
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, p.Next, http.StatusSeeOther)
}

// report tells the session service of a sign-in attempt, so that the
// detector's brute-force rules watch the console too. Best effort.
func (c *Console) report(ctx context.Context, e client.LoginEvent) {
	if err := c.cfg.Sessions.ReportLogin(ctx, e); err != nil {
		c.log.Warn("report sign-in attempt", "err", err)
	}
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := c.cfg.Sessions.Logout(r.Context(), v.token); err != nil {
		c.log.Error("sign out", "reviewer", v.Name, "session_id", v.SessionID, "err", err)
		c.fail(w, r, http.StatusBadGateway, "Could not end your session at the session service. Try again.")
		return
	}
	client.ClearCookie(w, SessionCookie)
	c.log.Info("reviewer signed out", "reviewer", v.Name, "session_id", v.SessionID)
	http.Redirect(w, r, "/login?why=out", http.StatusSeeOther)
}

// pages

type listPage struct {
	base
	Incidents  []*alerter.Incident
	Form       filterForm
	Rules      []string
	Problems   []string
	Severities []string
	States     []string
	Query      string
	Limit      int
}

const listLimit = 500

func (c *Console) list(w http.ResponseWriter, r *http.Request, v *viewer) {
	f, form, problems := parseFilter(r.URL.Query())
	f.Limit = listLimit
	rules := c.cfg.Alerts.Rules()
	if form.Rule != "" && !slices.Contains(rules, form.Rule) {
		rules = append(rules, form.Rule)
	}
	c.render(w, http.StatusOK, "list", listPage{
		base:      base{Title: "Alerts", Reviewer: v},
		Incidents: c.cfg.Alerts.List(f), Form: form, Rules: rules, Problems: problems,
		Severities: alerter.Severities, Query: form.query(), Limit: listLimit,
		States: []string{stateActive, string(alerter.Open), string(alerter.Acknowledged), string(alerter.Resolved),
			string(alerter.FalsePositive), stateAll},
	})
}

type alertPage struct {
	base
	Inc         *alerter.Incident
	Latest      events.Alert
	Travel      *travelView
	Allowed     []alerter.Decision
	Sessions    []client.Session
	SessionsErr string
	Timeline    []audit.Entry
	TimelineErr string
	TimelineOff bool
	Flash       string
	FlashFailed bool
	Error       string
	Note        string
}

func (c *Console) detail(w http.ResponseWriter, r *http.Request, v *viewer) {
	inc, ok := c.incident(w, r)
	if !ok {
		return
	}
	p := c.alertPage(r.Context(), v, inc)
	p.Flash, p.FlashFailed = flash(r.URL.Query())
	c.render(w, http.StatusOK, "alert", p)
}

func (c *Console) incident(w http.ResponseWriter, r *http.Request) (*alerter.Incident, bool) {
	inc, err := c.cfg.Alerts.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, alerter.ErrNotFound):
		c.fail(w, r, http.StatusNotFound, "No such alert (closed alerts are deleted after the retention period; the audit log keeps them).")
		return nil, false
	case err != nil:
		c.log.Error("get incident", "incident", r.PathValue("id"), "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The alert store cannot be reached.")
		return nil, false
	}
	return inc, true
}

// alertPage gathers an incident's page: its evidence, the user's live
// sessions and their audit timeline (each may fail on its own; the page
// says what is missing).
func (c *Console) alertPage(ctx context.Context, v *viewer, inc *alerter.Incident) alertPage {
	p := alertPage{base: base{Title: inc.Rule + " · " + inc.Subject(), Reviewer: v}, Inc: inc, Latest: inc.Latest(),
		Allowed: alerter.Allowed(inc.State)}
	p.Travel = travel(p.Latest)
	if inc.UserID == "" {
		return p
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sessions, err := c.cfg.Sessions.ListUserSessions(sctx, inc.UserID)
	cancel()
	if err != nil {
		c.log.Warn("list user sessions", "user_id", inc.UserID, "err", err)
		p.SessionsErr = "The session service did not answer: the user's sessions are not shown."
	}
	p.Sessions = sessions
	if c.cfg.Timeline == nil {
		p.TimelineOff = true
		return p
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	entries, err := c.cfg.Timeline.UserTimeline(tctx, inc.UserID, inc.FirstSeen.Add(-c.cfg.TimelineSpan), c.cfg.Now(), 200)
	if err != nil {
		c.log.Warn("user timeline", "user_id", inc.UserID, "err", err)
		p.TimelineErr = "The audit log did not answer: the timeline is not shown."
	}
	p.Timeline = entries
	return p
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	df, err := parseDecision(r.PostForm)
	if err != nil {
		c.rejected(w, r, v, http.StatusBadRequest, err.Error(), r.PostForm.Get("note"))
		return
	}
	_, err = c.cfg.Alerts.Decide(r.Context(), id, v.Name, df.Decision, df.Note)
	switch {
	case errors.Is(err, alerter.ErrNotFound):
		c.fail(w, r, http.StatusNotFound, "No such alert.")
		return
	case errors.Is(err, alerter.ErrTransition):
		c.rejected(w, r, v, http.StatusConflict, message(err, alerter.ErrTransition), df.Note)
		return
	case errors.Is(err, alerter.ErrInvalid):
		c.rejected(w, r, v, http.StatusBadRequest, message(err, alerter.ErrInvalid), df.Note)
		return
	case err != nil:
		c.log.Error("decide", "incident", id, "reviewer", v.Name, "err", err)
		c.fail(w, r, http.StatusServiceUnavailable, "The decision could not be stored. Try again.")
		return
	}
	c.m.Decisions.WithLabelValues(string(df.Decision)).Inc()
	http.Redirect(w, r, "/alerts/"+url.PathEscape(id)+"?done="+string(df.Decision), http.StatusSeeOther)
}

// sessionAction revokes one of the user's sessions, all of them, or forces
// re-authentication of one, and records it on the incident (and in the
// audit log) whether the session service did it or refused.
func (c *Console) sessionAction(action string) func(http.ResponseWriter, *http.Request, *viewer) {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		inc, ok := c.incident(w, r)
		if !ok {
			return
		}
		sf, err := parseSessionAction(r.PostForm, action != alerter.ActionRevokeUser)
		if err != nil {
			c.rejected(w, r, v, http.StatusBadRequest, err.Error(), r.PostForm.Get("note"))
			return
		}
		if inc.UserID == "" {
			c.rejected(w, r, v, http.StatusBadRequest, "This alert is about an IP address, not a user: there are no sessions to act on.", sf.Note)
			return
		}
		ctx := r.Context()
		ch := alerter.Change{Actor: v.Name, Action: action, SessionID: sf.SessionID, Note: sf.Note, Result: events.ResultDone}
		var callErr error
		switch action {
		case alerter.ActionRevokeUser:
			ch.Count, callErr = c.cfg.Sessions.RevokeUserSessions(ctx, inc.UserID, Reason, "")
		default:
			// Only sessions of the incident's user: the form cannot be
			// used to end anybody else's.
			list, err := c.cfg.Sessions.ListUserSessions(ctx, inc.UserID)
			if err != nil {
				c.log.Error("list user sessions", "user_id", inc.UserID, "err", err)
				c.rejected(w, r, v, http.StatusBadGateway, "The session service did not answer. Nothing was done.", sf.Note)
				return
			}
			if !slices.ContainsFunc(list, func(s client.Session) bool { return s.SessionID == sf.SessionID }) {
				c.rejected(w, r, v, http.StatusConflict, "That session is not one of the user's live sessions (any more). Nothing was done.", sf.Note)
				return
			}
			if action == alerter.ActionRevokeSession {
				callErr = c.cfg.Sessions.RevokeSession(ctx, sf.SessionID, Reason, inc.Rule)
			} else {
				callErr = c.cfg.Sessions.ForceReauth(ctx, sf.SessionID, Reason, inc.Rule)
			}
			if callErr == nil {
				ch.Count = 1
			}
		}
		if callErr != nil {
			ch.Result, ch.Error = events.ResultFailed, errorCode(callErr)
			c.log.Warn("session action refused", "incident", inc.ID, "reviewer", v.Name, "action", action, "err", callErr)
		}
		if _, err := c.cfg.Alerts.Record(ctx, inc.ID, ch); err != nil {
			c.log.Error("record session action", "incident", inc.ID, "action", action, "err", err)
			c.fail(w, r, http.StatusServiceUnavailable, "The action was sent to the session service but could not be recorded on the alert: "+
				"check the user's sessions, and tell whoever runs the alerter.")
			return
		}
		c.m.Decisions.WithLabelValues(action).Inc()
		q := "?done=" + action
		if callErr != nil {
			q = "?failed=" + action
		}
		http.Redirect(w, r, "/alerts/"+url.PathEscape(inc.ID)+q, http.StatusSeeOther)
	}
}

// rejected re-renders an incident's page with an error, keeping the note.
func (c *Console) rejected(w http.ResponseWriter, r *http.Request, v *viewer, status int, msg, note string) {
	inc, ok := c.incident(w, r)
	if !ok {
		return
	}
	p := c.alertPage(r.Context(), v, inc)
	p.Error, p.Note = msg, note
	c.render(w, status, "alert", p)
}

func message(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}

// errorCode is the session service's code of an error, for the record.
func errorCode(err error) string {
	var e *client.Error
	switch {
	case errors.As(err, &e) && e.Code != "":
		return e.Code
	case client.IsUnavailable(err):
		return "unavailable"
	}
	return "error"
}

// flashes are the fixed messages shown after an action (never text from
// the request).
var flashes = map[string]string{
	string(alerter.Acknowledge):       "Acknowledged.",
	string(alerter.Resolve):           "Resolved.",
	string(alerter.MarkFalsePositive): "Marked as a false positive.",
	string(alerter.Reopen):            "Reopened.",
	alerter.ActionRevokeSession:       "Session revoked.",
	alerter.ActionRevokeUser:          "All of the user's sessions revoked.",
	alerter.ActionReauth:              "Re-authentication forced.",
}

var failedFlashes = map[string]string{
	alerter.ActionRevokeSession: "The session service refused to revoke the session (see the history).",
	alerter.ActionRevokeUser:    "The session service refused to revoke the user's sessions (see the history).",
	alerter.ActionReauth:        "The session service refused to force re-authentication (see the history).",
}

func flash(q url.Values) (string, bool) {
	if m, ok := failedFlashes[q.Get("failed")]; ok {
		return m, true
	}
	return flashes[q.Get("done")], false
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// remoteIP is the host of r.RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// cleanUA makes a User-Agent acceptable to the session service.
func cleanUA(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xFFFD {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
	if len(s) > 512 {
		s = strings.ToValidUTF8(s[:512], "")
	}
	if s == "" {
		s = "unknown"
	}
	return s
}
