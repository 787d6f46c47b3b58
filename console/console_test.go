package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/alerter/alertertest"
	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/console"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

const (
	adminSecret = "alerter-secret-0123456789abcdef"
	shopSecret  = "shop-secret-0123456789abcdef"
	password    = "correct horse battery staple"
)

// cheap argon2id costs for tests; production hashes use DefaultArgon2.
var testArgon = console.Argon2Params{Memory: 64, Time: 1, Threads: 1}

// timeline is a fake audit log.
type timeline struct {
	mu      sync.Mutex
	entries []audit.Entry
	err     error
	asked   []string
}

func (tl *timeline) UserTimeline(_ context.Context, user string, from, to time.Time, limit int) ([]audit.Entry, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.asked = append(tl.asked, user)
	return tl.entries, tl.err
}

// env is a console over a real session service (in-process, over the
// test Redis) and an alerter on an in-memory store.
type env struct {
	srv      *httptest.Server
	alerts   *alerter.Service
	store    *alertertest.MemStore
	actions  *alertertest.Actions
	admin    *client.Client // the alerter's key
	shop     *client.Client // an app's key, for users' sessions
	timeline *timeline
	log      *syncBuffer
}

// syncBuffer collects the console's log.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func sessionService(t *testing.T) string {
	t.Helper()
	rdb := testenv.Redis(t)
	store, err := redisstore.New(rdb, redisstore.Options{Prefix: testenv.Prefix(t, rdb)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(store, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := httpapi.ParseAPIKeys("test keys", "alerter:admin:"+adminSecret+",shop:app:"+shopSecret)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpapi.NewKeys(parsed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.Handler(httpapi.Config{Service: svc, Keys: keys, Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func newEnv(t *testing.T, mod ...func(*console.Config)) *env {
	t.Helper()
	svcURL := sessionService(t)
	e := &env{store: alertertest.NewMemStore(), actions: &alertertest.Actions{}, timeline: &timeline{}, log: &syncBuffer{}}
	var err error
	if e.admin, err = client.New(svcURL, adminSecret); err != nil {
		t.Fatal(err)
	}
	if e.shop, err = client.New(svcURL, shopSecret); err != nil {
		t.Fatal(err)
	}
	e.alerts, err = alerter.New(alerter.Config{Store: e.store, Actions: e.actions, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.alerts.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for !e.alerts.Ready() {
		time.Sleep(time.Millisecond)
	}
	var specs []alerter.ReviewerSpec
	for _, r := range [][2]string{{"alice", alerter.RoleResponder}, {"vic", alerter.RoleViewer}} {
		h, err := console.HashPassword(password, testArgon)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, alerter.ReviewerSpec{Name: r[0], Role: r[1], PasswordHash: h, File: "test.yaml", Line: 1})
	}
	accounts, err := console.NewAccounts(specs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := console.Config{Alerts: e.alerts, Sessions: e.admin, Timeline: e.timeline, Accounts: accounts,
		Log: slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range mod {
		f(&cfg)
	}
	con, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewTLSServer(con)
	t.Cleanup(e.srv.Close)
	return e
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
type browser struct {
	t  *testing.T
	e  *env
	hc *http.Client
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	hc := e.srv.Client()
	hc.Jar = jar
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, e: e, hc: hc}
}

type page struct {
	status int
	body   string
	header http.Header
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "console-test")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, string(data), resp.Header}
}

func (b *browser) get(path string) page { return b.do("GET", path, nil) }

var (
	loginCSRF = regexp.MustCompile(`name="login_csrf" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
)

func field(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, body)
	}
	return m[1]
}

// signIn signs in through the form and returns the page's CSRF token.
func (b *browser) signIn(name, pw string) page {
	b.t.Helper()
	p := b.get("/login")
	return b.do("POST", "/login", url.Values{"login_csrf": {field(b.t, loginCSRF, p.body)}, "name": {name}, "password": {pw}, "next": {"/alerts"}})
}

func (b *browser) mustSignIn(name string) string {
	b.t.Helper()
	p := b.signIn(name, password)
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/alerts" {
		b.t.Fatalf("sign in as %s: %d %s\n%s", name, p.status, p.header.Get("Location"), p.body)
	}
	list := b.get("/alerts")
	if list.status != 200 {
		b.t.Fatalf("alerts after sign-in: %d", list.status)
	}
	return field(b.t, csrfField, list.body)
}

func (e *env) alert(t *testing.T, id, user string) {
	t.Helper()
	if err := e.alerts.HandleAlert(context.Background(), alertertest.TravelAlert(id, user, time.Now().UTC().Truncate(time.Second))); err != nil {
		t.Fatal(err)
	}
}

func TestSignInAndOut(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	ctx := context.Background()

	p := b.get("/alerts?severity=high")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login?next=%2Falerts%3Fseverity%3Dhigh" {
		t.Fatalf("unauthenticated: %d %q", p.status, p.header.Get("Location"))
	}
	p = b.get("/login")
	for h, want := range map[string]string{
		"Content-Security-Policy": console.ContentSecurityPolicy, "X-Content-Type-Options": "nosniff",
		"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
		"Cross-Origin-Opener-Policy": "same-origin",
	} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") || strings.Contains(p.body, " onclick") {
		t.Fatalf("inline script or style in the page:\n%s", p.body)
	}

	p = b.signIn("alice", "wrong password")
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong name or password.") {
		t.Fatalf("wrong password: %d\n%s", p.status, p.body)
	}
	p = b.signIn("nobody", password)
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "Wrong name or password.") {
		t.Fatalf("unknown reviewer: %d", p.status)
	}

	p = b.signIn("alice", password)
	if p.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d\n%s", p.status, p.body)
	}
	var cookie string
	for _, c := range p.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, console.SessionCookie+"=") {
			cookie = c
		}
	}
	for _, attr := range []string{"Path=/", "HttpOnly", "Secure", "SameSite=Strict"} {
		if !strings.Contains(cookie, attr) {
			t.Fatalf("session cookie %q lacks %s", cookie, attr)
		}
	}
	if strings.Contains(cookie, "Domain=") {
		t.Fatalf("a __Host- cookie must not have a Domain: %q", cookie)
	}
	live, err := e.admin.ListUserSessions(ctx, "reviewer:alice")
	if err != nil || len(live) != 1 || live[0].App != "alerter" {
		t.Fatalf("console session at the service: %+v %v", live, err)
	}

	token := strings.TrimPrefix(strings.SplitN(cookie, ";", 2)[0], console.SessionCookie+"=")
	if len(token) < 40 {
		t.Fatalf("token %q", token)
	}

	list := b.get("/alerts")
	if list.status != 200 || !strings.Contains(list.body, "alice · responder") {
		t.Fatalf("alerts: %d\n%s", list.status, list.body)
	}
	csrf := field(t, csrfField, list.body)

	// Signing in again from the same browser ends the first session.
	p = b.signIn("alice", password)
	if p.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", p.status)
	}
	if live, _ := e.admin.ListUserSessions(ctx, "reviewer:alice"); len(live) != 1 {
		t.Fatalf("%d console sessions after signing in twice, want 1 (the old one replaced)", len(live))
	}
	if p := b.do("POST", "/logout", url.Values{"csrf_token": {csrf}}); p.status != http.StatusForbidden {
		t.Fatalf("sign out with the old session's CSRF token: %d", p.status)
	}
	csrf = field(t, csrfField, b.get("/alerts").body)

	p = b.do("POST", "/logout", url.Values{"csrf_token": {csrf}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login?why=out" {
		t.Fatalf("sign out: %d %s", p.status, p.header.Get("Location"))
	}
	if live, _ := e.admin.ListUserSessions(ctx, "reviewer:alice"); len(live) != 0 {
		t.Fatalf("the console session lives on at the service after sign-out: %+v", live)
	}
	if p := b.get("/alerts"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/login") {
		t.Fatalf("after sign-out: %d", p.status)
	}
	logged := e.log.String()
	secret := token[strings.IndexByte(token, '.')+1:]
	if !strings.Contains(logged, "reviewer signed in") || strings.Contains(logged, secret) || strings.Contains(logged, password) {
		t.Fatalf("the log holds a token or password, or no sign-in:\n%s", logged)
	}
}

func TestSignInFormNeedsItsToken(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	p := b.do("POST", "/login", url.Values{"name": {"alice"}, "password": {password}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "The sign-in form expired") {
		t.Fatalf("sign-in without the form's token: %d", p.status)
	}
	b.get("/login")
	p = b.do("POST", "/login", url.Values{"login_csrf": {strings.Repeat("0", 64)}, "name": {"alice"}, "password": {password}})
	if p.status != http.StatusForbidden {
		t.Fatalf("sign-in with another token: %d", p.status)
	}
	p = b.signIn("alice", password)
	p2 := b.do("POST", "/login", url.Values{"name": {"alice"}, "password": {password}}, "Origin", "https://evil.example")
	if p.status != http.StatusSeeOther || p2.status != http.StatusForbidden {
		t.Fatalf("same-origin sign-in %d, cross-origin %d", p.status, p2.status)
	}
}

func TestSignInThrottle(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	for i := range 10 {
		if p := b.signIn("alice", fmt.Sprint("guess-", i)); p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, p.status)
		}
	}
	p := b.signIn("alice", password)
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many failed sign-ins") {
		t.Fatalf("11th attempt with the right password: %d", p.status)
	}
}

func TestCSRFAndOrigin(t *testing.T) {
	e := newEnv(t)
	e.alert(t, "c1", "bob")
	b := e.browser(t)
	csrf := b.mustSignIn("alice")
	decide := func(form url.Values, hdr ...string) int {
		return b.do("POST", "/alerts/c1/decide", form, hdr...).status
	}
	if s := decide(url.Values{"decision": {"resolve"}}); s != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", s)
	}
	if s := decide(url.Values{"decision": {"resolve"}, "csrf_token": {strings.Repeat("x", 43)}}); s != http.StatusForbidden {
		t.Errorf("wrong CSRF token: %d", s)
	}
	if s := decide(url.Values{"decision": {"resolve"}, "csrf_token": {csrf}}, "Sec-Fetch-Site", "cross-site"); s != http.StatusForbidden {
		t.Errorf("cross-site: %d", s)
	}
	if s := decide(url.Values{"decision": {"resolve"}, "csrf_token": {csrf}}, "Origin", "https://evil.example"); s != http.StatusForbidden {
		t.Errorf("other origin: %d", s)
	}
	inc, _ := e.alerts.Get(context.Background(), "c1")
	if inc.State != alerter.Open || len(e.actions.List()) != 0 {
		t.Fatalf("a refused request changed the alert: %s, %d actions", inc.State, len(e.actions.List()))
	}
	if s := decide(url.Values{"decision": {"resolve"}, "csrf_token": {csrf}}, "Sec-Fetch-Site", "same-origin"); s != http.StatusSeeOther {
		t.Errorf("same origin with the token: %d", s)
	}
}

func TestDecisions(t *testing.T) {
	e := newEnv(t)
	e.alert(t, "d1", "bob")
	b := e.browser(t)
	csrf := b.mustSignIn("alice")

	if err := e.alerts.HandleAction(context.Background(), events.Action{ID: "enf", Time: time.Now(), Kind: events.KindEnforcement,
		Actor: "detector", Action: "reauth", AlertID: "d1", Rule: "impossible-travel", UserID: "bob", SessionID: "07bbbb",
		Result: events.ResultFailed, Error: "not_found", Attempts: 2}); err != nil {
		t.Fatal(err)
	}
	p := b.get("/alerts/d1")
	for _, want := range []string{"Enforcement by the detector", "(not_found)", "Paris, FR", "Sydney, AU", "48.8566, 2.3522", "16,960 km", "16,920 km/h", "1 h 0 min",
		`id="decision-acknowledge"`, `id="decision-false_positive"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("alert page lacks %q", want)
		}
	}
	p = b.do("POST", "/alerts/d1/decide", url.Values{"csrf_token": {csrf}, "decision": {"false_positive"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "note: required to mark a false positive") {
		t.Fatalf("false positive without a note: %d", p.status)
	}
	p = b.do("POST", "/alerts/d1/decide", url.Values{"csrf_token": {csrf}, "decision": {"delete"}})
	if p.status != http.StatusBadRequest {
		t.Fatalf("unknown decision: %d", p.status)
	}
	p = b.do("POST", "/alerts/d1/decide", url.Values{"csrf_token": {csrf}, "decision": {"resolve"}, "note": {"trip confirmed\r\nby phone"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/alerts/d1?done=resolve" {
		t.Fatalf("resolve: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
	}
	p = b.get("/alerts/d1?done=resolve")
	if !strings.Contains(p.body, "Resolved.") || !strings.Contains(p.body, `id="state">resolved`) || !strings.Contains(p.body, "trip confirmed\nby phone") {
		t.Fatalf("page after resolve:\n%s", p.body)
	}
	p = b.do("POST", "/alerts/d1/decide", url.Values{"csrf_token": {csrf}, "decision": {"resolve"}, "note": {"again"}})
	if p.status != http.StatusConflict || !strings.Contains(p.body, "cannot resolve an incident that is resolved") || !strings.Contains(p.body, ">again</textarea>") {
		t.Fatalf("resolve twice: %d", p.status)
	}
	acts := e.actions.List()
	if len(acts) != 1 || acts[0].Actor != "alice" || acts[0].Action != "resolve" || acts[0].Kind != "review" ||
		acts[0].AlertID != "d1" || acts[0].UserID != "bob" || acts[0].Note != "trip confirmed\nby phone" {
		t.Fatalf("actions: %+v", acts)
	}
	if p := b.get("/alerts/nope"); p.status != http.StatusNotFound {
		t.Fatalf("unknown alert: %d", p.status)
	}
	if p := b.get("/alerts/d1?done=%3Cscript%3E"); strings.Contains(p.body, "<script>") {
		t.Fatal("the flash echoes the request")
	}
}

func TestSessionActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var tokens []*client.Issued
	for range 3 {
		is, err := e.shop.CreateSession(ctx, client.CreateRequest{UserID: "bob", IP: "203.0.113.80", UserAgent: "Firefox"})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, is)
	}
	other, err := e.shop.CreateSession(ctx, client.CreateRequest{UserID: "carol", IP: "203.0.113.81", UserAgent: "Safari"})
	if err != nil {
		t.Fatal(err)
	}
	e.alert(t, "s1", "bob")
	b := e.browser(t)
	csrf := b.mustSignIn("alice")

	p := b.get("/alerts/s1")
	for _, is := range tokens {
		if !strings.Contains(p.body, `data-session="`+is.SessionID+`"`) {
			t.Fatalf("session %s not listed", is.SessionID)
		}
	}
	post := func(path string, form url.Values) page {
		form.Set("csrf_token", csrf)
		return b.do("POST", path, form)
	}
	// Another user's session cannot be ended from bob's alert.
	p = post("/alerts/s1/sessions/revoke", url.Values{"session_id": {other.SessionID}})
	if p.status != http.StatusConflict {
		t.Fatalf("revoke another user's session: %d", p.status)
	}
	if _, err := e.shop.Validate(ctx, client.AccessRequest{Token: other.Token, IP: "203.0.113.81", UserAgent: "Safari"}); err != nil {
		t.Fatalf("carol's session was touched: %v", err)
	}

	p = post("/alerts/s1/sessions/revoke", url.Values{"session_id": {tokens[0].SessionID}, "note": {"stolen cookie"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/alerts/s1?done=revoke_session" {
		t.Fatalf("revoke: %d %s", p.status, p.header.Get("Location"))
	}
	if _, err := e.shop.Validate(ctx, client.AccessRequest{Token: tokens[0].Token, IP: "203.0.113.80", UserAgent: "Firefox"}); !client.IsUnauthenticated(err) {
		t.Fatalf("revoked session still validates: %v", err)
	}
	p = post("/alerts/s1/sessions/reauth", url.Values{"session_id": {tokens[1].SessionID}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("reauth: %d", p.status)
	}
	if _, err := e.shop.Validate(ctx, client.AccessRequest{Token: tokens[1].Token, IP: "203.0.113.80", UserAgent: "Firefox"}); !client.IsReauthRequired(err) {
		t.Fatalf("after force re-auth: %v", err)
	}
	p = post("/alerts/s1/user/revoke", url.Values{"note": {"contain"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("revoke all: %d", p.status)
	}
	if live, _ := e.admin.ListUserSessions(ctx, "bob"); len(live) != 0 {
		t.Fatalf("bob still has %d sessions", len(live))
	}
	acts := e.actions.List()
	if len(acts) != 3 {
		t.Fatalf("%d actions, want 3: %+v", len(acts), acts)
	}
	want := []struct {
		action, session string
		count           int
	}{{"revoke_session", tokens[0].SessionID, 1}, {"reauth", tokens[1].SessionID, 1}, {"revoke_user", "", 2}}
	for i, w := range want {
		a := acts[i]
		if a.Action != w.action || a.SessionID != w.session || a.Count != w.count || a.Actor != "alice" || a.Result != "done" || a.UserID != "bob" {
			t.Errorf("action %d: %+v, want %+v", i, a, w)
		}
	}
	if acts[0].Note != "stolen cookie" {
		t.Errorf("note lost: %+v", acts[0])
	}
	p = b.get("/alerts/s1")
	if !strings.Contains(p.body, "No live sessions.") || !strings.Contains(p.body, "revoke user") {
		t.Fatalf("page after revocations:\n%s", p.body)
	}
}

func TestViewerMayOnlyLook(t *testing.T) {
	e := newEnv(t)
	e.alert(t, "v1", "bob")
	b := e.browser(t)
	csrf := b.mustSignIn("vic")
	p := b.get("/alerts/v1")
	if p.status != 200 || strings.Contains(p.body, `id="decide"`) || strings.Contains(p.body, "Revoke all") {
		t.Fatalf("viewer page offers actions: %d", p.status)
	}
	for _, path := range []string{"/alerts/v1/decide", "/alerts/v1/user/revoke", "/alerts/v1/sessions/revoke"} {
		if p := b.do("POST", path, url.Values{"csrf_token": {csrf}, "decision": {"resolve"}, "session_id": {"x"}}); p.status != http.StatusForbidden {
			t.Errorf("viewer POST %s: %d", path, p.status)
		}
	}
	if len(e.actions.List()) != 0 {
		t.Fatal("a viewer's request produced an action")
	}
}

func TestSessionOfNonReviewerIsRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// A session of the console's user space for someone not (or no
	// longer) in the configuration.
	is, err := e.admin.CreateSession(ctx, client.CreateRequest{UserID: "reviewer:mallory", IP: "127.0.0.1", UserAgent: "console-test"})
	if err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	u, _ := url.Parse(e.srv.URL)
	b.hc.Jar.SetCookies(u, []*http.Cookie{{Name: console.SessionCookie, Value: is.Token, Path: "/"}})
	if p := b.get("/alerts"); p.status != http.StatusForbidden {
		t.Fatalf("non-reviewer: %d", p.status)
	}
	if live, _ := e.admin.ListUserSessions(ctx, "reviewer:mallory"); len(live) != 0 {
		t.Fatal("the non-reviewer's session was not ended")
	}
	// An app user's session is not a console session either.
	app, _ := e.shop.CreateSession(ctx, client.CreateRequest{UserID: "alice", IP: "127.0.0.1", UserAgent: "console-test"})
	b.hc.Jar.SetCookies(u, []*http.Cookie{{Name: console.SessionCookie, Value: app.Token, Path: "/"}})
	if p := b.get("/alerts"); p.status != http.StatusForbidden {
		t.Fatalf("app user's session: %d", p.status)
	}
}

func TestFailsClosedWithoutSessionService(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	down, err := client.New(dead.URL, adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	b := e.browser(t)
	b.mustSignIn("alice")
	e2 := newEnv(t, func(c *console.Config) { c.Sessions = down })
	// Same cookie against a console whose session service is gone.
	b.e = e2
	u1, _ := url.Parse(e.srv.URL)
	u2, _ := url.Parse(e2.srv.URL)
	b.hc.Jar.SetCookies(u2, b.hc.Jar.Cookies(u1))
	b.hc = func() *http.Client {
		hc := e2.srv.Client()
		hc.Jar = b.hc.Jar
		hc.CheckRedirect = b.hc.CheckRedirect
		return hc
	}()
	if p := b.get("/alerts"); p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "cannot be reached") {
		t.Fatalf("session service down: %d", p.status)
	}
}

func TestTimeline(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	e.timeline.entries = []audit.Entry{
		{Time: now.Add(-time.Hour), Kind: audit.KindEvent, Type: "session.created", SessionID: "07aaaa", IP: "198.51.100.7", City: "Paris", Country: "FR"},
		{Time: now, Kind: audit.KindAlert, Type: "impossible-travel", Detail: "Paris then Sydney"},
	}
	e.alert(t, "t1", "bob")
	b := e.browser(t)
	b.mustSignIn("alice")
	p := b.get("/alerts/t1")
	if !strings.Contains(p.body, "session.created") || !strings.Contains(p.body, "Paris, FR") || !strings.Contains(p.body, "Paris then Sydney") {
		t.Fatalf("timeline missing:\n%s", p.body)
	}
	if e.timeline.asked[0] != "bob" {
		t.Fatalf("timeline asked for %v", e.timeline.asked)
	}
	e.timeline.err = errors.New("clickhouse down")
	if p := b.get("/alerts/t1"); p.status != 200 || !strings.Contains(p.body, "The audit log did not answer") {
		t.Fatalf("timeline error: %d", p.status)
	}
	e2 := newEnv(t, func(c *console.Config) { c.Timeline = nil })
	e2.alert(t, "t2", "bob")
	b2 := e2.browser(t)
	b2.mustSignIn("alice")
	if p := b2.get("/alerts/t2"); !strings.Contains(p.body, "The audit log is not configured") {
		t.Fatal("no timeline notice without an audit log")
	}
}

func TestListFilters(t *testing.T) {
	e := newEnv(t)
	e.alert(t, "l1", "bob")
	crit := alertertest.TravelAlert("l2", "carol", time.Now().UTC())
	crit.Rule, crit.Severity, crit.Summary = "shared-session", "critical", "carol shares a session"
	if err := e.alerts.HandleAlert(context.Background(), crit); err != nil {
		t.Fatal(err)
	}
	b := e.browser(t)
	b.mustSignIn("vic")
	rows := regexp.MustCompile(`<tr data-id="([^"]+)"`)
	ids := func(q string) string {
		p := b.get("/alerts" + q)
		if p.status != 200 {
			t.Fatalf("%s: %d", q, p.status)
		}
		var out []string
		for _, m := range rows.FindAllStringSubmatch(p.body, -1) {
			out = append(out, m[1])
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":                        "l1,l2",
		"?severity=critical":      "l2",
		"?rule=impossible-travel": "l1",
		"?user=CAR":               "l2",
		"?state=resolved":         "",
		"?from=2000-01-01T00:00":  "l1,l2",
		"?to=2000-01-01T00:00":    "",
		"?severity=bogus":         "l1,l2",
	} {
		if got := ids(q); got != want && !(want == "l1,l2" && got == "l2,l1") {
			t.Errorf("%q: %s, want %s", q, got, want)
		}
	}
	if p := b.get("/alerts?severity=bogus"); !strings.Contains(p.body, "severity: want low, medium, high or critical") {
		t.Error("a bad filter is not reported")
	}
}

func TestStaticFiles(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	for path, ctype := range map[string]string{"/static/console.js": "text/javascript", "/static/console.css": "text/css"} {
		p := b.get(path)
		if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), ctype) || p.header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %d %s", path, p.status, p.header.Get("Content-Type"))
		}
	}
	if p := b.get("/static/../console.go"); p.status == 200 {
		t.Error("path traversal")
	}
}
