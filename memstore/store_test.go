package memstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/memstore"
	"github.com/sessionmon/sessionmon/sessions"
	"github.com/sessionmon/sessionmon/sessions/sessionstest"
)

func newStore(t testing.TB, o memstore.Options) *memstore.Store {
	t.Helper()
	st, err := memstore.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestContract(t *testing.T) {
	sessionstest.Run(t, func(t *testing.T) sessionstest.Harness {
		st := newStore(t, memstore.Options{})
		return sessionstest.Harness{
			Store:  st,
			Events: func(t *testing.T) []events.Event { return st.Pending() },
			Sweep:  sessionstest.SweepAll(st),
		}
	})
}

var (
	ctx  = context.Background()
	shop = sessions.Caller{Name: "shop"}
)

// A dump of the store's memory yields no usable token: neither a token, nor
// its secret, nor the secret's raw bytes appear anywhere in what the store
// references; the secret's SHA-256 does (so the walk reached the records).
func TestMemoryHoldsNoToken(t *testing.T) {
	st := newStore(t, memstore.Options{})
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var toks []sessions.Token
	for range 3 {
		is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		re, err := svc.Regenerate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"}) // a rotated token's reuse
		toks = append(toks, is.Token, re.Token)
	}
	var dump bytes.Buffer
	walk(&dump, reflect.ValueOf(st), map[uintptr]bool{})
	if dump.Len() == 0 {
		t.Fatal("nothing dumped")
	}
	for _, tok := range toks {
		secret := tok.Reveal()[strings.IndexByte(tok.Reveal(), '.')+1:]
		raw, err := b64Decode(secret)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{[]byte(tok.Reveal()), []byte(secret), raw} {
			if bytes.Contains(dump.Bytes(), b) {
				t.Fatal("a token secret is held in the store's memory")
			}
		}
		if h := sha256.Sum256([]byte(secret)); !bytes.Contains(dump.Bytes(), h[:]) {
			t.Fatal("the dump lacks a secret's hash: the walk missed the records")
		}
	}
}

// walk writes every string and byte reachable from v (unexported fields
// included) to w.
func walk(w *bytes.Buffer, v reflect.Value, seen map[uintptr]bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || seen[v.Pointer()] {
			return
		}
		seen[v.Pointer()] = true
		walk(w, v.Elem(), seen)
	case reflect.Interface:
		if !v.IsNil() {
			walk(w, v.Elem(), seen)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			walk(w, v.Field(i), seen)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walk(w, v.Index(i), seen)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			walk(w, it.Key(), seen)
			walk(w, it.Value(), seen)
		}
	case reflect.String:
		w.WriteString(v.String())
		w.WriteByte(0)
	case reflect.Uint8:
		w.WriteByte(byte(v.Uint()))
	}
}

// When nothing relays the outbox, writes fail closed at its bound: the
// refused operation changes nothing and records nothing, reads go on, and
// once the relay frees room writes succeed again, with no event lost.
func TestOutboxFullFailsClosed(t *testing.T) {
	const max = 10
	st := newStore(t, memstore.Options{MaxOutbox: max})
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	for st.Depth() < max {
		if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"}); err != nil {
			t.Fatal(err)
		}
	}
	before := st.Committed()
	list, err := svc.ListUser(ctx, shop, "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("list with the outbox full: %v, %v", list, err)
	}
	lastSeen := list[0].LastSeenAt
	other := sessions.Token(strings.Repeat("0", 2) + is.Token.Reveal()[2:]) // another partition, same shape
	_, err1 := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "bob", IP: "192.0.2.1"})
	_, err2 := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
	_, err3 := svc.Validate(ctx, shop, sessions.AccessRequest{Token: other, IP: "192.0.2.1"})
	_, err4 := svc.Regenerate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
	err5 := svc.Logout(ctx, shop, is.Token)
	_, err6 := svc.RevokeUser(ctx, shop, "alice", "password_change", "")
	err7 := svc.Reauth(ctx, sessions.Caller{Name: "detector", Admin: true}, is.Session.ID, "x", "")
	err8 := svc.RecordAuthEvent(ctx, shop, sessions.AuthEvent{Type: events.AuthLoginFailed, UserID: "carol", IP: "192.0.2.1"})
	_, err9 := st.Sweep(ctx, 0, time.Now().Add(48*time.Hour), 0)
	for i, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8, err9, st.Ping(ctx)} {
		if !errors.Is(err, sessions.ErrUnavailable) || !errors.Is(err, memstore.ErrOutboxFull) {
			t.Errorf("op %d: got %v, want unavailable (outbox full)", i+1, err)
		}
		if err != nil && strings.Contains(err.Error(), is.Token.Reveal()[25:]) {
			t.Errorf("op %d: the error holds the token", i+1)
		}
	}
	if st.Committed() != before || st.Depth() != max {
		t.Fatalf("refused operations committed %d events", st.Committed()-before)
	}
	list, err = svc.ListUser(ctx, shop, "alice")
	if err != nil || len(list) != 1 || !list[0].LastSeenAt.Equal(lastSeen) {
		t.Fatalf("a refused operation changed the session: %v, %v", list, err)
	}
	if l, _ := svc.ListUser(ctx, shop, "bob"); len(l) != 0 {
		t.Fatalf("a refused create stored %v", l)
	}

	// Relay what is there: writes go on, and every event was published.
	pub := &recorder{}
	relayUntilEmpty(t, st, pub)
	if _, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"}); err != nil {
		t.Fatalf("validate after the outbox drained: %v", err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(pub.all()); got != max {
		t.Fatalf("published %d events, want %d", got, max)
	}
}

