package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/httpapi"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// API key secrets of the test service: two apps and the detector.
const (
	shopSecret  = "shop-secret-0123456789abcdef"
	blogSecret  = "blog-secret-0123456789abcdef"
	adminSecret = "detector-secret-0123456789ab"
)

const (
	loginIP = "203.0.113.9"
	loginUA = "Firefox/140"
)

// clock is the service's clock, moved by tests to expire sessions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a real session service (Redis-backed, in-process) and clients of
// it with each API key.
type env struct {
	url               string
	shop, blog, admin *client.Client
	clock             *clock
}

// newEnv starts a session service over the test Redis.
func newEnv(t *testing.T) *env {
	t.Helper()
	rdb := testenv.Redis(t)
	return newEnvWith(t, rdb, testenv.Prefix(t, rdb))
}

// newEnvWith starts a session service over rdb.
func newEnvWith(t *testing.T, rdb redis.UniversalClient, prefix string) *env {
	t.Helper()
	store, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	svc, err := sessions.NewService(store, sessions.DefaultPolicy(), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := httpapi.ParseAPIKeys("test keys",
		"shop:app:"+shopSecret+",blog:app:"+blogSecret+",detector:admin:"+adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := httpapi.NewKeys(parsed)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.Handler(httpapi.Config{
		Service: svc, Keys: keys, Log: slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, shop: newClient(t, srv.URL, shopSecret), blog: newClient(t, srv.URL, blogSecret),
		admin: newClient(t, srv.URL, adminSecret), clock: clk}
}

func newClient(t *testing.T, url, key string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, key, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// login creates a session of user with the shop's key.
func (e *env) login(t *testing.T, user string) *client.Issued {
	t.Helper()
	is, err := e.shop.CreateSession(context.Background(), client.CreateRequest{UserID: user, IP: loginIP, UserAgent: loginUA})
	if err != nil {
		t.Fatalf("create session of %q: %v", user, err)
	}
	return is
}

func access(token string) client.AccessRequest {
	return client.AccessRequest{Token: token, IP: loginIP, UserAgent: loginUA, Path: "/account"}
}

// fakeSessionID and fakeToken are well-formed but name no session.
var (
	fakeSessionID = "00" + strings.Repeat("A", 22)
	fakeToken     = fakeSessionID + "." + strings.Repeat("s", 43)
)

// closedURL returns the URL of a server that is no longer listening.
func closedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestNew(t *testing.T) {
	cases := []struct {
		url, key string
		opts     []client.Option
		ok       bool
	}{
		{"http://127.0.0.1:8080", "key", nil, true},
		{"https://sessions.internal/prefix/", "key", nil, true},
		{"http://127.0.0.1:8080", "", nil, false},
		{"127.0.0.1:8080", "key", nil, false},
		{"ftp://host", "key", nil, false},
		{"http://", "key", nil, false},
		{"http://host/?q=1", "key", nil, false},
		{"http://host", "key", []client.Option{client.WithHTTPClient(nil)}, false},
	}
	for _, c := range cases {
		_, err := client.New(c.url, c.key, c.opts...)
		if (err == nil) != c.ok {
			t.Errorf("New(%q, %q): err = %v, want ok = %v", c.url, c.key, err, c.ok)
		}
	}
}

func TestSessionLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	is, err := e.shop.CreateSession(ctx, client.CreateRequest{
		UserID: "alice", IP: loginIP, UserAgent: loginUA, Attributes: map[string]string{"role": "buyer"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if is.Token == "" || is.SessionID == "" || is.UserID != "alice" || is.CSRFToken == "" ||
		is.CreatedAt.IsZero() || !is.ExpiresAt.After(is.CreatedAt) || !is.IdleExpiresAt.After(is.CreatedAt) {
		t.Fatalf("issued %+v: fields missing", *is)
	}
	if want := "__Host-sid=" + is.Token + "; Path=/; Secure; HttpOnly; SameSite=Lax"; is.Cookie != want {
		t.Fatalf("cookie %q, want %q", is.Cookie, want)
	}

	s, err := e.shop.Validate(ctx, client.AccessRequest{Token: is.Token, IP: "198.51.100.7", UserAgent: "Chrome", CSRFToken: is.CSRFToken, Path: "/cart"})
	if err != nil {
		t.Fatal(err)
	}
	if s.SessionID != is.SessionID || s.UserID != "alice" || s.App != "shop" || s.IP != "198.51.100.7" ||
		s.UserAgent != "Chrome" || s.State != "active" || s.Attributes["role"] != "buyer" ||
		s.CSRFToken != is.CSRFToken || !s.CreatedAt.Equal(is.CreatedAt) || s.LastSeenAt.IsZero() ||
		!s.ExpiresAt.Equal(is.ExpiresAt) || s.IdleExpiresAt.IsZero() {
		t.Fatalf("validated session %+v does not match issued %v", *s, is)
	}

	re, err := e.shop.Regenerate(ctx, access(is.Token))
	if err != nil {
		t.Fatal(err)
	}
	if re.SessionID != is.SessionID || re.Token == is.Token || re.CSRFToken == is.CSRFToken || re.Cookie == is.Cookie {
		t.Fatalf("regenerate kept the token, CSRF token or cookie, or changed the session ID")
	}
	if _, err := e.shop.Validate(ctx, access(is.Token)); !client.IsUnauthenticated(err) {
		t.Fatalf("validate with the regenerated-away token: %v, want unauthenticated", err)
	}
	if _, err := e.shop.Validate(ctx, access(re.Token)); err != nil {
		t.Fatalf("validate with the new token: %v", err)
	}

	// A second login that replaces the first session's token.
	second, err := e.shop.CreateSession(ctx, client.CreateRequest{UserID: "alice", IP: loginIP, UserAgent: loginUA, ReplaceToken: re.Token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.shop.Validate(ctx, access(re.Token)); !client.IsUnauthenticated(err) {
		t.Fatalf("validate with the replaced token: %v, want unauthenticated", err)
	}

	list, err := e.shop.ListUserSessions(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SessionID != second.SessionID || list[0].UserID != "alice" || list[0].App != "shop" ||
		list[0].State != "active" || list[0].CSRFToken != "" {
		t.Fatalf("list: %+v, want only session %s", list, second.SessionID)
	}

	if err := e.shop.Logout(ctx, second.Token); err != nil {
		t.Fatal(err)
	}
	if err := e.shop.Logout(ctx, second.Token); err != nil {
		t.Fatalf("second logout: %v, want nil", err)
	}
	if list, err := e.shop.ListUserSessions(ctx, "alice"); err != nil || len(list) != 0 {
		t.Fatalf("list after logout: %v %v, want none", list, err)
	}
}

func TestAdminOperations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("RevokeSession", func(t *testing.T) {
		is := e.login(t, "bob")
		if err := e.admin.RevokeSession(ctx, is.SessionID, "impossible travel", "geo-velocity"); err != nil {
			t.Fatal(err)
		}
		_, err := e.shop.Validate(ctx, access(is.Token))
		if !client.IsUnauthenticated(err) || client.IsReauthRequired(err) {
			t.Fatalf("validate after revoke: %v, want session_revoked", err)
		}
	})
	t.Run("ForceReauth", func(t *testing.T) {
		is := e.login(t, "carol")
		if err := e.admin.ForceReauth(ctx, is.SessionID, "new device", ""); err != nil {
			t.Fatal(err)
		}
		_, err := e.shop.Validate(ctx, access(is.Token))
		if !client.IsReauthRequired(err) || !client.IsUnauthenticated(err) {
			t.Fatalf("validate after reauth: %v, want reauth_required", err)
		}
		// Logging in again with the flagged token as ReplaceToken ends it.
		if _, err := e.shop.CreateSession(ctx, client.CreateRequest{UserID: "carol", IP: loginIP, ReplaceToken: is.Token}); err != nil {
			t.Fatal(err)
		}
		list, err := e.shop.ListUserSessions(ctx, "carol")
		if err != nil || len(list) != 1 || list[0].SessionID == is.SessionID {
			t.Fatalf("list after re-login: %+v %v, want only the new session", list, err)
		}
	})
	t.Run("TerminateSession", func(t *testing.T) {
		is := e.login(t, "dave")
		if err := e.shop.TerminateSession(ctx, "dave", is.SessionID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.shop.Validate(ctx, access(is.Token)); !client.IsUnauthenticated(err) {
			t.Fatalf("validate after terminate: %v, want unauthenticated", err)
		}
	})
	t.Run("RevokeUserSessions", func(t *testing.T) {
		keep := e.login(t, "erin")
		e.login(t, "erin")
		e.login(t, "erin")
		n, err := e.shop.RevokeUserSessions(ctx, "erin", "password changed", keep.SessionID)
		if err != nil || n != 2 {
			t.Fatalf("revoke user sessions: %d, %v; want 2", n, err)
		}
		if _, err := e.shop.Validate(ctx, access(keep.Token)); err != nil {
			t.Fatalf("the excepted session: %v", err)
		}
		n, err = e.admin.RevokeUserSessions(ctx, "erin", "account locked", "")
		if err != nil || n != 1 {
			t.Fatalf("revoke all: %d, %v; want 1", n, err)
		}
	})
}

func TestReportLogin(t *testing.T) {
	e := newEnv(t)
	for _, failed := range []bool{true, false} {
		err := e.shop.ReportLogin(context.Background(), client.LoginEvent{Failed: failed, UserID: "frank", IP: loginIP, UserAgent: loginUA})
		if err != nil {
			t.Errorf("report login (failed=%v): %v", failed, err)
		}
	}
}

// User and session IDs are escaped in the path: a user ID with '/', '?',
// '#', '%' and a space reaches the service intact.
func TestPathEscaping(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const user = "ops/team lead?#%2F"
	is := e.login(t, user)
	other := e.login(t, "ops")
	list, err := e.shop.ListUserSessions(ctx, user)
	if err != nil || len(list) != 1 || list[0].SessionID != is.SessionID {
		t.Fatalf("list %q: %+v %v", user, list, err)
	}
	if err := e.shop.TerminateSession(ctx, user, is.SessionID); err != nil {
		t.Fatal(err)
	}
	e.login(t, user)
	if n, err := e.shop.RevokeUserSessions(ctx, user, "test", ""); err != nil || n != 1 {
		t.Fatalf("revoke %q: %d %v", user, n, err)
	}
	if _, err := e.shop.Validate(ctx, access(other.Token)); err != nil {
		t.Fatalf("user %q was touched: %v", "ops", err)
	}
	for _, bad := range []string{"", ".", ".."} {
		if _, err := e.shop.ListUserSessions(ctx, bad); apiErr(err).Code != "invalid_request" {
			t.Errorf("list %q: %v, want invalid_request", bad, err)
		}
	}
}

func apiErr(err error) client.Error {
	var e *client.Error
	if errors.As(err, &e) {
		return *e
	}
	return client.Error{}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	badKey := newClient(t, e.url, "not-a-configured-key-0123456789")

	cases := []struct {
		name                             string
		call                             func(t *testing.T) error
		status                           int
		code                             string
		unauthenticated, reauth, unavail bool
	}{
		{"bad API key", func(t *testing.T) error {
			_, err := badKey.Validate(ctx, access(e.login(t, "u1").Token))
			return err
		}, 401, "unauthorized", false, false, false},
		{"another app's token", func(t *testing.T) error {
			_, err := e.blog.Validate(ctx, access(e.login(t, "u2").Token))
			return err
		}, 403, "forbidden", false, false, false},
		{"another app's session by ID", func(t *testing.T) error {
			return e.blog.TerminateSession(ctx, "u3", e.login(t, "u3").SessionID)
		}, 403, "forbidden", false, false, false},
		{"validate after logout", func(t *testing.T) error {
			is := e.login(t, "u4")
			if err := e.shop.Logout(ctx, is.Token); err != nil {
				t.Fatal(err)
			}
			_, err := e.shop.Validate(ctx, access(is.Token))
			return err
		}, 401, "session_revoked", true, false, false},
		{"validate after force reauth", func(t *testing.T) error {
			is := e.login(t, "u5")
			if err := e.admin.ForceReauth(ctx, is.SessionID, "suspicious", "ua-change"); err != nil {
				t.Fatal(err)
			}
			_, err := e.shop.Validate(ctx, access(is.Token))
			return err
		}, 401, "reauth_required", true, true, false},
		{"validate after idle timeout", func(t *testing.T) error {
			is := e.login(t, "u6")
			e.clock.Advance(sessions.DefaultPolicy().IdleTimeout + time.Minute)
			_, err := e.shop.Validate(ctx, access(is.Token))
			return err
		}, 401, "session_expired", true, false, false},
		{"malformed token", func(t *testing.T) error {
			_, err := e.shop.Validate(ctx, access("not-a-token"))
			return err
		}, 401, "session_not_found", true, false, false},
		{"wrong CSRF token", func(t *testing.T) error {
			r := access(e.login(t, "u7").Token)
			r.CSRFToken = "wrong"
			_, err := e.shop.Validate(ctx, r)
			return err
		}, 403, "csrf_mismatch", false, false, false},
		{"app key revokes", func(t *testing.T) error {
			return e.shop.RevokeSession(ctx, e.login(t, "u8").SessionID, "x", "")
		}, 403, "forbidden", false, false, false},
		{"unknown session ID", func(t *testing.T) error {
			return e.admin.ForceReauth(ctx, fakeSessionID, "x", "")
		}, 404, "not_found", false, false, false},
		{"invalid IP", func(t *testing.T) error {
			return e.shop.ReportLogin(ctx, client.LoginEvent{UserID: "u9", IP: "localhost"})
		}, 400, "invalid_request", false, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(t)
			var ae *client.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *client.Error", err, err)
			}
			if ae.Status != c.status || ae.Code != c.code || ae.Message == "" {
				t.Errorf("err = %+v, want status %d code %s", *ae, c.status, c.code)
			}
			if got := client.IsUnauthenticated(err); got != c.unauthenticated {
				t.Errorf("IsUnauthenticated = %v", got)
			}
			if got := client.IsReauthRequired(err); got != c.reauth {
				t.Errorf("IsReauthRequired = %v", got)
			}
			if got := client.IsUnavailable(err); got != c.unavail {
				t.Errorf("IsUnavailable = %v", got)
			}
		})
	}
}

// The service cannot be reached: every call fails as unavailable, with
// the transport error wrapped.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	down := newClient(t, closedURL(t), shopSecret)
	tok := fakeToken
	calls := map[string]func() error{
		"CreateSession": func() error {
			_, err := down.CreateSession(ctx, client.CreateRequest{UserID: "u", IP: loginIP, ReplaceToken: tok})
			return err
		},
		"Validate":   func() error { _, err := down.Validate(ctx, access(tok)); return err },
		"Regenerate": func() error { _, err := down.Regenerate(ctx, access(tok)); return err },
		"Logout":     func() error { return down.Logout(ctx, tok) },
		"ListUserSessions": func() error {
			_, err := down.ListUserSessions(ctx, "u")
			return err
		},
		"TerminateSession": func() error { return down.TerminateSession(ctx, "u", fakeSessionID) },
		"RevokeUserSessions": func() error {
			_, err := down.RevokeUserSessions(ctx, "u", "r", "")
			return err
		},
		"RevokeSession": func() error { return down.RevokeSession(ctx, fakeSessionID, "r", "") },
		"ForceReauth":   func() error { return down.ForceReauth(ctx, fakeSessionID, "r", "") },
		"ReportLogin":   func() error { return down.ReportLogin(ctx, client.LoginEvent{UserID: "u", IP: loginIP}) },
	}
	for name, call := range calls {
		err := call()
		var opErr *net.OpError
		if !client.IsUnavailable(err) || client.IsUnauthenticated(err) || !errors.As(err, &opErr) {
			t.Errorf("%s: %v, want unavailable wrapping a *net.OpError", name, err)
		}
		if err != nil && strings.Contains(err.Error(), tok) {
			t.Errorf("%s: error %q holds the token", name, err)
		}
	}

	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		defer slow.Close()
		defer close(release)
		c := newClient(t, slow.URL, shopSecret, client.WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))
		_, err := c.Validate(ctx, access(tok))
		var ne net.Error
		if !client.IsUnavailable(err) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want an unavailable timeout", err)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		e := newEnv(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := e.shop.Validate(cctx, access(tok))
		if !client.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want unavailable wrapping context.Canceled", err)
		}
	})
	t.Run("store down", func(t *testing.T) {
		// The real service over a Redis that is not there answers 503.
		rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		t.Cleanup(func() { _ = rdb.Close() })
		e := newEnvWith(t, rdb, "smtest-down")
		_, err := e.shop.Validate(ctx, access(tok))
		if !client.IsUnavailable(err) || apiErr(err).Status != 503 || apiErr(err).Code != "unavailable" {
			t.Fatalf("err = %v, want 503 unavailable", err)
		}
	})
	t.Run("gateway", func(t *testing.T) {
		for _, status := range []int{502, 503, 504} {
			gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "<html>upstream down</html>", status)
			}))
			_, err := newClient(t, gw.URL, shopSecret).Validate(ctx, access(tok))
			gw.Close()
			if !client.IsUnavailable(err) || apiErr(err).Status != status || apiErr(err).Code != "" {
				t.Errorf("gateway %d: %v, want unavailable without a code", status, err)
			}
		}
	})
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Tokens never appear in errors, in printed Issued values, or in logs of
// them.
func TestTokenNeverShown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	is := e.login(t, "grace")
	secret := is.Token[strings.IndexByte(is.Token, '.')+1:]

	var errs []error
	_, err := newClient(t, e.url, "not-a-configured-key-0123456789").Validate(ctx, access(is.Token))
	errs = append(errs, err)
	_, err = e.blog.Regenerate(ctx, access(is.Token))
	errs = append(errs, err)
	_, err = newClient(t, closedURL(t), shopSecret).Validate(ctx, access(is.Token))
	errs = append(errs, err)
	// A gateway that echoes the request body back in its error.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"error":{"code":"invalid_request","message":"bad body %s"}}`, b)
	}))
	defer echo.Close()
	_, err = newClient(t, echo.URL, shopSecret).Validate(ctx, access(is.Token))
	errs = append(errs, err)
	if err := e.shop.Logout(ctx, is.Token); err != nil {
		t.Fatal(err)
	}
	_, err = e.shop.Validate(ctx, access(is.Token))
	errs = append(errs, err)

	for _, err := range errs {
		if err == nil {
			t.Fatal("a call that should fail succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q holds the token", err)
		}
	}

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("created", "session", is, "ptr", *is)
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", is), "%+v": fmt.Sprintf("%+v", *is), "%#v": fmt.Sprintf("%#v", is),
		"%s": fmt.Sprintf("%s", is), "slog": logged.String(),
	} {
		if strings.Contains(s, secret) || !strings.Contains(s, is.SessionID) {
			t.Errorf("%s prints %q: want the session ID and no token", name, s)
		}
	}
}
