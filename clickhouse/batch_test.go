package clickhouse

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
)

// base is the time of the test events: recent, inside the retention.
var base = time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Hour)

// session returns the events of one session of user: created, n accesses,
// and an ending (none if end is "").
func session(user, sid string, at time.Time, n int, end events.Type, ips ...string) []events.Event {
	if len(ips) == 0 {
		ips = []string{"198.51.100.7"}
	}
	ev := func(t events.Type, i int) events.Event {
		return events.Event{ID: events.NewID(), Type: t, Source: "sessionsvc", Time: at.Add(time.Duration(i) * time.Second), Data: events.Data{
			SessionID: sid, UserID: user, App: "shop", IP: ips[i%len(ips)], UserAgent: "Firefox", Actor: "shop",
		}}
	}
	out := []events.Event{ev(events.SessionCreated, 0)}
	for i := 1; i <= n; i++ {
		e := ev(events.SessionAccessed, i)
		e.Data.Path = "/orders"
		out = append(out, e)
	}
	if end != "" {
		e := ev(end, n+1)
		e.Data.Reason = "logout"
		out = append(out, e)
	}
	return out
}

func sid(n int) string { return fmt.Sprintf("%02dSess%018d", n%16, n) }

// write stages and writes events in one batch.
func write(t testing.TB, s *Store, o WriterOptions, evs ...events.Event) *EventBatch {
	t.Helper()
	b := s.NewEventBatch(o)
	for _, e := range evs {
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(events.SubjectFor(e), data); err != nil {
			t.Fatalf("add %s: %v", e.Type, err)
		}
	}
	if err := b.Write(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEventBatchRetryIsDeduplicated(t *testing.T) {
	s := testStore(t, 13)
	evs := session("alice", sid(1), base, 5, events.SessionTerminated)
	b := write(t, s, WriterOptions{}, evs...)
	// The same batch again (a retry after an ambiguous failure): the
	// insert_deduplication_token drops it before it reaches the table.
	if err := b.Write(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	raw := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents))
	if raw != uint64(len(evs)) {
		t.Fatalf("rows after a retried batch: %d, want %d", raw, len(evs))
	}
	// The same events in another batch (a redelivery after a crash): the
	// rows land, and every query sees each event once.
	write(t, s, WriterOptions{}, evs[2:]...)
	raw = scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents))
	final := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)+" FINAL")
	if raw != uint64(2*len(evs)-2) || final != uint64(len(evs)) {
		t.Fatalf("rows %d (want %d), FINAL %d (want %d)", raw, 2*len(evs)-2, final, len(evs))
	}
	tl, err := s.UserTimeline(ctxT(t), "alice", time.Time{}, time.Time{}, 0)
	if err != nil || len(tl) != len(evs) {
		t.Fatalf("timeline: %d entries (want %d), %v", len(tl), len(evs), err)
	}
	var n int
	if err := s.Events(ctxT(t), time.Time{}, time.Time{}, func(events.Event) error { n++; return nil }); err != nil || n != len(evs) {
		t.Fatalf("Events: %d (want %d), %v", n, len(evs), err)
	}
	h, err := s.UserHistory(ctxT(t), "alice", time.Time{}, time.Time{})
	if err != nil || len(h.Sessions) != 1 || h.Sessions[0].Events != len(evs) || h.Sessions[0].Endings != 1 {
		t.Fatalf("history: %+v %v", h, err)
	}
	// Merging removes the copies from disk.
	if err := s.conn.Exec(ctxT(t), "OPTIMIZE TABLE "+s.table(TableSessionEvents)+" FINAL"); err != nil {
		t.Fatal(err)
	}
	if raw := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)); raw != uint64(len(evs)) {
		t.Fatalf("rows after merge: %d", raw)
	}
}

