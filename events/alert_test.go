package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

func sampleAlert() events.Alert {
	return events.Alert{
		ID: events.AlertID("impossible-travel", "alice", "ev1"), Time: time.Date(2026, 11, 22, 10, 1, 0, 0, time.UTC),
		Rule: "impossible-travel", RuleType: "impossible_travel", RuleVersion: "abc", Severity: "high",
		UserID: "alice", SessionIDs: []string{"07AAAAAAAAAAAAAAAAAAAAAA"}, Action: "reauth", Target: "07AAAAAAAAAAAAAAAAAAAAAA",
		Mode: "enforce", ActionResult: "pending", Summary: "London then Sydney",
		Evidence: events.Evidence{DistanceKm: 16990, SpeedKmh: 1e6, Events: []events.EventRef{{ID: "ev0", Type: events.SessionCreated}}},
	}
}

func sampleAction() events.Action {
	return events.Action{
		ID: "act1", Time: time.Date(2026, 11, 22, 10, 1, 1, 0, time.UTC), Kind: events.KindEnforcement, Actor: "detector",
		Action: "reauth", AlertID: "a1", Rule: "impossible-travel", UserID: "alice", SessionID: "07AAAAAAAAAAAAAAAAAAAAAA",
		Result: events.ResultDone, Attempts: 1,
	}
}

func TestAlertRoundTrip(t *testing.T) {
	a := sampleAlert()
	b, err := events.EncodeAlert(a, "detector")
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	_ = json.Unmarshal(b, &env)
	if env["type"] != events.AlertRaised || env["dataschema"] != events.AlertSchema || env["id"] != a.ID || env["subject"] != "alice" {
		t.Fatalf("envelope %v", env)
	}
	got, err := events.DecodeAlert(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.Evidence.SpeedKmh != a.Evidence.SpeedKmh || !got.Time.Equal(a.Time) || got.Target != a.Target {
		t.Fatalf("round trip: %+v", got)
	}
	if s, want := events.AlertSubject(a), fmt.Sprintf("alerts.%02d.impossible-travel", events.PartitionOf("alice")); s != want {
		t.Fatalf("subject %s, want %s", s, want)
	}
	a.UserID, a.IP = "", "198.51.100.7"
	if s, want := events.AlertSubject(a), fmt.Sprintf("alerts.%02d.impossible-travel", events.PartitionOf("198.51.100.7")); s != want {
		t.Fatalf("IP alert subject %s, want %s", s, want)
	}
}

func TestActionRoundTrip(t *testing.T) {
	a := sampleAction()
	b, err := events.EncodeAction(a, "detector")
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeAction(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != a {
		t.Fatalf("round trip: %+v != %+v", got, a)
	}
	if _, err := events.DecodeAlert(b); err == nil {
		t.Fatal("an action decoded as an alert")
	}
}

func TestAlertAndActionDecodeErrorsNameTheField(t *testing.T) {
	edit := func(b []byte, f func(m, data map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		f(m, m["data"].(map[string]any))
		out, _ := json.Marshal(m)
		return out
	}
	alert, _ := events.EncodeAlert(sampleAlert(), "detector")
	action, _ := events.EncodeAction(sampleAction(), "detector")
	cases := []struct {
		name  string
		in    []byte
		field string
		dec   func([]byte) error
	}{
		{"alert spec", edit(alert, func(m, _ map[string]any) { m["specversion"] = "0.3" }), "specversion", decAlert},
		{"alert type", edit(alert, func(m, _ map[string]any) { m["type"] = "session.created" }), "type", decAlert},
		{"alert schema", edit(alert, func(m, _ map[string]any) { m["dataschema"] = "x" }), "dataschema", decAlert},
		{"alert data", edit(alert, func(m, _ map[string]any) { delete(m, "data") }), "data", decAlert},
		{"alert rule", edit(alert, func(_, d map[string]any) { delete(d, "rule") }), "data.rule", decAlert},
		{"alert severity type", edit(alert, func(_, d map[string]any) { d["severity"] = 3 }), "data.severity", decAlert},
		{"alert no subject", edit(alert, func(_, d map[string]any) { delete(d, "user_id") }), "data.user_id", decAlert},
		{"alert evidence", edit(alert, func(_, d map[string]any) { d["evidence"] = "x" }), "data.evidence", decAlert},
		{"action kind", edit(action, func(_, d map[string]any) { d["kind"] = "magic" }), "data.kind", decAction},
		{"action actor", edit(action, func(_, d map[string]any) { delete(d, "actor") }), "data.actor", decAction},
		{"action result", edit(action, func(_, d map[string]any) { delete(d, "result") }), "data.result", decAction},
		{"action attempts", edit(action, func(_, d map[string]any) { d["attempts"] = "two" }), "data.attempts", decAction},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.dec(c.in)
			var de *events.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a DecodeError", err)
			}
			if de.Field != c.field {
				t.Fatalf("field = %q, want %q (%v)", de.Field, c.field, err)
			}
		})
	}
}

func decAlert(b []byte) error  { _, err := events.DecodeAlert(b); return err }
func decAction(b []byte) error { _, err := events.DecodeAction(b); return err }

func FuzzDecodeAlert(f *testing.F) {
	b, _ := events.EncodeAlert(sampleAlert(), "detector")
	f.Add(b)
	f.Add([]byte(`{"specversion":"1.0","data":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := events.DecodeAlert(b)
		if err != nil {
			return
		}
		out, err := events.EncodeAlert(a, "fuzz")
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := events.DecodeAlert(out); err != nil {
			t.Fatalf("a decoded alert does not decode again: %v", err)
		}
	})
}

func FuzzDecodeAction(f *testing.F) {
	b, _ := events.EncodeAction(sampleAction(), "detector")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := events.DecodeAction(b)
		if err != nil {
			return
		}
		out, err := events.EncodeAction(a, "fuzz")
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := events.DecodeAction(out); err != nil {
			t.Fatalf("a decoded action does not decode again: %v", err)
		}
	})
}
