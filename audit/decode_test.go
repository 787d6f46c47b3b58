package audit

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

func sampleEvents() []events.Event {
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	var out []events.Event
	for i, t := range events.Types {
		e := events.Event{ID: events.NewID(), Type: t, Source: "sessionsvc", Time: at.Add(time.Duration(i) * time.Second), Data: events.Data{
			SessionID: "07AbCdEfGhIjKlMnOpQrStUv", UserID: "alice", App: "shop", IP: "203.0.113.7",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", Actor: "shop",
		}}
		switch {
		case t.Ending():
			e.Data.Reason = "logout"
		case t == events.SessionAccessed:
			e.Data.Path = "/account/orders"
		case t == events.SessionCreated:
			e.Data.PreviousSessionID = "07ZzCdEfGhIjKlMnOpQrStUv"
		case t == events.AuthLoginFailed || t == events.AuthLoginSucceeded:
			e.Data.SessionID = ""
			e.Data.IP = "2001:db8::7"
		case t == events.SessionRevoked:
			e.Data.Rule = "shared-session"
		}
		out = append(out, e)
	}
	return out
}

func TestDecodeEventFastPath(t *testing.T) {
	for _, e := range sampleEvents() {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeFast(b)
		if !ok {
			t.Fatalf("%s: the canonical encoding took the slow path: %s", e.Type, b)
		}
		want, err := events.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n fast %+v\n slow %+v", e.Type, got, want)
		}
	}
}

// decodeCases are inputs on and off the fast path, used as fuzz seeds.
func decodeCases(t testing.TB) [][]byte {
	var out [][]byte
	for _, e := range sampleEvents() {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	base := string(out[0])
	variants := []string{
		strings.ReplaceAll(base, `":`, `" : `),
		" \n" + base + "\t\r\n",
		strings.Replace(base, `"id":`, `"ID":`, 1),
		strings.Replace(base, `"id":`, `"Id":"x","id":`, 1),
		strings.Replace(base, `"id":`, `"id":"first","id":`, 1),
		strings.Replace(base, `"source":"sessionsvc"`, `"source":"sess\u0069onsvc"`, 1),
		strings.Replace(base, `"source":"sessionsvc"`, `"source":null`, 1),
		strings.Replace(base, `"source":"sessionsvc"`, `"source":"é"`, 1),
		strings.Replace(base, `"source":"sessionsvc"`, "\"source\":\"\xff\"", 1),
		strings.Replace(base, `"specversion":"1.0",`, `"specversion":"1.0","ext":{"a":[1,2]},`, 1),
		strings.Replace(base, `"specversion":"1.0",`, `"specversion":"1.0","ſpecversion":"2",`, 1),
		strings.Replace(base, `"user_id":"alice"`, `"user_id":"alice","extra":"x"`, 1),
		strings.Replace(base, `"user_id":"alice"`, `"user_id":"alice","User_ID":"bob"`, 1),
		strings.Replace(base, `"user_id":"alice"`, `"user_id":"alice","n":1`, 1),
		strings.Replace(base, `"user_id":"alice"`, `"user_id":""`, 1),
		strings.Replace(base, `"ip":"203.0.113.7"`, `"ip":"not-an-ip"`, 1),
		strings.Replace(base, `"type":"session.created"`, `"type":"session.nope"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22T10:00:00+01:00"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22 10:00:00Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"0001-01-01T00:00:00Z"`, 1),
		strings.Replace(base, `"dataschema":"urn:sessionmon:events:v1"`, `"dataschema":"urn:x"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22T1:00:00Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22T10:00:00,5Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-02-29T10:00:00Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2028-02-29T23:59:59.1Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22T10:00:00.1234567891Z"`, 1),
		strings.Replace(base, `"time":"2026-11-22T10:00:00.123456789Z"`, `"time":"2026-11-22T10:00:60Z"`, 1),
		base[:len(base)-1],
		base + "x",
		base + "{}",
		`{}`, `[]`, `null`, ``, `{"data":null}`, `{"data":{}}`,
	}
	for _, v := range variants {
		out = append(out, []byte(v))
	}
	return out
}

func TestDecodeEventMatchesDecode(t *testing.T) {
	for _, b := range decodeCases(t) {
		checkSameDecode(t, b)
	}
}

func checkSameDecode(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := events.Decode(b)
	got, gotErr := DecodeEvent(b)
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("input %q:\n DecodeEvent error %v\n events.Decode error %v", b, gotErr, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %q:\n DecodeEvent %+v\n events.Decode %+v", b, got, want)
	}
	// The fast path never accepts what events.Decode refuses.
	if _, ok := decodeFast(b); ok && wantErr != nil {
		t.Fatalf("input %q: fast path accepted what events.Decode refuses (%v)", b, wantErr)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, b := range decodeCases(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSameDecode(t, b)
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	data, _ := sampleEvents()[1].Encode()
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("events.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := events.Decode(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
