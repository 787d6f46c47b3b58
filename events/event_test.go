package events_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

func sample() events.Event {
	return events.Event{
		ID: "0123abcd", Type: events.SessionAccessed, Source: "sessionsvc",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC),
		Data: events.Data{SessionID: "07AAAAAAAAAAAAAAAAAAAAAA", UserID: "alice", App: "shop",
			IP: "203.0.113.7", UserAgent: "Firefox", Path: "/cart", Actor: "shop"},
	}
}

func TestCloudEventsEnvelope(t *testing.T) {
	b, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion": "1.0", "id": "0123abcd", "source": "sessionsvc", "type": "session.accessed",
		"time": "2026-11-22T10:00:00.123Z", "subject": "07AAAAAAAAAAAAAAAAAAAAAA",
		"datacontenttype": "application/json", "dataschema": events.DataSchema,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	data := m["data"].(map[string]any)
	if data["user_id"] != "alice" || data["ip"] != "203.0.113.7" || data["path"] != "/cart" {
		t.Errorf("data %v", data)
	}
}

func TestRoundTrip(t *testing.T) {
	e := sample()
	b, _ := json.Marshal(e)
	got, err := events.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(e.Time) || got.ID != e.ID || got.Type != e.Type || got.Data != e.Data {
		t.Fatalf("round trip: %+v != %+v", got, e)
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	valid := func(edit func(m map[string]any)) string {
		b, _ := json.Marshal(sample())
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		edit(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	data := func(m map[string]any) map[string]any { return m["data"].(map[string]any) }
	cases := []struct{ in, field string }{
		{`{`, ""},
		{`[]`, ""},
		{valid(func(m map[string]any) { m["specversion"] = "0.3" }), "specversion"},
		{valid(func(m map[string]any) { delete(m, "id") }), "id"},
		{valid(func(m map[string]any) { delete(m, "source") }), "source"},
		{valid(func(m map[string]any) { m["type"] = "session.teleported" }), "type"},
		{valid(func(m map[string]any) { delete(m, "time") }), "time"},
		{valid(func(m map[string]any) { m["dataschema"] = "urn:other" }), "dataschema"},
		{valid(func(m map[string]any) { delete(m, "data") }), "data"},
		{valid(func(m map[string]any) { data(m)["user_id"] = 42 }), "data.user_id"},
		{valid(func(m map[string]any) { delete(data(m), "user_id") }), "data.user_id"},
		{valid(func(m map[string]any) { data(m)["ip"] = "300.1.1.1" }), "data.ip"},
		{valid(func(m map[string]any) { delete(data(m), "session_id") }), "data.session_id"},
		{`{"specversion":"1.0","id":"x","source":"s","type":"auth.login_failed","time":"2026-01-01T00:00:00Z","dataschema":"` + events.DataSchema + `","data":{"user_id":"u","ip":"::1"}}`, "-"},
		{strings.Repeat(" ", events.MaxSize+1), ""},
	}
	for _, c := range cases {
		_, err := events.Decode([]byte(c.in))
		if c.field == "-" {
			if err != nil {
				t.Errorf("auth event without session: %v", err)
			}
			continue
		}
		var de *events.DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%.60s: got %v, want a DecodeError", c.in, err)
			continue
		}
		if de.Field != c.field {
			t.Errorf("%.60s: field %q, want %q (%v)", c.in, de.Field, c.field, err)
		}
	}
}

func TestPartitionsAndSubjects(t *testing.T) {
	seen := map[int]int{}
	for i := range 10000 {
		p := events.PartitionOf("user-" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + string(rune(i)))
		if p < 0 || p >= events.Partitions {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p]++
	}
	if len(seen) != events.Partitions {
		t.Fatalf("users spread over %d of %d partitions", len(seen), events.Partitions)
	}
	if got := events.PartitionOf("alice"); got != events.PartitionOf("alice") {
		t.Fatal("partition not stable")
	}
	s := events.Subject(7, events.SessionRevoked)
	if s != "sessions.07.session.revoked" {
		t.Fatalf("subject %q", s)
	}
	p, typ, err := events.ParseSubject(s)
	if err != nil || p != 7 || typ != events.SessionRevoked {
		t.Fatalf("parse %q: %d %s %v", s, p, typ, err)
	}
	if events.PartitionFilter(7) != "sessions.07.>" {
		t.Fatal(events.PartitionFilter(7))
	}
	for _, bad := range []string{"alerts.07.x", "sessions.7.session.created", "sessions.16.session.created", "sessions.07.session.nope", "sessions.0a.session.created"} {
		if _, _, err := events.ParseSubject(bad); err == nil {
			t.Errorf("ParseSubject(%q) accepted", bad)
		}
	}
}

func TestEndingTypes(t *testing.T) {
	var ending []events.Type
	for _, ty := range events.Types {
		if ty.Ending() {
			ending = append(ending, ty)
		}
	}
	if len(ending) != 5 {
		t.Fatalf("ending types %v", ending)
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes to
// an event that decodes to the same thing.
func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(sample())
	f.Add(b)
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"auth.login_failed","time":"2026-01-01T00:00:00Z","dataschema":"urn:sessionmon:events:v1","data":{"user_id":"u"}}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := events.Decode(in)
		// DecodeShared decodes the same, errors included.
		shared, serr := events.DecodeShared(slices.Clone(in))
		if (err == nil) != (serr == nil) || err != nil && err.Error() != serr.Error() {
			t.Fatalf("Decode: %v; DecodeShared: %v", err, serr)
		}
		if err == nil && (shared.ID != e.ID || shared.Type != e.Type || shared.Source != e.Source || shared.Data != e.Data || !shared.Time.Equal(e.Time)) {
			t.Fatalf("DecodeShared: %+v, Decode: %+v", shared, e)
		}
		if err != nil {
			var de *events.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		again, err := events.Decode(out)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%s", err, out)
		}
		if again.ID != e.ID || again.Type != e.Type || again.Data != e.Data || !again.Time.Equal(e.Time) {
			t.Fatalf("round trip changed the event")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	e := sample()
	e.Data.UserAgent = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
	buf, _ := e.Encode()
	for _, f := range []struct {
		name   string
		decode func([]byte) (events.Event, error)
	}{{"copy", events.Decode}, {"shared", events.DecodeShared}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
