package auditfile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/auditfile"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// A token as the session service issues them: session ID, dot, secret.
const token = "07AbCdEfGhIjKlMnOpQrStUv.abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_x"

func open(t *testing.T, dir string, o auditfile.Options) *auditfile.Store {
	t.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return t0 }
	}
	s, err := auditfile.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func event(i int, typ events.Type, user, ip string) []byte {
	e := events.Event{ID: fmt.Sprintf("ev-%03d", i), Type: typ, Source: "sessionsvc", Time: t0.Add(time.Duration(i) * time.Second),
		Data: events.Data{UserID: user, SessionID: "s-" + user, IP: ip, UserAgent: "Firefox " + token, Reason: "logout"}}
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

func alert(i int, user, ip string) []byte {
	a := events.Alert{ID: fmt.Sprintf("al-%03d", i), Time: t0.Add(time.Duration(i) * time.Second), Rule: "impossible_travel",
		RuleType: "impossible_travel", RuleVersion: "v1", Severity: "high", UserID: user, SessionIDs: []string{"s-a", "s-b"}, IP: ip,
		Action: "reauth", Mode: "enforce", ActionResult: "done", Summary: "from " + ip + " to 198.51.100.130",
		Evidence: events.Evidence{IPs: []string{ip, "198.51.100.130"}}}
	b, err := events.EncodeAlert(a, "detector")
	if err != nil {
		panic(err)
	}
	return b
}

func action(i int, user string) []byte {
	a := events.Action{ID: fmt.Sprintf("ac-%03d", i), Time: t0.Add(time.Duration(i) * time.Second), Kind: "review",
		Actor: "alice", Action: "resolve", AlertID: "al-001", UserID: user, Result: "done", Note: "called the user"}
	b, err := events.EncodeAction(a, "alerter")
	if err != nil {
		panic(err)
	}
	return b
}

func write(t *testing.T, b *auditfile.Batch, msgs ...[2]string) {
	t.Helper()
	for _, m := range msgs {
		if err := b.Add(m[0], []byte(m[1])); err != nil {
			t.Fatalf("add %s: %v", m[0], err)
		}
	}
	if err := b.Write(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Reset()
}

func timeline(t *testing.T, s *auditfile.Store, user string) []audit.Entry {
	t.Helper()
	es, err := s.UserTimeline(context.Background(), user, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestTimeline(t *testing.T) {
	s := open(t, t.TempDir(), auditfile.Options{})
	write(t, s.NewEventBatch(),
		[2]string{"sessions.p0.session.created", string(event(1, events.SessionCreated, "u1", "192.0.2.10"))},
		[2]string{"sessions.p0.session.accessed", string(event(2, events.SessionAccessed, "u1", "192.0.2.10"))},
		[2]string{"sessions.p1.session.created", string(event(3, events.SessionCreated, "u2", "192.0.2.11"))},
		[2]string{"sessions.p0.session.terminated", string(event(5, events.SessionTerminated, "u1", ""))},
	)
	write(t, s.NewAlertBatch(),
		[2]string{"alerts.high.impossible_travel", string(alert(4, "u1", "192.0.2.10"))},
		[2]string{"actions.review.resolve", string(action(6, "u1"))},
	)
	got := timeline(t, s, "u1")
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, e.Kind+":"+e.ID)
	}
	want := "action:ac-006 event:ev-005 alert:al-004 event:ev-002 event:ev-001"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("timeline %v, want newest first %s", kinds, want)
	}
	if a := got[2]; a.Type != "impossible_travel" || a.SessionID != "s-a,s-b" || a.IP != "192.0.2.10" ||
		a.Detail != "high: from 192.0.2.10 to 198.51.100.130" {
		t.Errorf("alert entry %+v", a)
	}
	if a := got[0]; a.Type != "resolve" || a.Detail != "done by alice: called the user" {
		t.Errorf("action entry %+v", a)
	}
	if e := got[4]; e.Type != "session.created" || e.IP != "192.0.2.10" || e.SessionID != "s-u1" || e.Detail != "logout" {
		t.Errorf("event entry %+v", e)
	}
	for _, e := range got {
		if strings.Contains(fmt.Sprint(e), token[25:]) {
			t.Errorf("a token's secret in the audit log: %+v", e)
		}
	}
	// Range and limit.
	es, _ := s.UserTimeline(context.Background(), "u1", t0.Add(2*time.Second), t0.Add(5*time.Second), 0)
	if len(es) != 2 || es[0].ID != "al-004" || es[1].ID != "ev-002" {
		t.Errorf("[2s, 5s): %v", es)
	}
	if es, _ := s.UserTimeline(context.Background(), "u1", time.Time{}, time.Time{}, 2); len(es) != 2 || es[0].ID != "ac-006" {
		t.Errorf("limit 2: %v", es)
	}
	if es := timeline(t, s, "nobody"); es == nil || len(es) != 0 {
		t.Errorf("unknown user: %#v, want an empty list", es)
	}
}

// TestExactlyOnce: a batch written again (a retry, a redelivery after a
// crash, before or after the store reopened) stores nothing twice.
func TestExactlyOnce(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, auditfile.Options{})
	msgs := [][2]string{
		{"sessions.p0.session.created", string(event(1, events.SessionCreated, "u1", "192.0.2.10"))},
		{"sessions.p0.session.accessed", string(event(2, events.SessionAccessed, "u1", "192.0.2.10"))},
	}
	b := s.NewEventBatch()
	write(t, b, msgs...)
	write(t, b, msgs...)
	write(t, b, append(msgs, msgs[0])...) // a duplicate within a batch too
	if n := len(timeline(t, s, "u1")); n != 2 || s.Rows() != 2 {
		t.Fatalf("%d entries, %d rows after three writes of two events", n, s.Rows())
	}
	s.Close()
	s = open(t, dir, auditfile.Options{})
	write(t, s.NewEventBatch(), append(msgs, [2]string{"sessions.p0.session.terminated", string(event(3, events.SessionTerminated, "u1", ""))})...)
	if n := len(timeline(t, s, "u1")); n != 3 {
		t.Fatalf("%d entries after reopening and a redelivery, want 3", n)
	}
	data, err := os.ReadFile(filepath.Join(dir, "audit-2026-11.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 3 {
		t.Fatalf("%d lines in the file, want 3", n)
	}
}

// TestCrashMidWrite: a line a crash left half-written is dropped at open;
// the redelivered batch writes it whole.
func TestCrashMidWrite(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, auditfile.Options{})
	write(t, s.NewEventBatch(), [2]string{"sessions.p0.session.created", string(event(1, events.SessionCreated, "u1", "192.0.2.10"))})
	s.Close()
	path := filepath.Join(dir, "audit-2026-11.jsonl")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"user_id":"u1","time":"2026-11-22T10:00:02Z","kind":"event","id":"ev-0`)
	f.Close()

	s = open(t, dir, auditfile.Options{})
	if n := len(timeline(t, s, "u1")); n != 1 {
		t.Fatalf("%d entries after the crash, want 1", n)
	}
	write(t, s.NewEventBatch(), [2]string{"sessions.p0.session.accessed", string(event(2, events.SessionAccessed, "u1", "192.0.2.10"))})
	s.Close()
	s = open(t, dir, auditfile.Options{})
	if n := len(timeline(t, s, "u1")); n != 2 {
		t.Fatalf("%d entries after the redelivery, want 2", n)
	}
}

func TestOpenRefusesACorruptFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "audit-2026-10.jsonl"), []byte("{\"user_id\":\"u1\"}\nnot json\n"), 0o600)
	_, err := auditfile.Open(dir, auditfile.Options{Now: func() time.Time { return t0 }})
	if err == nil || !strings.Contains(err.Error(), "audit-2026-10.jsonl:2") {
		t.Fatalf("err %v, want one naming the file and line 2", err)
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	line := []byte(`{"user_id":"u1","time":"2025-01-01T00:00:00Z","kind":"event","id":"old","type":"session.created"}` + "\n")
	for _, m := range []string{"2025-09", "2025-11", "2026-11"} {
		os.WriteFile(filepath.Join(dir, "audit-"+m+".jsonl"), bytes.ReplaceAll(line, []byte("old"), []byte(m)), 0o600)
	}
	s := open(t, dir, auditfile.Options{RetentionMonths: 12})
	var ids []string
	for _, e := range timeline(t, s, "u1") {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "2025-11,2026-11" {
		t.Fatalf("kept %v, want the months within 12 of 2026-11", ids)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit-2025-09.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file past the retention is still there: %v", err)
	}
}

func TestPseudonymizedAddresses(t *testing.T) {
	res, err := geo.Open(geo.Config{CityDB: geotest.MustBuild(t).City})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	p, err := audit.NewIPPolicy(bytes.Repeat([]byte("k"), audit.MinIPKeyLen), res)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, t.TempDir(), auditfile.Options{IP: p})
	write(t, s.NewEventBatch(), [2]string{"sessions.p0.session.created", string(event(1, events.SessionCreated, "u1", "192.0.2.10"))})
	write(t, s.NewAlertBatch(), [2]string{"alerts.high.impossible_travel", string(alert(2, "u1", "192.0.2.10"))})
	for _, e := range timeline(t, s, "u1") {
		if strings.Contains(e.IP+e.Detail, "192.0.2.10") || strings.Contains(e.Detail, "198.51.100.130") {
			t.Errorf("an address in clear: %+v", e)
		}
		if !strings.HasPrefix(e.IP, audit.PseudonymPrefix) {
			t.Errorf("IP %q, want a pseudonym", e.IP)
		}
		if e.Kind == audit.KindEvent && (e.Country != "GB" || e.City != "London") {
			t.Errorf("place %s/%s, want London, GB kept", e.Country, e.City)
		}
	}
}

