package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/sessions"
)

const clearCookie = "__Host-sid=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"

// recorder is the next handler: it records whether it ran, with which
// session, and echoes what it could read of the request.
type recorder struct {
	called  bool
	session *client.Session
}

func (h *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.called = true
	h.session, _ = client.SessionFrom(r.Context())
	var body []byte
	if r.Form == nil {
		body, _ = io.ReadAll(r.Body)
	}
	w.Header().Set("X-Note", r.PostFormValue("note")+string(body))
	w.WriteHeader(http.StatusTeapot)
}

// serve runs one request through m.Require.
func serve(m *client.Middleware, r *http.Request) (*httptest.ResponseRecorder, *recorder) {
	next := &recorder{}
	w := httptest.NewRecorder()
	m.Require(next).ServeHTTP(w, r)
	return w, next
}

// errCode returns the error code of a JSON error answer.
func errCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("answer %d %q is not a JSON error: %v", w.Code, w.Body, err)
	}
	return b.Error.Code
}

func withCookie(r *http.Request, token string) *http.Request {
	r.AddCookie(&http.Cookie{Name: "__Host-sid", Value: token})
	return r
}

func formPost(fields url.Values) *http.Request {
	r := httptest.NewRequest("POST", "/cart", strings.NewReader(fields.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func multipartPost(t *testing.T, fields map[string]string) *http.Request {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	mw.Close()
	r := httptest.NewRequest("POST", "/upload", &buf)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	return r
}

func TestRequire(t *testing.T) {
	type fixture struct {
		e  *env
		is *client.Issued
	}
	// request builds the request of a case; it may also act on the
	// session first (revoke it, expire it).
	cases := []struct {
		name    string
		request func(t *testing.T, f fixture) *http.Request
		status  int    // of the answer; 418 is next's
		code    string // error code of a refusal
		cleared bool   // the answer clears the cookie
		note    string // what next read of the body
	}{
		{"no cookie", func(t *testing.T, f fixture) *http.Request {
			return httptest.NewRequest("GET", "/account", nil)
		}, 401, "session_not_found", false, ""},
		{"empty cookie", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("GET", "/account", nil), "")
		}, 401, "session_not_found", false, ""},
		{"GET with a valid cookie", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
		}, 418, "", false, ""},
		{"HEAD needs no CSRF token", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("HEAD", "/account", nil), f.is.Token)
		}, 418, "", false, ""},
		{"OPTIONS needs no CSRF token", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("OPTIONS", "/account", nil), f.is.Token)
		}, 418, "", false, ""},
		{"GET ignores a wrong CSRF header", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
			r.Header.Set("X-CSRF-Token", "wrong")
			return r
		}, 418, "", false, ""},
		{"POST without a CSRF token", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("POST", "/cart", strings.NewReader(`{"item":1}`)), f.is.Token)
		}, 403, "csrf_required", false, ""},
		{"POST with the CSRF header", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("POST", "/cart", strings.NewReader(`{"item":1}`)), f.is.Token)
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("X-CSRF-Token", f.is.CSRFToken)
			return r
		}, 418, "", false, `{"item":1}`},
		{"DELETE with the CSRF header", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("DELETE", "/cart/1", nil), f.is.Token)
			r.Header.Set("X-CSRF-Token", f.is.CSRFToken)
			return r
		}, 418, "", false, ""},
		{"POST with a wrong CSRF header", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("POST", "/cart", nil), f.is.Token)
			r.Header.Set("X-CSRF-Token", "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE")
			return r
		}, 403, "csrf_mismatch", false, ""},
		{"POST with an overlong CSRF header", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("POST", "/cart", nil), f.is.Token)
			r.Header.Set("X-CSRF-Token", strings.Repeat("x", 300))
			return r
		}, 403, "csrf_mismatch", false, ""},
		{"urlencoded form with the CSRF field", func(t *testing.T, f fixture) *http.Request {
			return withCookie(formPost(url.Values{"csrf_token": {f.is.CSRFToken}, "note": {"gift"}}), f.is.Token)
		}, 418, "", false, "gift"},
		{"urlencoded form with a wrong CSRF field", func(t *testing.T, f fixture) *http.Request {
			return withCookie(formPost(url.Values{"csrf_token": {"wrong"}, "note": {"gift"}}), f.is.Token)
		}, 403, "csrf_mismatch", false, ""},
		{"multipart form with the CSRF field", func(t *testing.T, f fixture) *http.Request {
			return withCookie(multipartPost(t, map[string]string{"csrf_token": f.is.CSRFToken, "note": "photo"}), f.is.Token)
		}, 418, "", false, "photo"},
		{"JSON body with a csrf_token field is not read", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("POST", "/cart", strings.NewReader(`{"csrf_token":"`+f.is.CSRFToken+`"}`)), f.is.Token)
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 403, "csrf_required", false, ""},
		{"revoked session", func(t *testing.T, f fixture) *http.Request {
			if err := f.e.admin.RevokeSession(context.Background(), f.is.SessionID, "stolen", "token-reuse"); err != nil {
				t.Fatal(err)
			}
			return withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
		}, 401, "session_revoked", true, ""},
		{"revoked session, POST with the CSRF header", func(t *testing.T, f fixture) *http.Request {
			if err := f.e.admin.RevokeSession(context.Background(), f.is.SessionID, "stolen", ""); err != nil {
				t.Fatal(err)
			}
			r := withCookie(httptest.NewRequest("POST", "/cart", nil), f.is.Token)
			r.Header.Set("X-CSRF-Token", f.is.CSRFToken)
			return r
		}, 401, "session_revoked", true, ""},
		{"logged-out session", func(t *testing.T, f fixture) *http.Request {
			if err := f.e.shop.Logout(context.Background(), f.is.Token); err != nil {
				t.Fatal(err)
			}
			return withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
		}, 401, "session_revoked", true, ""},
		{"expired session", func(t *testing.T, f fixture) *http.Request {
			f.e.clock.Advance(sessions.DefaultPolicy().IdleTimeout + time.Second)
			return withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
		}, 401, "session_expired", true, ""},
		{"garbage cookie", func(t *testing.T, f fixture) *http.Request {
			return withCookie(httptest.NewRequest("GET", "/account", nil), "garbage")
		}, 401, "session_not_found", true, ""},
		{"re-authentication required keeps the cookie", func(t *testing.T, f fixture) *http.Request {
			if err := f.e.admin.ForceReauth(context.Background(), f.is.SessionID, "new country", "geo"); err != nil {
				t.Fatal(err)
			}
			return withCookie(httptest.NewRequest("GET", "/account", nil), f.is.Token)
		}, 401, "reauth_required", false, ""},
		{"another app's session", func(t *testing.T, f fixture) *http.Request {
			is, err := f.e.blog.CreateSession(context.Background(), client.CreateRequest{UserID: "hank", IP: loginIP})
			if err != nil {
				t.Fatal(err)
			}
			return withCookie(httptest.NewRequest("GET", "/account", nil), is.Token)
		}, 500, "internal", false, ""},
		{"hostile User-Agent and path", func(t *testing.T, f fixture) *http.Request {
			r := withCookie(httptest.NewRequest("GET", "/a%00b%0A"+strings.Repeat("p", 3000), nil), f.is.Token)
			r.Header.Set("User-Agent", "Evil\t\x7f\xff"+strings.Repeat("é", 1000))
			return r
		}, 418, "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			f := fixture{e: e, is: e.login(t, "ivy")}
			m := &client.Middleware{Client: e.shop}
			w, next := serve(m, c.request(t, f))

			if w.Code != c.status {
				t.Fatalf("status %d %q, want %d", w.Code, w.Body, c.status)
			}
			if next.called != (c.status == 418) {
				t.Fatalf("next called = %v", next.called)
			}
			if c.status != 418 {
				if code := errCode(t, w); code != c.code {
					t.Errorf("error code %q, want %q", code, c.code)
				}
			} else {
				if next.session == nil || next.session.SessionID != f.is.SessionID || next.session.UserID != "ivy" ||
					next.session.CSRFToken != f.is.CSRFToken {
					t.Errorf("session in the context: %+v, want session %s", next.session, f.is.SessionID)
				}
				if got := w.Header().Get("X-Note"); got != c.note {
					t.Errorf("next read %q of the body, want %q", got, c.note)
				}
			}
			got := w.Header().Values("Set-Cookie")
			if c.cleared && (len(got) != 1 || got[0] != clearCookie) {
				t.Errorf("Set-Cookie %q, want %q", got, clearCookie)
			}
			if !c.cleared && len(got) != 0 {
				t.Errorf("Set-Cookie %q, want none", got)
			}
		})
	}
}