// A copy of an event within one batch (a redelivery that joined the batch
// holding the first delivery): inserts do not merge their own block
// (optimize_on_insert=0), so it may reach the table, but every query sees
// the event once, and merging removes it.
func TestEventBatchCopyWithinABatch(t *testing.T) {
	s := testStore(t, 13)
	evs := session("bob", sid(2), base, 3, events.SessionExpired)
	write(t, s, WriterOptions{}, append(evs, evs[1], evs[4])...)
	final := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)+" FINAL")
	uniq := scalar[uint64](t, s, "SELECT uniqExact(id) FROM "+s.table(TableSessionEvents))
	if final != uint64(len(evs)) || uniq != uint64(len(evs)) {
		t.Fatalf("FINAL %d, uniqExact(id) %d, want %d", final, uniq, len(evs))
	}
	tl, err := s.UserTimeline(ctxT(t), "bob", time.Time{}, time.Time{}, 0)
	if err != nil || len(tl) != len(evs) {
		t.Fatalf("timeline: %d entries (want %d), %v", len(tl), len(evs), err)
	}
	var n int
	if err := s.Events(ctxT(t), time.Time{}, time.Time{}, func(events.Event) error { n++; return nil }); err != nil || n != len(evs) {
		t.Fatalf("Events: %d (want %d), %v", n, len(evs), err)
	}
	h, err := s.UserHistory(ctxT(t), "bob", time.Time{}, time.Time{})
	if err != nil || len(h.Sessions) != 1 || h.Sessions[0].Events != len(evs) || h.Sessions[0].Endings != 1 {
		t.Fatalf("history: %+v %v", h, err)
	}
	if err := s.conn.Exec(ctxT(t), "OPTIMIZE TABLE "+s.table(TableSessionEvents)+" FINAL"); err != nil {
		t.Fatal(err)
	}
	if raw := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)); raw != uint64(len(evs)) {
		t.Fatalf("rows after merge: %d", raw)
	}
}

func TestEventBatchRejects(t *testing.T) {
	s := testStore(t, 13)
	now := time.Now()
	good := session("bob", sid(2), now, 0, "")[0]
	enc := func(e events.Event) []byte { b, _ := e.Encode(); return b }
	future := good
	future.Time = now.Add(48 * time.Hour)
	old := good
	old.Time = now.AddDate(0, -14, 0)
	ancient := good
	ancient.Time = time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)
	noUser := good
	noUser.Data.UserID = ""
	cases := []struct {
		data   []byte
		reason string
	}{
		{[]byte("not json"), "malformed"},
		{[]byte(`{"specversion":"1.0"}`), "bad_id"},
		{enc(noUser), "bad_data_user_id"},
		{[]byte(strings.Replace(string(enc(good)), `"ip":"198.51.100.7"`, `"ip":"nope"`, 1)), "bad_data_ip"},
		{[]byte(strings.Replace(string(enc(good)), `"session.created"`, `"session.bogus"`, 1)), "bad_type"},
		{make([]byte, events.MaxSize+1), "too_large"},
		{enc(future), "time_in_future"},
		{enc(old), "time_past_retention"},
		{enc(ancient), "time_out_of_range"},
	}
	b := s.NewEventBatch(WriterOptions{})
	for _, c := range cases {
		err := b.Add("sessions.02.session.created", c.data)
		var r *Rejection
		if !errors.As(err, &r) || r.RejectReason() != c.reason {
			t.Errorf("%.60q: got %v, want reason %s", c.data, err, c.reason)
		}
	}
	if b.Len() != 0 {
		t.Fatalf("rejected messages were staged: %d", b.Len())
	}
	ab := s.NewAlertBatch(WriterOptions{})
	for subject, want := range map[string]string{"alerts.01.x": "bad_type", "actions.01.x": "bad_type", "other.x": "unknown_subject"} {
		err := ab.Add(subject, enc(good))
		var r *Rejection
		if !errors.As(err, &r) || r.RejectReason() != want {
			t.Errorf("%s: got %v, want %s", subject, err, want)
		}
	}
}