func TestRejections(t *testing.T) {
	s := open(t, t.TempDir(), auditfile.Options{})
	cases := []struct {
		alerts        bool
		subject, data string
		reason        string
	}{
		{false, "sessions.p0.session.created", "{", "malformed"},
		{false, "sessions.p0.session.created", string(bytes.Replace(event(1, events.SessionCreated, "u1", "192.0.2.10"), []byte("192.0.2.10"), []byte("192.0.2.999"), 1)), "bad_data_ip"},
		{true, "alerts.high.x", `{"specversion":"1.0"}`, ""},
		{true, "other.x", string(action(1, "u1")), "unknown_subject"},
	}
	for _, c := range cases {
		b := s.NewEventBatch()
		if c.alerts {
			b = s.NewAlertBatch()
		}
		err := b.Add(c.subject, []byte(c.data))
		var r *audit.Rejection
		if !errors.As(err, &r) {
			t.Errorf("%s %.40q: err %v, want a rejection", c.subject, c.data, err)
			continue
		}
		if c.reason != "" && r.Reason != c.reason {
			t.Errorf("%s %.40q: reason %q, want %q", c.subject, c.data, r.Reason, c.reason)
		}
		if b.Len() != 0 {
			t.Errorf("a rejected message was staged")
		}
	}
}

func FuzzBatchAdd(f *testing.F) {
	f.Add(false, "sessions.p0.session.created", event(1, events.SessionCreated, "u1", "192.0.2.10"))
	f.Add(true, "alerts.high.impossible_travel", alert(1, "u1", "192.0.2.10"))
	f.Add(true, "actions.review.resolve", action(1, "u1"))
	s, err := auditfile.Open(f.TempDir(), auditfile.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, alerts bool, subject string, data []byte) {
		b := s.NewEventBatch()
		if alerts {
			b = s.NewAlertBatch()
		}
		if err := b.Add(subject, data); err != nil {
			var r *audit.Rejection
			if !errors.As(err, &r) || r.Reason == "" {
				t.Fatalf("error %v is not a rejection with a reason", err)
			}
			return
		}
		if b.Len() != 1 {
			t.Fatalf("accepted, %d staged", b.Len())
		}
		if err := b.Write(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRejectsTimesOutOfRange(t *testing.T) {
	s := open(t, t.TempDir(), auditfile.Options{})
	// Year 0 an hour east of UTC is year -1 in UTC: no JSON time holds it.
	data := bytes.Replace(event(1, events.SessionCreated, "u1", "192.0.2.10"), []byte(`"time":"2026-11-22T10:00:01Z"`), []byte(`"time":"0000-01-01T00:00:00+01:00"`), 1)
	var r *audit.Rejection
	if err := s.NewEventBatch().Add("sessions.p0.session.created", data); !errors.As(err, &r) || r.Reason != "time_out_of_range" {
		t.Fatalf("err %v, want time_out_of_range", err)
	}
}