// A refused CSRF token never reaches the service: the session's idle
// expiry does not slide.
func TestRequireMissingCSRFDoesNotTouchSession(t *testing.T) {
	e := newEnv(t)
	is := e.login(t, "jane")
	m := &client.Middleware{Client: e.shop}
	e.clock.Advance(time.Minute)
	if w, next := serve(m, withCookie(httptest.NewRequest("POST", "/cart", nil), is.Token)); w.Code != 403 || next.called {
		t.Fatalf("POST without CSRF: %d, next called %v", w.Code, next.called)
	}
	list, err := e.shop.ListUserSessions(context.Background(), "jane")
	if err != nil || len(list) != 1 || !list[0].LastSeenAt.Equal(is.CreatedAt) {
		t.Fatalf("session after a refused POST: %+v %v, want it last seen at creation", list, err)
	}
}

// When the service cannot answer, the middleware fails closed: 503, and
// next is never called, whatever the request carries.
func TestRequireUnavailable(t *testing.T) {
	e := newEnv(t)
	is := e.login(t, "kim")
	down := newClient(t, closedURL(t), shopSecret)
	for _, method := range []string{"GET", "POST"} {
		r := withCookie(httptest.NewRequest(method, "/account", nil), is.Token)
		r.Header.Set("X-CSRF-Token", is.CSRFToken)
		w, next := serve(&client.Middleware{Client: down}, r)
		if w.Code != 503 || next.called || errCode(t, w) != "unavailable" {
			t.Errorf("%s with the service down: %d %q, next called %v; want 503, not called", method, w.Code, w.Body, next.called)
		}
		if len(w.Header().Values("Set-Cookie")) != 0 {
			t.Errorf("%s: the cookie was touched while the service was down", method)
		}
	}

	var gotErr error
	m := &client.Middleware{Client: down, OnUnavailable: func(w http.ResponseWriter, r *http.Request, err error) {
		gotErr = err
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}}
	w, next := serve(m, withCookie(httptest.NewRequest("GET", "/", nil), is.Token))
	if w.Code != 503 || next.called || !client.IsUnavailable(gotErr) {
		t.Fatalf("custom OnUnavailable: %d, next called %v, err %v", w.Code, next.called, gotErr)
	}
}