// Dead sessions are forgotten by the sweeper after their tombstone, so
// memory holds only live sessions and recent tombstones.
func TestSweepForgetsTombstones(t *testing.T) {
	st := newStore(t, memstore.Options{Tombstone: time.Hour})
	clock := sessionstest.NewClock()
	svc, err := sessions.NewService(st, sessions.DefaultPolicy(), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	sweep := sessionstest.SweepAll(st)
	a, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "bob", IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Logout(ctx, shop, a.Token); err != nil {
		t.Fatal(err)
	}
	// Bob's session expires (idle) and stays as a tombstone with Alice's.
	clock.Advance(time.Hour)
	if n, err := sweep(ctx, clock.Now()); err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	if n := st.Records(); n != 2 {
		t.Fatalf("%d records, want 2 tombstones", n)
	}
	_, err = svc.Validate(ctx, shop, sessions.AccessRequest{Token: a.Token, IP: "192.0.2.1"})
	if !errors.Is(err, sessions.ErrRevoked) {
		t.Fatalf("tombstone: %v", err)
	}
	// Past absolute expiry (8h) plus tombstone (1h): gone.
	clock.Advance(8 * time.Hour)
	if n, err := sweep(ctx, clock.Now()); err != nil || n != 0 {
		t.Fatalf("swept %d, %v", n, err)
	}
	if n := st.Records(); n != 0 {
		t.Fatalf("%d records left after their tombstones", n)
	}
	_, err = svc.Validate(ctx, shop, sessions.AccessRequest{Token: a.Token, IP: "192.0.2.1"})
	if !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("after the tombstone: %v", err)
	}
	if st.Active() != 0 {
		t.Fatalf("%d active", st.Active())
	}
}

// A live session whose tombstone time passed without a sweep still gets
// its one ending event (Redis would have dropped the key silently).
func TestLateSessionStillEnds(t *testing.T) {
	st := newStore(t, memstore.Options{Tombstone: time.Minute})
	clock := sessionstest.NewClock()
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), clock.Now)
	is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Hour)
	_, err = svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
	if !errors.Is(err, sessions.ErrExpired) {
		t.Fatalf("got %v, want expired", err)
	}
	var types []events.Type
	for _, e := range st.Pending() {
		types = append(types, e.Type)
	}
	if want := []events.Type{events.SessionCreated, events.SessionExpired, events.SessionRejected}; !reflect.DeepEqual(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
}

// Attributes given to and returned by the store are copies.
func TestAttributesAreCopied(t *testing.T) {
	st := newStore(t, memstore.Options{})
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	attrs := map[string]string{"role": "user"}
	is, err := svc.Create(ctx, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1", Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	attrs["role"] = "admin"
	s, err := svc.Validate(ctx, shop, sessions.AccessRequest{Token: is.Token, IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	s.Attributes["role"] = "root"
	l, _ := svc.ListUser(ctx, shop, "alice")
	if l[0].Attributes["role"] != "user" {
		t.Fatalf("stored attributes changed to %v", l[0].Attributes)
	}
}

func TestOptionsAndInput(t *testing.T) {
	if _, err := memstore.New(memstore.Options{MaxOutbox: -1}); err == nil || !strings.Contains(err.Error(), "max outbox") {
		t.Fatalf("negative max outbox: %v", err)
	}
	if _, err := memstore.New(memstore.Options{Tombstone: -time.Second}); err == nil || !strings.Contains(err.Error(), "tombstone") {
		t.Fatalf("negative tombstone: %v", err)
	}
	st := newStore(t, memstore.Options{})
	if st.MaxOutbox() != memstore.DefaultMaxOutbox {
		t.Fatalf("default max outbox %d", st.MaxOutbox())
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	svc, _ := sessions.NewService(st, sessions.DefaultPolicy(), nil)
	if _, err := svc.Create(canceled, shop, sessions.CreateRequest{UserID: "alice", IP: "192.0.2.1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled create: %v", err)
	}
	if _, err := st.Sweep(ctx, events.Partitions, time.Now(), 0); err == nil {
		t.Fatal("sweep of a partition out of range")
	}
	if err := st.End(ctx, sessions.End{Op: sessions.Op{Now: time.Now(), EventID: "x"}, SessionID: "00AAAAAAAAAAAAAAAAAAAAAA", As: sessions.StateActive}); err == nil {
		t.Fatal("ending a session as active")
	}
	if err := st.Append(ctx, events.Event{ID: "x", Type: "nope", Data: events.Data{UserID: "u"}}); err == nil {
		t.Fatal("append of an unknown type")
	}
	if st.Committed() != 0 {
		t.Fatal("refused input committed events")
	}
}
