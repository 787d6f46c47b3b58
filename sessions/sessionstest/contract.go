// Package sessionstest is the contract suite every sessions.Store must
// pass: each adapter's tests call Run with a fresh store per test.
package sessionstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/sessions"
)

// PartitionSweeper is a store that ends timed-out sessions one partition
// at a time, in batches of at most limit.
type PartitionSweeper interface {
	Sweep(ctx context.Context, partition int, now time.Time, limit int) (int, error)
}

// SweepAll is a Harness.Sweep for st: every partition, in batches of 3, so
// that the batching is exercised too.
func SweepAll(st PartitionSweeper) func(ctx context.Context, now time.Time) (int, error) {
	return func(ctx context.Context, now time.Time) (int, error) {
		total := 0
		for p := range events.Partitions {
			n, err := st.Sweep(ctx, p, now, 3)
			total += n
			if err != nil {
				return total, err
			}
		}
		return total, nil
	}
}

// Harness is one store under test.
type Harness struct {
	Store sessions.Store
	// Events returns every event the store has committed so far, in commit
	// order within each partition.
	Events func(t *testing.T) []events.Event
	// Sweep ends every session whose timeout passed by now.
	Sweep func(ctx context.Context, now time.Time) (int, error)
}

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at the current time.
func NewClock() *Clock { return &Clock{t: time.Now().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var (
	appA  = sessions.Caller{Name: "shop"}
	appB  = sessions.Caller{Name: "blog"}
	admin = sessions.Caller{Name: "detector", Admin: true}
	ctx   = context.Background()
)

type env struct {
	h     Harness
	clock *Clock
	svc   *sessions.Service
}

func newEnv(t *testing.T, newHarness func(t *testing.T) Harness, p sessions.Policy) *env {
	h := newHarness(t)
	c := NewClock()
	svc, err := sessions.NewService(h.Store, p, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &env{h: h, clock: c, svc: svc}
}

func (e *env) create(t *testing.T, c sessions.Caller, user string) *sessions.Issued {
	t.Helper()
	is, err := e.svc.Create(ctx, c, sessions.CreateRequest{UserID: user, IP: "203.0.113.7", UserAgent: "Mozilla/5.0 test"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return is
}

func (e *env) validate(c sessions.Caller, tok sessions.Token) (*sessions.Session, error) {
	return e.svc.Validate(ctx, c, sessions.AccessRequest{Token: tok, IP: "203.0.113.7", UserAgent: "Mozilla/5.0 test", Path: "/cart"})
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// types returns the types of the events of one session, in order.
func (e *env) types(t *testing.T, sid string) []events.Type {
	var out []events.Type
	for _, ev := range e.h.Events(t) {
		if ev.Data.SessionID == sid {
			out = append(out, ev.Type)
		}
	}
	return out
}

func (e *env) find(t *testing.T, sid string, typ events.Type) events.Event {
	t.Helper()
	for _, ev := range e.h.Events(t) {
		if ev.Data.SessionID == sid && ev.Type == typ {
			return ev
		}
	}
	t.Fatalf("no %s event for session %s; have %v", typ, sid, e.types(t, sid))
	return events.Event{}
}

func wantTypes(t *testing.T, got []events.Type, want ...events.Type) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// Run runs the contract suite.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	def := sessions.DefaultPolicy()
	run := func(name string, p sessions.Policy, f func(t *testing.T, e *env)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, newHarness, p))
		})
	}

	run("CreateThenValidate", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		if is.Session.ID == "" || is.Session.CSRFToken == "" || is.Token == "" {
			t.Fatalf("incomplete session: %+v", is.Session)
		}
		if got, want := is.Session.ExpiresAt.Sub(is.Session.CreatedAt), 8*time.Hour; got != want {
			t.Fatalf("absolute lifetime %s, want %s", got, want)
		}
		e.clock.Advance(10 * time.Minute)
		s, err := e.validate(appA, is.Token)
		if err != nil {
			t.Fatal(err)
		}
		if s.UserID != "alice" || s.App != "shop" || s.State != sessions.StateActive || s.CSRFToken != is.Session.CSRFToken {
			t.Fatalf("validated session %+v", s)
		}
		if want := e.clock.Now().Add(30 * time.Minute); !s.IdleExpiresAt.Equal(want) {
			t.Fatalf("idle expiry %s not slid to %s", s.IdleExpiresAt, want)
		}
		wantTypes(t, e.types(t, is.Session.ID), events.SessionCreated, events.SessionAccessed)
		acc := e.find(t, is.Session.ID, events.SessionAccessed)
		if acc.Data.UserID != "alice" || acc.Data.App != "shop" || acc.Data.IP != "203.0.113.7" || acc.Data.Path != "/cart" || acc.ID == "" {
			t.Fatalf("access event %+v", acc)
		}
	})

	run("MalformedTokenIsNotFound", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		for _, tok := range []sessions.Token{"x", sessions.Token(strings.Repeat("a", 68)), is.Token[:len(is.Token)-1] + "!"} {
			_, err := e.validate(appA, tok)
			wantErr(t, err, sessions.ErrNotFound)
		}
	})

	run("WrongSecretIsNotFoundAndRecorded", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		other := e.create(t, appA, "bob")
		forged := sessions.Token(is.Session.ID + other.Token.Reveal()[len(is.Session.ID):])
		_, err := e.validate(appA, forged)
		wantErr(t, err, sessions.ErrNotFound)
		if ev := e.find(t, is.Session.ID, events.SessionRejected); ev.Data.Reason != "invalid_secret" {
			t.Fatalf("rejected reason %q", ev.Data.Reason)
		}
	})

	run("IdleTimeout", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		e.clock.Advance(29 * time.Minute)
		if _, err := e.validate(appA, is.Token); err != nil {
			t.Fatalf("within idle timeout: %v", err)
		}
		e.clock.Advance(30 * time.Minute)
		_, err := e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrExpired)
		_, err = e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrExpired)
		wantTypes(t, e.types(t, is.Session.ID), events.SessionCreated, events.SessionAccessed,
			events.SessionExpired, events.SessionRejected, events.SessionRejected)
		if r := e.find(t, is.Session.ID, events.SessionExpired).Data.Reason; r != "idle_timeout" {
			t.Fatalf("expiry reason %q", r)
		}
	})

	run("AbsoluteTimeout", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		for range 23 { // 23 × 20 min = 7h40m of activity
			e.clock.Advance(20 * time.Minute)
			if _, err := e.validate(appA, is.Token); err != nil {
				t.Fatalf("active session refused at %s: %v", e.clock.Now().Sub(is.Session.CreatedAt), err)
			}
		}
		e.clock.Advance(20 * time.Minute)
		_, err := e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrExpired)
		if r := e.find(t, is.Session.ID, events.SessionExpired).Data.Reason; r != "absolute_timeout" {
			t.Fatalf("expiry reason %q", r)
		}
	})

	run("SweeperExpiresUnusedSessions", def, func(t *testing.T, e *env) {
		a := e.create(t, appA, "alice")
		b := e.create(t, appA, "bob")
		e.clock.Advance(20 * time.Minute)
		if _, err := e.validate(appA, b.Token); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(11 * time.Minute)
		n, err := e.h.Sweep(ctx, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("swept %d sessions, want 1 (alice's)", n)
		}
		wantTypes(t, e.types(t, a.Session.ID), events.SessionCreated, events.SessionExpired)
		wantTypes(t, e.types(t, b.Session.ID), events.SessionCreated, events.SessionAccessed)
		if n, _ := e.h.Sweep(ctx, e.clock.Now()); n != 0 {
			t.Fatalf("second sweep ended %d sessions", n)
		}
		_, err = e.validate(appA, a.Token)
		wantErr(t, err, sessions.ErrExpired)
		// Exactly one ending event, however often it is looked at.
		e.clock.Advance(time.Hour)
		if _, err := e.h.Sweep(ctx, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		wantTypes(t, e.types(t, a.Session.ID), events.SessionCreated, events.SessionExpired, events.SessionRejected)
		wantTypes(t, e.types(t, b.Session.ID), events.SessionCreated, events.SessionAccessed, events.SessionExpired)
	})

	run("RegenerateKillsOldToken", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		re, err := e.svc.Regenerate(ctx, appA, sessions.AccessRequest{Token: is.Token, IP: "203.0.113.7"})
		if err != nil {
			t.Fatal(err)
		}
		if re.Token == is.Token || re.Session.CSRFToken == is.Session.CSRFToken || re.Session.ID != is.Session.ID {
			t.Fatal("regenerate must change token and CSRF token and keep the session ID")
		}
		_, err = e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrRevoked)
		if _, err := e.validate(appA, re.Token); err != nil {
			t.Fatalf("new token: %v", err)
		}
		// Logging out with the old token does not end the session.
		wantErr(t, e.svc.Logout(ctx, appA, is.Token), sessions.ErrRevoked)
		if _, err := e.validate(appA, re.Token); err != nil {
			t.Fatalf("new token after old-token logout: %v", err)
		}
		wantTypes(t, e.types(t, is.Session.ID), events.SessionCreated, events.SessionRegenerated,
			events.SessionRejected, events.SessionAccessed, events.SessionRejected, events.SessionAccessed)
	})

	run("LogoutIsServerSide", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		if err := e.svc.Logout(ctx, appA, is.Token); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := e.validate(appA, is.Token)
			wantErr(t, err, sessions.ErrRevoked)
		}
		if err := e.svc.Logout(ctx, appA, is.Token); err != nil {
			t.Fatalf("second logout: %v", err)
		}
		_, err := e.svc.Regenerate(ctx, appA, sessions.AccessRequest{Token: is.Token, IP: "203.0.113.7"})
		wantErr(t, err, sessions.ErrRevoked)
		wantTypes(t, e.types(t, is.Session.ID), events.SessionCreated, events.SessionTerminated,
			events.SessionRejected, events.SessionRejected, events.SessionRejected, events.SessionRejected)
		if r := e.find(t, is.Session.ID, events.SessionTerminated).Data.Reason; r != "logout" {
			t.Fatalf("terminate reason %q", r)
		}
		// Still refused until the absolute expiry.
		e.clock.Advance(7 * time.Hour)
		_, err = e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrRevoked)
	})

	run("FixationReplaceToken", def, func(t *testing.T, e *env) {
		pre := e.create(t, appA, "anonymous-7")
		post, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7", ReplaceToken: pre.Token})
		if err != nil {
			t.Fatal(err)
		}
		if post.Token == pre.Token || post.Session.ID == pre.Session.ID {
			t.Fatal("login must mint a new session ID and token")
		}
		_, err = e.validate(appA, pre.Token)
		wantErr(t, err, sessions.ErrRevoked)
		if r := e.find(t, pre.Session.ID, events.SessionReplaced).Data.Reason; r != "replaced" {
			t.Fatalf("replace reason %q", r)
		}
		if p := e.find(t, post.Session.ID, events.SessionCreated).Data.PreviousSessionID; p != pre.Session.ID {
			t.Fatalf("created event links %q, want %q", p, pre.Session.ID)
		}
		// A dead or unknown replace_token does not stop a login.
		if _, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7", ReplaceToken: pre.Token}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7", ReplaceToken: "garbage"}); err != nil {
			t.Fatal(err)
		}
		// Another app's token is not ended, and does not stop the login.
		other := e.create(t, appB, "alice")
		if _, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7", ReplaceToken: other.Token}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.validate(appB, other.Token); err != nil {
			t.Fatalf("another app's session was ended: %v", err)
		}
	})

	run("LimitEvictsOldest", def, func(t *testing.T, e *env) {
		var all []*sessions.Issued
		for range 6 {
			all = append(all, e.create(t, appA, "alice"))
			e.clock.Advance(time.Second)
		}
		_, err := e.validate(appA, all[0].Token)
		wantErr(t, err, sessions.ErrRevoked)
		if r := e.find(t, all[0].Session.ID, events.SessionEvicted).Data.Reason; r != "max_sessions" {
			t.Fatalf("evict reason %q", r)
		}
		list, err := e.svc.ListUser(ctx, appA, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 5 {
			t.Fatalf("%d live sessions, want 5", len(list))
		}
		for _, s := range list {
			if s.ID == all[0].Session.ID || s.CSRFToken != "" {
				t.Fatalf("listed %+v", s)
			}
		}
	})

	deny := def
	deny.LimitMode = sessions.LimitDeny
	run("LimitDenies", deny, func(t *testing.T, e *env) {
		for range 5 {
			e.create(t, appA, "alice")
		}
		_, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7"})
		wantErr(t, err, sessions.ErrLimit)
		// Sessions that timed out do not count.
		e.clock.Advance(31 * time.Minute)
		e.create(t, appA, "alice")
	})

	for _, mode := range []sessions.LimitMode{sessions.LimitEvictOldest, sessions.LimitDeny} {
		p := def
		p.LimitMode = mode
		run("LimitRace/"+string(mode), p, func(t *testing.T, e *env) {
			const logins = 40
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, limited := 0, 0
			for range logins {
				wg.Go(func() {
					_, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "racer", IP: "198.51.100.1"})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, sessions.ErrLimit):
						limited++
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			list, err := e.svc.ListUser(ctx, admin, "racer")
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 5 {
				t.Fatalf("%d live sessions after %d concurrent logins, want 5", len(list), logins)
			}
			evicted := 0
			for _, ev := range e.h.Events(t) {
				if ev.Type == events.SessionEvicted && ev.Data.UserID == "racer" {
					evicted++
				}
			}
			want := map[sessions.LimitMode][3]int{
				sessions.LimitEvictOldest: {logins, 0, logins - 5},
				sessions.LimitDeny:        {5, logins - 5, 0},
			}[mode]
			if ok != want[0] || limited != want[1] || evicted != want[2] {
				t.Fatalf("created %d, refused %d, evicted %d; want %v", ok, limited, evicted, want)
			}
		})
	}

	run("AppIsolation", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		_, err := e.validate(appB, is.Token)
		wantErr(t, err, sessions.ErrForbidden)
		wantErr(t, e.svc.Logout(ctx, appB, is.Token), sessions.ErrForbidden)
		wantErr(t, e.svc.TerminateUserSession(ctx, appB, "alice", is.Session.ID), sessions.ErrForbidden)
		if l, err := e.svc.ListUser(ctx, appB, "alice"); err != nil || len(l) != 0 {
			t.Fatalf("app B lists %v, %v", l, err)
		}
		if n, err := e.svc.RevokeUser(ctx, appB, "alice", "password_change", ""); err != nil || n != 0 {
			t.Fatalf("app B revoked %d, %v", n, err)
		}
		wantErr(t, e.svc.Revoke(ctx, appB, is.Session.ID, "x", ""), sessions.ErrForbidden)
		wantErr(t, e.svc.Reauth(ctx, appA, is.Session.ID, "x", ""), sessions.ErrForbidden)
		if _, err := e.validate(admin, is.Token); err != nil {
			t.Fatalf("admin validate: %v", err)
		}
		if l, err := e.svc.ListUser(ctx, admin, "alice"); err != nil || len(l) != 1 {
			t.Fatalf("admin lists %v, %v", l, err)
		}
		if _, err := e.validate(appA, is.Token); err != nil {
			t.Fatalf("owner validate: %v", err)
		}
	})

	run("CSRF", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		req := sessions.AccessRequest{Token: is.Token, IP: "203.0.113.7", CSRFToken: is.Session.CSRFToken}
		if _, err := e.svc.Validate(ctx, appA, req); err != nil {
			t.Fatal(err)
		}
		req.CSRFToken = "A" + is.Session.CSRFToken[1:]
		if req.CSRFToken == is.Session.CSRFToken {
			req.CSRFToken = "B" + is.Session.CSRFToken[1:]
		}
		_, err := e.svc.Validate(ctx, appA, req)
		wantErr(t, err, sessions.ErrCSRF)
		if r := e.find(t, is.Session.ID, events.SessionRejected).Data.Reason; r != "csrf_mismatch" {
			t.Fatalf("reason %q", r)
		}
		req.CSRFToken = "short"
		_, err = e.svc.Validate(ctx, appA, req)
		wantErr(t, err, sessions.ErrCSRF)
	})

	run("RevokeUserExcept", def, func(t *testing.T, e *env) {
		keep := e.create(t, appA, "alice")
		a := e.create(t, appA, "alice")
		b := e.create(t, appA, "alice")
		other := e.create(t, appA, "bob")
		n, err := e.svc.RevokeUser(ctx, appA, "alice", "password_change", keep.Session.ID)
		if err != nil || n != 2 {
			t.Fatalf("revoked %d, %v; want 2", n, err)
		}
		for _, is := range []*sessions.Issued{a, b} {
			_, err := e.validate(appA, is.Token)
			wantErr(t, err, sessions.ErrRevoked)
			if r := e.find(t, is.Session.ID, events.SessionRevoked).Data.Reason; r != "password_change" {
				t.Fatalf("reason %q", r)
			}
		}
		for _, is := range []*sessions.Issued{keep, other} {
			if _, err := e.validate(appA, is.Token); err != nil {
				t.Fatal(err)
			}
		}
	})

	run("TerminateOneSession", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		wantErr(t, e.svc.TerminateUserSession(ctx, appA, "bob", is.Session.ID), sessions.ErrNoSuchSession)
		if err := e.svc.TerminateUserSession(ctx, appA, "alice", is.Session.ID); err != nil {
			t.Fatal(err)
		}
		_, err := e.validate(appA, is.Token)
		wantErr(t, err, sessions.ErrRevoked)
		wantErr(t, e.svc.TerminateUserSession(ctx, appA, "alice", "00AAAAAAAAAAAAAAAAAAAAAA"), sessions.ErrNoSuchSession)
	})

	run("AdminRevokeAndReauth", def, func(t *testing.T, e *env) {
		a := e.create(t, appA, "alice")
		b := e.create(t, appA, "alice")
		if err := e.svc.Revoke(ctx, admin, a.Session.ID, "shared_session", "shared-session"); err != nil {
			t.Fatal(err)
		}
		_, err := e.validate(appA, a.Token)
		wantErr(t, err, sessions.ErrRevoked)
		if ev := e.find(t, a.Session.ID, events.SessionRevoked); ev.Data.Rule != "shared-session" || ev.Data.Actor != "detector" {
			t.Fatalf("revoke event %+v", ev.Data)
		}
		if err := e.svc.Reauth(ctx, admin, b.Session.ID, "impossible_travel", "impossible-travel"); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err = e.validate(appA, b.Token)
			wantErr(t, err, sessions.ErrReauth)
		}
		// Re-authentication: the app logs the user in again, replacing the token.
		n, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "203.0.113.7", ReplaceToken: b.Token})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.validate(appA, n.Token); err != nil {
			t.Fatal(err)
		}
		_, err = e.validate(appA, b.Token)
		wantErr(t, err, sessions.ErrRevoked)
		wantTypes(t, e.types(t, b.Session.ID), events.SessionCreated, events.SessionReauthRequired,
			events.SessionRejected, events.SessionRejected, events.SessionReplaced, events.SessionRejected)
		// Idempotent on dead sessions; unknown sessions are not found.
		if err := e.svc.Revoke(ctx, admin, a.Session.ID, "again", ""); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.svc.Revoke(ctx, admin, "00AAAAAAAAAAAAAAAAAAAAAA", "x", ""), sessions.ErrNoSuchSession)
	})

	run("AttributesRoundTrip", def, func(t *testing.T, e *env) {
		attrs := map[string]string{"role": "admin", "mfa": "webauthn"}
		is, err := e.svc.Create(ctx, appA, sessions.CreateRequest{UserID: "alice", IP: "2001:db8::1", Attributes: attrs})
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.svc.Validate(ctx, appA, sessions.AccessRequest{Token: is.Token, IP: "::ffff:192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(s.Attributes) != fmt.Sprint(attrs) || s.IP != "192.0.2.1" {
			t.Fatalf("attributes %v, ip %s", s.Attributes, s.IP)
		}
	})

	run("AuthEvents", def, func(t *testing.T, e *env) {
		for _, typ := range []events.Type{events.AuthLoginFailed, events.AuthLoginSucceeded} {
			if err := e.svc.RecordAuthEvent(ctx, appA, sessions.AuthEvent{Type: typ, UserID: "carol", IP: "198.51.100.9", UserAgent: "curl"}); err != nil {
				t.Fatal(err)
			}
		}
		var got []events.Type
		for _, ev := range e.h.Events(t) {
			if ev.Data.UserID == "carol" {
				got = append(got, ev.Type)
				if ev.Data.IP != "198.51.100.9" || ev.Data.App != "shop" {
					t.Fatalf("auth event %+v", ev.Data)
				}
			}
		}
		wantTypes(t, got, events.AuthLoginFailed, events.AuthLoginSucceeded)
	})

	run("NoTokenInEvents", def, func(t *testing.T, e *env) {
		is := e.create(t, appA, "alice")
		re, err := e.svc.Regenerate(ctx, appA, sessions.AccessRequest{Token: is.Token, IP: "203.0.113.7"})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = e.validate(appA, is.Token)
		_ = e.svc.Logout(ctx, appA, re.Token)
		evs := e.h.Events(t)
		seen := map[string]bool{}
		for _, ev := range evs {
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range []sessions.Token{is.Token, re.Token} {
				secret := tok.Reveal()[strings.IndexByte(tok.Reveal(), '.')+1:]
				if strings.Contains(string(b), secret) {
					t.Fatalf("event %s contains a token secret", ev.Type)
				}
			}
			if seen[ev.ID] {
				t.Fatalf("duplicate event ID %s", ev.ID)
			}
			seen[ev.ID] = true
		}
	})
}
