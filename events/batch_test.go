package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sessionmon/sessionmon/events"
)

func run(n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = sample()
		evs[i].ID = fmt.Sprintf("e%04d", i)
	}
	return evs
}

func TestBatchRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 300} {
		evs := run(n)
		msg, err := events.EncodeBatch(nil, evs)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && msg[0] != '{' || n > 1 && msg[0] != '[' {
			t.Fatalf("%d events encode as %.10s…", n, msg)
		}
		got, err := events.DecodeMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("%d events came back, want %d", len(got), n)
		}
		for i := range got {
			if got[i].ID != evs[i].ID || got[i].Data != evs[i].Data || !got[i].Time.Equal(evs[i].Time) {
				t.Fatalf("event %d: %+v, want %+v", i, got[i], evs[i])
			}
		}
		// A batch is a CloudEvents JSON batch: an array of structured events.
		if n > 1 {
			var arr []map[string]any
			if err := json.Unmarshal(msg, &arr); err != nil || len(arr) != n || arr[0]["specversion"] != "1.0" {
				t.Fatalf("not a JSON array of %d CloudEvents: %v", n, err)
			}
		}
	}
}

// A bad element of a batch is an error of its own: Split hands the
// elements out one by one, so a consumer keeps the good ones.
func TestSplitKeepsElementsApart(t *testing.T) {
	good, _ := sample().Encode()
	msg := []byte(" [" + string(good) + ` , {"specversion":"1.0"}, 7 ]`)
	parts, err := events.Split(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	if _, err := events.Decode(parts[0]); err != nil {
		t.Errorf("first element: %v", err)
	}
	for _, p := range parts[1:] {
		if _, err := events.Decode(p); err == nil {
			t.Errorf("element %s decoded", p)
		}
	}
	if _, err := events.DecodeMessage(msg); err == nil || !strings.Contains(err.Error(), "batch element 1") {
		t.Errorf("DecodeMessage: %v, want the bad element named", err)
	}
}

func TestSplitErrors(t *testing.T) {
	many := "[" + strings.Repeat("{},", events.MaxBatchEvents) + "{}]"
	for _, c := range []struct{ in, want string }{
		{`[`, "batch:"},
		{`[]`, "batch: empty"},
		{`[{}] x`, "data after the array"},
		{`[{},]`, "batch:"},
		{many, fmt.Sprintf("more than %d", events.MaxBatchEvents)},
	} {
		_, err := events.Split([]byte(c.in))
		var de *events.DecodeError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Split(%.20q): %v, want a DecodeError with %q", c.in, err, c.want)
		}
	}
	// Anything not an array is one event, for Decode to judge.
	for _, in := range []string{`{}`, `x`, ``} {
		parts, err := events.Split([]byte(in))
		if err != nil || len(parts) != 1 || string(parts[0]) != in {
			t.Errorf("Split(%q) = %q, %v", in, parts, err)
		}
	}
}

// FuzzSplit: Split never panics, its errors are DecodeErrors, and the
// events of whatever decodes encode back to a message that decodes to the
// same events.
func FuzzSplit(f *testing.F) {
	two, _ := events.EncodeBatch(nil, run(2))
	one, _ := events.EncodeBatch(nil, run(1))
	f.Add(two)
	f.Add(one)
	f.Add([]byte(`[{"a":1}, null]`))
	f.Add([]byte(`[[]]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		parts, err := events.Split(in)
		if err != nil {
			var de *events.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if len(parts) == 0 || len(parts) > events.MaxBatchEvents {
			t.Fatalf("%d parts", len(parts))
		}
		evs, err := events.DecodeMessage(in)
		if err != nil {
			return
		}
		out, err := events.EncodeBatch(nil, evs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := events.DecodeMessage(out)
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-encoded message: %d events, %v", len(again), err)
		}
		for i := range evs {
			if again[i].ID != evs[i].ID || again[i].Data != evs[i].Data || !again[i].Time.Equal(evs[i].Time) {
				t.Fatalf("event %d changed in the round trip", i)
			}
		}
	})
}
