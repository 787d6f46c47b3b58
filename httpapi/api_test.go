package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

const (
	shopSecret  = "shop-secret-0123456789abcdef"
	blogSecret  = "blog-secret-0123456789abcdef"
	adminSecret = "admin-secret-0123456789abcdef"
)

func keys(t testing.TB) *httpapi.Keys {
	ks, err := httpapi.ParseAPIKeys("test", "shop:app:"+shopSecret+",blog:app:"+blogSecret+",detector:admin:"+adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	k, err := httpapi.NewKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type server struct {
	*httptest.Server
	log *bytes.Buffer
}

// newServer serves the API over the real Redis store.
func newServer(t *testing.T) *server {
	rdb := testenv.Redis(t)
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: testenv.Prefix(t, rdb)})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	h := httpapi.Handler(httpapi.Config{Service: svc, Keys: keys(t), Log: slog.New(slog.NewJSONHandler(&log, nil))})
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &server{Server: s, log: &log}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) code() string {
	if e, ok := a.body["error"].(map[string]any); ok {
		return e["code"].(string)
	}
	return ""
}

func (a answer) message() string {
	if e, ok := a.body["error"].(map[string]any); ok {
		return e["message"].(string)
	}
	return ""
}

func (s *server) do(t *testing.T, method, path, secret, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func (s *server) login(t *testing.T, secret, user string) answer {
	t.Helper()
	a := s.do(t, "POST", "/v1/sessions", secret, js(map[string]any{"user_id": user, "ip": "203.0.113.5", "user_agent": "Firefox"}))
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	return a
}

func TestCreateAnswer(t *testing.T) {
	s := newServer(t)
	a := s.login(t, shopSecret, "alice")
	for _, k := range []string{"token", "session_id", "user_id", "csrf_token", "created_at", "expires_at", "idle_expires_at", "cookie"} {
		if v, _ := a.body[k].(string); v == "" {
			t.Errorf("create answer lacks %s", k)
		}
	}
	tok := a.body["token"].(string)
	if want := "__Host-sid=" + tok + "; Path=/; Secure; HttpOnly; SameSite=Lax"; a.body["cookie"] != want {
		t.Fatalf("cookie %q, want %q", a.body["cookie"], want)
	}
	v := s.do(t, "POST", "/v1/sessions/validate", shopSecret, js(map[string]string{"token": tok, "ip": "203.0.113.5"}))
	if v.status != 200 || v.body["session_id"] != a.body["session_id"] || v.body["state"] != "active" {
		t.Fatalf("validate: %d %s", v.status, v.raw)
	}
	if strings.Contains(v.raw, tok) {
		t.Fatal("validate answer contains the token")
	}
}

func TestStatusTable(t *testing.T) {
	s := newServer(t)
	alice := s.login(t, shopSecret, "alice")
	tok := alice.body["token"].(string)
	sid := alice.body["session_id"].(string)
	csrf := alice.body["csrf_token"].(string)
	val := func(tok string) string { return js(map[string]string{"token": tok, "ip": "203.0.113.5"}) }
	dead := s.login(t, shopSecret, "bob")
	s.do(t, "POST", "/v1/sessions/logout", shopSecret, js(map[string]string{"token": dead.body["token"].(string)}))
	reauth := s.login(t, shopSecret, "carol")
	s.do(t, "POST", "/v1/sessions/"+reauth.body["session_id"].(string)+"/reauth", adminSecret, `{"reason":"travel"}`)

	cases := []struct {
		name, method, path, secret, body string
		status                           int
		code                             string
	}{
		{"no key", "POST", "/v1/sessions/validate", "", val(tok), 401, "unauthorized"},
		{"bad key", "POST", "/v1/sessions/validate", "nope-nope-nope-nope-nope-nope", val(tok), 401, "unauthorized"},
		{"ok", "POST", "/v1/sessions/validate", shopSecret, val(tok), 200, ""},
		{"other app", "POST", "/v1/sessions/validate", blogSecret, val(tok), 403, "forbidden"},
		{"unknown token", "POST", "/v1/sessions/validate", shopSecret, val("garbage"), 401, "session_not_found"},
		{"logged out", "POST", "/v1/sessions/validate", shopSecret, val(dead.body["token"].(string)), 401, "session_revoked"},
		{"reauth", "POST", "/v1/sessions/validate", shopSecret, val(reauth.body["token"].(string)), 401, "reauth_required"},
		{"csrf ok", "POST", "/v1/sessions/validate", shopSecret, js(map[string]string{"token": tok, "ip": "203.0.113.5", "csrf_token": csrf}), 200, ""},
		{"csrf bad", "POST", "/v1/sessions/validate", shopSecret, js(map[string]string{"token": tok, "ip": "203.0.113.5", "csrf_token": "x" + csrf}), 403, "csrf_mismatch"},
		{"list", "GET", "/v1/users/alice/sessions", shopSecret, "", 200, ""},
		{"revoke by app", "POST", "/v1/sessions/" + sid + "/revoke", shopSecret, `{"reason":"x"}`, 403, "forbidden"},
		{"revoke unknown", "POST", "/v1/sessions/00AAAAAAAAAAAAAAAAAAAAAA/revoke", adminSecret, `{"reason":"x"}`, 404, "not_found"},
		{"terminate other user", "DELETE", "/v1/users/bob/sessions/" + sid, shopSecret, "", 404, "not_found"},
		{"auth event", "POST", "/v1/auth-events", shopSecret, `{"type":"login_failed","user_id":"alice","ip":"198.51.100.1"}`, 202, ""},
		{"unknown route", "GET", "/v2/nothing", shopSecret, "", 404, "not_found"},
	}
	for _, c := range cases {
		a := s.do(t, c.method, c.path, c.secret, c.body)
		if a.status != c.status || a.code() != c.code {
			t.Errorf("%s: %d %q, want %d %q (%s)", c.name, a.status, a.code(), c.status, c.code, a.raw)
		}
		if c.code == "unauthorized" && a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", c.name)
		}
	}
}

