package detector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/rules"
)

func TestCounterWindow(t *testing.T) {
	var c counter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		if n := c.add(t0.Add(time.Duration(i)*10*time.Millisecond), 10*time.Second); n != i+1 {
			t.Fatalf("count %d after %d events", n, i+1)
		}
	}
	// A whole window later the old events no longer count.
	if n := c.add(t0.Add(11*time.Second), 10*time.Second); n != 1 {
		t.Fatalf("count %d after the window moved on", n)
	}
	// An event older than the window is not counted.
	if n := c.add(t0, 10*time.Second); n != 1 {
		t.Fatalf("count %d after a stale event", n)
	}
}

// fixedResolver places the addresses it lists, for tests without a database.
type fixedResolver map[string]geo.Location

func (f fixedResolver) Lookup(ip netip.Addr) geo.Location { return f[ip.String()] }

func ev(id string, typ events.Type, user, sid, ip string, t time.Time) events.Event {
	return events.Event{ID: id, Type: typ, Source: "t", Time: t, Data: events.Data{UserID: user, SessionID: sid, IP: ip, UserAgent: "ua"}}
}

// Two events at the same instant from far apart (clock skew between app
// servers) are compared over one second, not divided by zero.
func TestTravelSameInstant(t *testing.T) {
	res := fixedResolver{
		"192.0.2.1":    {Known: true, Country: "GB", Lat: 51.5, Lon: -0.12, AccuracyKm: 10},
		"198.51.100.1": {Known: true, Country: "AU", Lat: -33.87, Lon: 151.2, AccuracyKm: 10},
	}
	e := New(rules.Default(), res)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.Process(ev("1", events.SessionCreated, "u", "01AAAAAAAAAAAAAAAAAAAAAA", "192.0.2.1", t0))
	alerts := e.Process(ev("2", events.SessionCreated, "u", "01BBBBBBBBBBBBBBBBBBBBBB", "198.51.100.1", t0))
	var travel []events.Alert
	for _, a := range alerts {
		if a.RuleType == string(rules.ImpossibleTravel) {
			travel = append(travel, a)
		}
	}
	if len(travel) != 1 || travel[0].Evidence.ElapsedSeconds != 1 {
		t.Fatalf("alerts %+v", alerts)
	}
}

// State of idle users, sessions and IPs is dropped: memory follows
// activity.
func TestStateIsBounded(t *testing.T) {
	e := New(rules.Default(), geo.None{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		id := string(rune('a'+i%26)) + time.Duration(i).String()
		e.Process(ev(id, events.SessionAccessed, "user"+id, "01"+id, "192.0.2.1", t0))
	}
	if _, s, _ := e.Size(); s != 1000 {
		t.Fatalf("%d sessions", s)
	}
	// Ending events drop sessions at once.
	e.Process(ev("end", events.SessionTerminated, "usera0s", "01a0s", "", t0))
	if _, s, _ := e.Size(); s != 999 {
		t.Fatalf("%d sessions after an ending event", s)
	}
	// Much later, activity of one user sweeps the rest out.
	e.Process(ev("late", events.SessionAccessed, "late", "01late", "192.0.2.9", t0.Add(31*24*time.Hour)))
	if u, s, ip := e.Size(); u != 1 || s != 1 || ip != 1 {
		t.Fatalf("state after a month: %d users, %d sessions, %d IPs", u, s, ip)
	}
}

// A reload swaps the rules and keeps the windows.
func TestReloadKeepsState(t *testing.T) {
	set, err := rules.Parse("r.yaml", []byte("rules:\n  - {name: bf, type: brute_force, threshold: 3, window: 5m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := New(set, geo.None{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.Process(ev("1", events.AuthLoginFailed, "u", "", "192.0.2.1", t0))
	e.Process(ev("2", events.AuthLoginFailed, "u", "", "192.0.2.1", t0.Add(time.Second)))
	set2, _ := rules.Parse("r.yaml", []byte("rules:\n  - {name: bf, type: brute_force, threshold: 3, window: 5m, severity: critical}\n"))
	e.SetRules(set2)
	alerts := e.Process(ev("3", events.AuthLoginFailed, "u", "", "192.0.2.1", t0.Add(2*time.Second)))
	if len(alerts) != 1 || alerts[0].Severity != "critical" || alerts[0].RuleVersion != set2.Rules[0].Version {
		t.Fatalf("alerts %+v", alerts)
	}
}

// Sessions keep pointers to their user's and address's state to save map
// lookups; when gc drops that state, the next access must put fresh state
// back in the engine, not update the dropped one.
func TestDroppedStateComesBack(t *testing.T) {
	set, err := rules.Parse("r.yaml", []byte("rules:\n  - name: ipb\n    type: request_burst\n    scope: ip\n    threshold: 2\n    window: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := New(set, nil)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sid := "01AAAAAAAAAAAAAAAAAAAAAA"
	e.Process(ev("1", events.SessionAccessed, "u", sid, "192.0.2.1", t0))
	// Two hours later another user's event runs gc: u and the address are
	// dropped (kept 1h), the session is kept (9h).
	e.Process(ev("2", events.SessionAccessed, "v", "02BBBBBBBBBBBBBBBBBBBBBB", "192.0.2.9", t0.Add(2*time.Hour)))
	if users, sessions, ips := e.Size(); users != 1 || sessions != 2 || ips != 1 {
		t.Fatalf("after gc: %d users, %d sessions, %d ips", users, sessions, ips)
	}
	e.Process(ev("3", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(2*time.Hour+time.Second)))
	if users, _, ips := e.Size(); users != 2 || ips != 2 {
		t.Fatalf("the dropped state did not come back: %d users, %d ips", users, ips)
	}
	// And it counts from scratch: two more accesses from the address fire.
	e.Process(ev("4", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(2*time.Hour+2*time.Second)))
	if a := e.Process(ev("5", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(2*time.Hour+3*time.Second))); len(a) != 1 || a[0].Evidence.Count != 3 {
		t.Fatalf("alerts %+v", a)
	}
}

func TestEvaluations(t *testing.T) {
	e := New(rules.Default(), nil)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.Process(ev("1", events.SessionCreated, "u", "01AAAAAAAAAAAAAAAAAAAAAA", "192.0.2.1", t0))
	e.Process(ev("2", events.SessionAccessed, "u", "01AAAAAAAAAAAAAAAAAAAAAA", "192.0.2.1", t0))
	e.Process(ev("3", events.AuthLoginFailed, "u", "", "192.0.2.1", t0))
	e.Process(ev("4", events.SessionTerminated, "u", "01AAAAAAAAAAAAAAAAAAAAAA", "", t0))
	got := e.Evaluations()
	want := map[string]uint64{"impossible-travel": 2, "new-country": 2, "shared-session": 2, "session-burst": 1, "ip-burst": 1,
		"brute-force": 1, "credential-stuffing": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d evaluations, want %d", k, got[k], v)
		}
	}
}
