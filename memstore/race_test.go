package memstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/sessions"
)

// Many callers on few users, with short timeouts, while the relay
// publishes to a flaky broker and sweeps: every committed event is
// published once in commit order, and every session's events tell a
// possible story (created first, at most one ending, nothing but rejections
// after it). Run with -race.
func TestConcurrentTraffic(t *testing.T) {
	st := newStore(t, memstore.Options{})
	c := tap(st)
	p := sessions.DefaultPolicy()
	p.IdleTimeout, p.AbsoluteTimeout, p.MaxSessions = 40*time.Millisecond, 300*time.Millisecond, 3
	svc, err := sessions.NewService(st, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{fail: func(call, n int) int {
		if call%40 == 0 {
			return call % (n + 1) // store some or all, then fail
		}
		return -1
	}}
	stop := runRelay(t, st, pub, memstore.RelayConfig{Batch: 50, SweepInterval: 5 * time.Millisecond})

	admin := sessions.Caller{Name: "detector", Admin: true}
	var mu sync.Mutex
	var toks []*sessions.Issued
	pick := func(r *rand.Rand) *sessions.Issued {
		mu.Lock()
		defer mu.Unlock()
		if len(toks) == 0 {
			return nil
		}
		return toks[r.IntN(len(toks))]
	}
	const workers, ops, users = 8, 400, 12
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				user := fmt.Sprintf("racer-%d", r.IntN(users))
				caller := []sessions.Caller{shop, {Name: "blog"}}[r.IntN(2)]
				var err error
				switch op, is := r.IntN(10), pick(r); {
				case op < 3 || is == nil:
					var n *sessions.Issued
					n, err = svc.Create(ctx, caller, sessions.CreateRequest{UserID: user, IP: "198.51.100.1"})
					if err == nil {
						mu.Lock()
						toks = append(toks, n)
						mu.Unlock()
					}
				case op < 6:
					_, err = svc.Validate(ctx, caller, sessions.AccessRequest{Token: is.Token, IP: "198.51.100.2", Path: "/x"})
				case op == 6:
					var n *sessions.Issued
					n, err = svc.Regenerate(ctx, caller, sessions.AccessRequest{Token: is.Token, IP: "198.51.100.3"})
					if err == nil {
						mu.Lock()
						toks = append(toks, n)
						mu.Unlock()
					}
				case op == 7:
					err = svc.Logout(ctx, caller, is.Token)
				case op == 8:
					_, err = svc.RevokeUser(ctx, caller, user, "password_change", is.Session.ID)
				default:
					if r.IntN(2) == 0 {
						err = svc.Reauth(ctx, admin, is.Session.ID, "impossible_travel", "impossible-travel")
					} else {
						_, err = svc.ListUser(ctx, caller, user)
					}
				}
				if err != nil && sessions.ErrorCode(err) == sessions.CodeInternal || errors.Is(err, sessions.ErrUnavailable) {
					t.Errorf("unexpected error: %v", err)
				}
				if r.IntN(20) == 0 {
					time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(350 * time.Millisecond) // every session times out; the sweeper ends them
	waitFor(t, "every session ended", func() bool { return st.Active() == 0 })
	waitFor(t, "an empty outbox", func() bool { return st.Depth() == 0 })
	stop()

	c.same(t, pub.byP)
	all := pub.all()
	if int64(len(all)) != st.Committed() {
		t.Fatalf("published %d, committed %d", len(all), st.Committed())
	}
	type story struct {
		created, ended int
		after          []events.Type
	}
	stories := map[string]*story{}
	created := 0
	for _, e := range all {
		if e.Data.SessionID == "" {
			continue
		}
		s := stories[e.Data.SessionID]
		if s == nil {
			if e.Type != events.SessionCreated {
				t.Fatalf("session %s starts with %s", e.Data.SessionID, e.Type)
			}
			s = &story{}
			stories[e.Data.SessionID] = s
		}
		switch {
		case e.Type == events.SessionCreated:
			s.created++
			created++
		case e.Type.Ending():
			s.ended++
		case s.ended > 0 && e.Type != events.SessionRejected:
			s.after = append(s.after, e.Type)
		}
	}
	for sid, s := range stories {
		if s.created != 1 || s.ended != 1 || len(s.after) > 0 {
			t.Fatalf("session %s: created %d, ended %d, then %v", sid, s.created, s.ended, s.after)
		}
	}
	if created < workers*ops/10 {
		t.Fatalf("only %d sessions created", created)
	}
	t.Logf("%d events, %d sessions", len(all), created)
}