// Bad input gets 400 invalid_request with a message naming the field.
func TestInvalidRequestsNameTheField(t *testing.T) {
	s := newServer(t)
	tok := s.login(t, shopSecret, "alice").body["token"].(string)
	cases := []struct{ path, body, field string }{
		{"/v1/sessions", ``, "body"},
		{"/v1/sessions", `{`, "body"},
		{"/v1/sessions", `[1]`, "body"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.4"} {}`, "body"},
		{"/v1/sessions", `{"ip":"1.2.3.4"}`, "user_id"},
		{"/v1/sessions", `{"user_id":"a"}`, "ip"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.400"}`, "ip"},
		{"/v1/sessions", `{"user_id":"a","ip":"fe80::1%eth0"}`, "ip"},
		{"/v1/sessions", `{"user_id":7,"ip":"1.2.3.4"}`, "user_id"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.4","role":"admin"}`, "role"},
		{"/v1/sessions", `{"user_id":"a\u0000b","ip":"1.2.3.4"}`, "user_id"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.4","attributes":{"k":1}}`, "attributes"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.4","attributes":"x"}`, "attributes"},
		{"/v1/sessions", `{"user_id":"` + strings.Repeat("u", 300) + `","ip":"1.2.3.4"}`, "user_id"},
		{"/v1/sessions", `{"user_id":"a","ip":"1.2.3.4","user_agent":"` + strings.Repeat("u", 70000) + `"}`, "body"},
		{"/v1/sessions/validate", `{"ip":"1.2.3.4"}`, "token"},
		{"/v1/sessions/validate", `{"token":"` + tok + `"}`, "ip"},
		{"/v1/sessions/validate", `{"token":"` + tok + `","ip":"1.2.3.4","path":"/\n"}`, "path"},
		{"/v1/sessions/logout", `{}`, "token"},
		{"/v1/users/alice/sessions/revoke", `{}`, "reason"},
		{"/v1/users/alice/sessions/revoke", `{"reason":"x","except_session_id":"nope"}`, "except_session_id"},
		{"/v1/auth-events", `{"type":"login_maybe","user_id":"a","ip":"1.2.3.4"}`, "type"},
		{"/v1/auth-events", `{"type":"login_failed","user_id":"a","ip":"nope"}`, "ip"},
	}
	for _, c := range cases {
		a := s.do(t, "POST", c.path, shopSecret, c.body)
		if a.status != 400 || a.code() != "invalid_request" || !strings.HasPrefix(a.message(), c.field+": ") {
			t.Errorf("%s %.50q: %d %s, want 400 naming %q", c.path, c.body, a.status, a.raw, c.field)
		}
	}
	// A wrong Content-Type is refused, naming the header.
	req, _ := http.NewRequest("POST", s.URL+"/v1/sessions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+shopSecret)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("text/plain body: %d", resp.StatusCode)
	}
}

func TestListAndRevokeUser(t *testing.T) {
	s := newServer(t)
	keep := s.login(t, shopSecret, "alice")
	s.login(t, shopSecret, "alice")
	s.login(t, blogSecret, "alice")
	l := s.do(t, "GET", "/v1/users/alice/sessions", shopSecret, "")
	list := l.body["sessions"].([]any)
	if len(list) != 2 {
		t.Fatalf("shop sees %d sessions: %s", len(list), l.raw)
	}
	first := list[0].(map[string]any)
	for _, k := range []string{"session_id", "created_at", "last_seen_at", "ip", "user_agent", "expires_at", "idle_expires_at", "state"} {
		if _, ok := first[k]; !ok {
			t.Errorf("listed session lacks %s", k)
		}
	}
	if strings.Contains(l.raw, "csrf") || strings.Contains(l.raw, "token") {
		t.Fatalf("list exposes secrets: %s", l.raw)
	}
	r := s.do(t, "POST", "/v1/users/alice/sessions/revoke", shopSecret, js(map[string]string{"reason": "password_change", "except_session_id": keep.body["session_id"].(string)}))
	if r.status != 200 || r.body["revoked"] != float64(1) {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	r = s.do(t, "POST", "/v1/users/alice/sessions/revoke", adminSecret, `{"reason":"password_change"}`)
	if r.status != 200 || r.body["revoked"] != float64(2) {
		t.Fatalf("admin revoke: %d %s", r.status, r.raw)
	}
	d := s.do(t, "DELETE", "/v1/users/alice/sessions/"+keep.body["session_id"].(string), shopSecret, "")
	if d.status != 204 {
		t.Fatalf("terminate dead session: %d %s", d.status, d.raw)
	}
}

func TestRegenerateAnswer(t *testing.T) {
	s := newServer(t)
	old := s.login(t, shopSecret, "alice")
	a := s.do(t, "POST", "/v1/sessions/regenerate", shopSecret, js(map[string]string{"token": old.body["token"].(string), "ip": "203.0.113.5"}))
	if a.status != 200 || a.body["token"] == old.body["token"] || a.body["csrf_token"] == old.body["csrf_token"] ||
		!strings.HasPrefix(a.body["cookie"].(string), "__Host-sid="+a.body["token"].(string)+";") {
		t.Fatalf("regenerate: %d %s", a.status, a.raw)
	}
}

// No token appears in any log line, whatever happens.
func TestNoTokenInLogs(t *testing.T) {
	s := newServer(t)
	tok := s.login(t, shopSecret, "alice").body["token"].(string)
	s.do(t, "POST", "/v1/sessions/validate", blogSecret, js(map[string]string{"token": tok, "ip": "1.2.3.4"}))
	s.do(t, "POST", "/v1/sessions/logout", shopSecret, js(map[string]string{"token": tok}))
	s.do(t, "POST", "/v1/sessions/validate", shopSecret, js(map[string]string{"token": tok, "ip": "1.2.3.4"}))
	s.do(t, "POST", "/v1/sessions/validate", shopSecret, `{"token":"`+tok+`","ip":"x"}`)
	if strings.Contains(s.log.String(), tok[25:]) {
		t.Fatal("token in log")
	}
}

func TestKeyNames(t *testing.T) {
	for _, name := range []string{"", "a b", "a\tb", "a\x1fb", "a\x7fb"} {
		if _, err := httpapi.ParseAPIKeys("test", name+":app:"+shopSecret); err == nil {
			t.Errorf("key name %q accepted", name)
		}
	}
	if _, err := httpapi.ParseAPIKeys("test", "shop-1.eu:app:"+shopSecret); err != nil {
		t.Fatal(err)
	}
}