// A misconfigured API key is a server error, not the user's: 500, and the
// cookie is kept.
func TestRequireBadAPIKey(t *testing.T) {
	e := newEnv(t)
	is := e.login(t, "lee")
	m := &client.Middleware{Client: newClient(t, e.url, "not-a-configured-key-0123456789")}
	w, next := serve(m, withCookie(httptest.NewRequest("GET", "/", nil), is.Token))
	if w.Code != 500 || next.called || len(w.Header().Values("Set-Cookie")) != 0 {
		t.Fatalf("bad API key: %d, next called %v, Set-Cookie %q", w.Code, next.called, w.Header().Values("Set-Cookie"))
	}
}

func TestRequireCustomSettings(t *testing.T) {
	e := newEnv(t)
	is := e.login(t, "max")
	var unauthErr error
	m := &client.Middleware{
		Client:        e.shop,
		CookieName:    "sid",
		CSRFHeader:    "X-XSRF",
		CSRFFormField: "_csrf",
		ClientIP:      func(r *http.Request) string { return r.Header.Get("X-Real-IP") },
		OnUnauthenticated: func(w http.ResponseWriter, r *http.Request, err error) {
			unauthErr = err
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		},
	}
	req := func(method string) *http.Request {
		r := httptest.NewRequest(method, "/", nil)
		r.AddCookie(&http.Cookie{Name: "sid", Value: is.Token})
		r.Header.Set("X-Real-IP", "2001:db8::7")
		return r
	}

	r := req("PUT")
	r.Header.Set("X-XSRF", is.CSRFToken)
	w, next := serve(m, r)
	if w.Code != 418 || !next.called || next.session.IP != "2001:db8::7" {
		t.Fatalf("PUT with custom header: %d, next called %v, session %+v", w.Code, next.called, next.session)
	}

	r = req("PUT")
	r.Header.Set("X-CSRF-Token", is.CSRFToken) // the default header is not read
	if w, next := serve(m, r); w.Code != 403 || next.called {
		t.Fatalf("PUT with the default header: %d, next called %v", w.Code, next.called)
	}

	f := withCookie(formPost(url.Values{"_csrf": {is.CSRFToken}}), "other")
	f.AddCookie(&http.Cookie{Name: "sid", Value: is.Token})
	f.Header.Set("X-Real-IP", "2001:db8::7")
	if w, next := serve(m, f); w.Code != 418 || !next.called {
		t.Fatalf("form with custom field: %d, next called %v", w.Code, next.called)
	}

	if err := e.shop.Logout(context.Background(), is.Token); err != nil {
		t.Fatal(err)
	}
	w, next = serve(m, req("GET"))
	if w.Code != 303 || next.called || !client.IsUnauthenticated(unauthErr) {
		t.Fatalf("after logout: %d, next called %v, err %v", w.Code, next.called, unauthErr)
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != "sid=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax" {
		t.Fatalf("Set-Cookie %q", got)
	}
}

func TestCookieHelpers(t *testing.T) {
	e := newEnv(t)
	is := e.login(t, "ned")
	w := httptest.NewRecorder()
	client.SetCookie(w, is)
	client.SetCookie(w, nil)
	client.ClearCookie(w, "__Host-old")
	got := w.Header().Values("Set-Cookie")
	want := []string{is.Cookie, "__Host-old=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Set-Cookie %q, want %q", got, want)
	}
	// The cookie set is the one the middleware reads.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", strings.SplitN(is.Cookie, ";", 2)[0])
	if w, next := serve(&client.Middleware{Client: e.shop}, r); w.Code != 418 || !next.called {
		t.Fatalf("request with the set cookie: %d", w.Code)
	}
}
