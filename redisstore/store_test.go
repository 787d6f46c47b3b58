package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
	"github.com/sessionmon/sessionmon/redisstore"
	"github.com/sessionmon/sessionmon/sessions"
	"github.com/sessionmon/sessionmon/sessions/sessionstest"
)

func newStore(t testing.TB) (*redisstore.Store, *redis.Client, string) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return st, rdb, prefix
}

// outbox reads every event still in the store's outbox.
func outbox(t *testing.T, st *redisstore.Store, rdb redis.Cmdable) []events.Event {
	t.Helper()
	var out []events.Event
	for p := range events.Partitions {
		msgs, err := rdb.XRange(context.Background(), st.OutboxKey(p), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			e, err := redisstore.DecodeEntry(m.Values)
			if err != nil {
				t.Fatalf("outbox entry %s: %v", m.ID, err)
			}
			out = append(out, e)
		}
	}
	return out
}

// harness is the contract suite's view of st over rdb.
func harness(st *redisstore.Store, rdb redis.Cmdable) sessionstest.Harness {
	return sessionstest.Harness{
		Store:  st,
		Events: func(t *testing.T) []events.Event { return outbox(t, st, rdb) },
		Sweep:  sessionstest.SweepAll(st),
	}
}

func TestContract(t *testing.T) {
	sessionstest.Run(t, func(t *testing.T) sessionstest.Harness {
		st, rdb, _ := newStore(t)
		return harness(st, rdb)
	})
}

// A dump of Redis must yield no usable token: neither the token nor its
// secret appear in any key or value.
func TestDumpHoldsNoToken(t *testing.T) {
	st, rdb, prefix := newStore(t)
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	caller := sessions.Caller{Name: "shop"}
	var toks []sessions.Token
	for range 3 {
		is, err := svc.Create(ctx, caller, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		re, err := svc.Regenerate(ctx, caller, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, is.Token, re.Token)
	}
	keys, err := rdb.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	var dump bytes.Buffer
	for _, k := range keys {
		dump.WriteString(k)
		v, err := rdb.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		dump.WriteString(v)
		// DUMP may compress; read the values as well.
		switch rdb.Type(ctx, k).Val() {
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				dump.WriteString(f + v)
			}
		case "stream":
			for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
				for f, v := range m.Values {
					dump.WriteString(f)
					dump.WriteString(v.(string))
				}
			}
		}
	}
	for _, tok := range toks {
		secret := tok.Reveal()[strings.IndexByte(tok.Reveal(), '.')+1:]
		if bytes.Contains(dump.Bytes(), []byte(secret)) {
			t.Fatal("a token secret is stored in Redis")
		}
	}
}

// The store fails closed: with Redis unreachable every operation is
// unavailable, never a valid session.
func TestRedisDownIsUnavailable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	st, err := redisstore.New(rdb, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	caller := sessions.Caller{Name: "shop"}
	tok := sessions.Token("00AAAAAAAAAAAAAAAAAAAAAA." + strings.Repeat("A", 43))
	_, err1 := svc.Create(ctx, caller, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
	_, err2 := svc.Validate(ctx, caller, sessions.AccessRequest{Token: tok, IP: "192.0.2.1"})
	err3 := svc.Logout(ctx, caller, tok)
	_, err4 := svc.ListUser(ctx, caller, "alice")
	err5 := svc.RecordAuthEvent(ctx, caller, sessions.AuthEvent{Type: events.AuthLoginFailed, UserID: "a", IP: "192.0.2.1"})
	for i, err := range []error{err1, err2, err3, err4, err5, st.Ping(ctx)} {
		if !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("op %d: got %v, want unavailable", i, err)
		}
	}
}

func TestPrefixWithBracesRejected(t *testing.T) {
	if _, err := redisstore.New(nil, redisstore.Options{Prefix: "a{b}"}); err == nil {
		t.Fatal("want error")
	}
}

// Outbox entries are one packed field; entries written by earlier versions,
// one stream field per attribute, are still relayed during a rollout.
func TestOutboxEntryFormats(t *testing.T) {
	old := map[string]any{"id": "e1", "ty": "session.accessed", "t": "1700000000123", "sid": "07AAAAAAAAAAAAAAAAAAAAAA",
		"uid": "alice", "ac": "shop", "app": "shop", "ip": "192.0.2.1", "ua": "Firefox", "pa": "/p"}
	packed := map[string]any{"e1": "e1\x1fsession.accessed\x1f1700000000123\x1f07AAAAAAAAAAAAAAAAAAAAAA\x1falice\x1fshop\x1fshop\x1f192.0.2.1\x1fFirefox\x1f\x1f\x1f/p\x1f"}
	a, err := redisstore.DecodeEntry(old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := redisstore.DecodeEntry(packed)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.Data.Path != "/p" || a.Data.UserAgent != "Firefox" || a.Time.UnixMilli() != 1700000000123 {
		t.Fatalf("old %+v\npacked %+v", a, b)
	}
	for _, bad := range []string{
		"e1\x1fsession.accessed\x1f1700000000123",
		packed["e1"].(string) + "\x1fextra",
		"\x1fsession.accessed\x1f1700000000123\x1fs\x1falice\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f",
	} {
		if _, err := redisstore.DecodeEntry(map[string]any{"e1": bad}); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// A caller name holding the entries' separator never reaches the outbox.
func TestSeparatorRefused(t *testing.T) {
	st, _, _ := newStore(t)
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.Create(ctx, sessions.Caller{Name: "sh\x1fop"}, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"}); err == nil {
		t.Fatal("create with a separator in the caller name succeeded")
	}
	err = st.Append(ctx, events.Event{ID: "x", Type: events.AuthLoginFailed, Time: time.Now(), Data: events.Data{UserID: "alice", Actor: "a\x1fb"}})
	if err == nil {
		t.Fatal("append with a separator succeeded")
	}
}

// Concurrent validations share pipelines: each gets its own answer, and
// each its own access event.
func TestBatchedAccess(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.Prefix(t, rdb)
	st, err := redisstore.New(rdb, redisstore.Options{Prefix: prefix, Pipelines: 2})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shop, blog := sessions.Caller{Name: "shop"}, sessions.Caller{Name: "blog"}
	const users, rounds = 40, 25
	toks := make([]sessions.Token, users)
	for i := range toks {
		is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: fmt.Sprintf("u%d", i), IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = is.Token
	}
	errs := make(chan error, users)
	for i := range users {
		go func() {
			for r := range rounds {
				ip := fmt.Sprintf("192.0.2.%d", r+1)
				s, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: toks[i], IP: ip, Path: "/p"})
				if err != nil || s.UserID != fmt.Sprintf("u%d", i) || s.IP != ip {
					errs <- fmt.Errorf("user %d round %d: %v %+v", i, r, err, s)
					return
				}
				// A refusal in the same pipelines stays a refusal.
				if _, err := svc.Validate(ctx, blog, sessions.AccessRequest{Token: toks[i], IP: ip}); !errors.Is(err, sessions.ErrForbidden) {
					errs <- fmt.Errorf("user %d: other app's validate: %v", i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	accessed := 0
	for _, e := range outbox(t, st, rdb) {
		if e.Type == events.SessionAccessed {
			accessed++
		}
	}
	if accessed != users*rounds {
		t.Fatalf("%d access events, want %d", accessed, users*rounds)
	}
}