// TestNoTokenInTheAuditLog: events carry no tokens by design, but free-text
// fields come from apps and clients; whatever they hold, the log holds no
// usable token.
func TestNoTokenInTheAuditLog(t *testing.T) {
	s := testStore(t, 13)
	const tok = "05AbCdEfGhIjKlMnOpQrStUv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x"
	secret := tok[25:]
	e := session("carol", sid(5), base, 1, events.SessionRevoked)
	e[1].Data.Path = "/login/callback?session=" + tok
	e[1].Data.UserAgent = "curl " + tok
	e[2].Data.Reason = "leaked token " + tok
	write(t, s, WriterOptions{}, e...)
	ab := s.NewAlertBatch(WriterOptions{})
	alert := events.Alert{ID: "a1", Time: base, Rule: "shared-session", Severity: "high", UserID: "carol", Action: "alert", Mode: "enforce",
		Summary: "token " + tok, Evidence: events.Evidence{UserAgents: []string{tok}}}
	if err := ab.AddAlert(alert, "detector"); err != nil {
		t.Fatal(err)
	}
	if err := ab.AddAction(events.Action{ID: "x1", Time: base, Kind: events.KindReview, Actor: "rev", Action: "resolve", Result: "done", UserID: "carol", Note: tok}, "alerter"); err != nil {
		t.Fatal(err)
	}
	if err := ab.Write(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{TableSessionEvents, TableAlerts, TableActions} {
		n := scalar[uint64](t, s, "SELECT count() FROM "+s.table(table)+" WHERE position(toString(tuple(*)), ?) > 0", secret)
		if n != 0 {
			t.Errorf("%s: %d rows hold the token's secret", table, n)
		}
	}
	if n := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)+" WHERE position(path, ?) > 0", audit.Redacted); n != 1 {
		t.Fatalf("the path was not redacted: %d", n)
	}
}

func TestPseudonymizedAddresses(t *testing.T) {
	s := testStore(t, 13)
	paths := geotest.MustBuild(t)
	res, err := geo.Open(geo.Config{CityDB: paths.City})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	key := []byte("an IP pseudonymization key of 32+ bytes")
	p, err := audit.NewIPPolicy(key, res)
	if err != nil {
		t.Fatal(err)
	}
	o := WriterOptions{IP: p}
	// Paris, then New York.
	write(t, s, o, session("dave", sid(6), base, 2, events.SessionExpired, "192.0.2.130", "198.51.100.7")...)
	if n := scalar[uint64](t, s, "SELECT count() FROM "+s.table(TableSessionEvents)+" WHERE ip != toIPv6('::') OR ip_hash = ''"); n != 0 {
		t.Fatalf("%d rows keep an address", n)
	}
	h, err := s.UserHistory(ctxT(t), "dave", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ses := h.Sessions[0]
	if ses.StartPlace != (audit.Place{Country: "FR", City: "Paris"}) || !strings.HasPrefix(ses.StartIP, audit.PseudonymPrefix) || len(ses.Addresses) != 2 {
		t.Fatalf("session %+v", ses)
	}
	if ses.Addresses[1].Place.City != "New York" || ses.Addresses[0].IP == ses.Addresses[1].IP || ses.Addresses[0].IP != p.Pseudonym("192.0.2.130") {
		t.Fatalf("addresses %+v", ses.Addresses)
	}

	// An alert's addresses, in columns, evidence and summary.
	ab := s.NewAlertBatch(o)
	alert := events.Alert{ID: "t1", Time: base, Rule: "impossible-travel", Severity: "high", UserID: "dave", Action: "reauth", Mode: "enforce",
		Summary: "dave at 192.0.2.130 (Paris) then 198.51.100.7 (New York)", IP: "198.51.100.7",
		Evidence: events.Evidence{Events: []events.EventRef{{ID: "e1", IP: "192.0.2.130", City: "Paris"}, {ID: "e2", IP: "198.51.100.7"}}, IPs: []string{"192.0.2.130"}}}
	if err := ab.AddAlert(alert, "detector"); err != nil {
		t.Fatal(err)
	}
	if err := ab.Write(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	var summary, evidence string
	if err := s.conn.QueryRow(ctxT(t), "SELECT summary, evidence FROM "+s.table(TableAlerts)).Scan(&summary, &evidence); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{summary, evidence} {
		if strings.Contains(text, "192.0.2") || strings.Contains(text, "198.51") {
			t.Fatalf("an address survived: %s", text)
		}
	}
	if !strings.Contains(summary, p.Pseudonym("192.0.2.130")+" (Paris)") || !strings.Contains(evidence, `"city":"Paris"`) {
		t.Fatalf("summary %q evidence %s", summary, evidence)
	}
	// Events read back have no address (the log cannot give it back).
	err = s.Events(ctxT(t), time.Time{}, time.Time{}, func(e events.Event) error {
		if e.Data.IP != "" {
			return fmt.Errorf("address %s", e.Data.IP)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
