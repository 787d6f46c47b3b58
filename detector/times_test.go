package detector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/rules"
)

// timesGeo places the addresses of the time tests: two far apart, one
// more in a third country.
var timesGeo = fixedResolver{
	"192.0.2.1":    {Known: true, Country: "GB", Lat: 51.5, Lon: -0.12, AccuracyKm: 10},
	"198.51.100.1": {Known: true, Country: "AU", Lat: -33.87, Lon: 151.2, AccuracyKm: 10},
	"203.0.113.1":  {Known: true, Country: "FR", Lat: 48.85, Lon: 2.35, AccuracyKm: 10},
}

// timeCase is a rule and events that make it fire once, at times relative
// to a base time.
type timeCase struct {
	name   string
	rule   string
	events func(t0 time.Time) []events.Event
}

const sid = "01AAAAAAAAAAAAAAAAAAAAAA"

var timeCases = []timeCase{
	{"request_burst session", "{name: r, type: request_burst, scope: session, threshold: 2, window: 1m}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.SessionAccessed, "u", sid, "192.0.2.1", t0),
			ev("2", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(time.Second)),
			ev("3", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(2*time.Second)),
		}
	}},
	{"request_burst ip", "{name: r, type: request_burst, scope: ip, threshold: 2, window: 1m}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.SessionAccessed, "u", sid, "192.0.2.1", t0),
			ev("2", events.SessionAccessed, "v", "02BBBBBBBBBBBBBBBBBBBBBB", "192.0.2.1", t0.Add(time.Second)),
			ev("3", events.SessionAccessed, "w", "03CCCCCCCCCCCCCCCCCCCCCC", "192.0.2.1", t0.Add(2*time.Second)),
		}
	}},
	{"brute_force", "{name: r, type: brute_force, threshold: 3, window: 5m}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.AuthLoginFailed, "u", "", "192.0.2.1", t0),
			ev("2", events.AuthLoginFailed, "u", "", "192.0.2.1", t0.Add(time.Second)),
			ev("3", events.AuthLoginFailed, "u", "", "192.0.2.1", t0.Add(2*time.Second)),
		}
	}},
	{"credential_stuffing", "{name: r, type: credential_stuffing, distinct_users: 3, window: 5m}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.AuthLoginFailed, "u", "", "192.0.2.1", t0),
			ev("2", events.AuthLoginFailed, "v", "", "192.0.2.1", t0.Add(time.Second)),
			ev("3", events.AuthLoginFailed, "w", "", "192.0.2.1", t0.Add(2*time.Second)),
		}
	}},
	{"shared_session", "{name: r, type: shared_session, window: 5m}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.SessionAccessed, "u", sid, "192.0.2.1", t0),
			ev("2", events.SessionAccessed, "u", sid, "198.51.100.1", t0.Add(time.Second)),
			ev("3", events.SessionAccessed, "u", sid, "192.0.2.1", t0.Add(2*time.Second)),
		}
	}},
	{"impossible_travel", "{name: r, type: impossible_travel}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.SessionCreated, "u", sid, "192.0.2.1", t0),
			ev("2", events.SessionAccessed, "u", sid, "198.51.100.1", t0.Add(time.Minute)),
		}
	}},
	{"new_country", "{name: r, type: new_country}", func(t0 time.Time) []events.Event {
		return []events.Event{
			ev("1", events.AuthLoginSucceeded, "u", "", "192.0.2.1", t0),
			ev("2", events.AuthLoginSucceeded, "u", "", "203.0.113.1", t0.Add(time.Hour)),
		}
	}},
}

func ruleSet(t testing.TB, rule string) *rules.Set {
	t.Helper()
	set, err := rules.Parse("r.yaml", []byte("rules:\n  - "+rule+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// oddTimes are event times far from now: before the Unix epoch, around
// it, and past the range of UnixNano (1677 to 2262), down to the zero
// time and up to the end of what RFC 3339 writes.
var oddTimes = []time.Time{
	time.Time{}, // 0001-01-01
	time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
	time.Date(1677, 9, 21, 0, 12, 0, 0, time.UTC),
	time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
	time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC),
	time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), // bucket 0
	time.Date(1999, 12, 31, 23, 59, 0, 0, time.UTC),
	time.Date(2262, 4, 11, 23, 47, 15, 0, time.UTC), // the last time UnixNano holds, within the events' span
	time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
	time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(23*3600+59*60))), // year 10000 in UTC
	time.Unix(math.MaxInt64/2, 0),
	time.Unix(math.MinInt64/2, 0),
}

// Every rule that counts or windows by event time works the same at any
// event time: no panic (counter.add indexed its buckets with a negative
// number before 1970 and after 2262), and the same alerts as today's.
func TestEngineEventTimes(t *testing.T) {
	for _, c := range timeCases {
		set := ruleSet(t, c.rule)
		run := func(t0 time.Time) []events.Alert {
			e := New(set, timesGeo)
			var out []events.Alert
			for _, ev := range c.events(t0) {
				out = append(out, e.Process(ev)...)
			}
			return out
		}
		want := run(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		if len(want) != 1 {
			t.Fatalf("%s: %d alerts in 2026, want 1: %+v", c.name, len(want), want)
		}
		for _, t0 := range oddTimes {
			t.Run(fmt.Sprintf("%s/%s", c.name, t0.Format(time.RFC3339)), func(t *testing.T) {
				var got []events.Alert
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("panic: %v", p)
						}
					}()
					got = run(t0)
				}()
				if len(got) != len(want) {
					t.Fatalf("%d alerts, want %d: %+v", len(got), len(want), got)
				}
				g, w := got[0].Evidence, want[0].Evidence
				if g.Count != w.Count || g.SpeedKmh != w.SpeedKmh || g.ElapsedSeconds != w.ElapsedSeconds || len(g.Users) != len(w.Users) {
					t.Fatalf("evidence %+v, want %+v", g, w)
				}
			})
		}
	}
}

// Events centuries apart, in either order, are not within any window of
// each other, and are no impossible travel.
func TestEngineEventsAgesApart(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range timeCases {
		set := ruleSet(t, c.rule)
		for _, far := range oddTimes {
			for _, order := range []string{"now first", "far first"} {
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, far.Format(time.RFC3339), order), func(t *testing.T) {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("panic: %v", p)
						}
					}()
					e := New(set, timesGeo)
					// The events of the case but the last at one time, the
					// last at the other: the last alone never fires.
					a, b := c.events(now), c.events(far)
					if order == "far first" {
						a, b = b, a
					}
					evs := append(a[:len(a)-1:len(a)-1], b[len(b)-1])
					var got []events.Alert
					for _, ev := range evs {
						got = append(got, e.Process(ev)...)
					}
					if len(got) != 0 {
						t.Fatalf("alerts %+v", got)
					}
				})
			}
		}
	}
}

// The engine takes any time.Time without a panic, whatever the rules
// (defence in depth: the service and replay refuse absurd times first).
func FuzzEngineTimes(f *testing.F) {
	for _, t := range oddTimes {
		f.Add(t.Unix(), int64(t.Nanosecond()), int64(0), int64(time.Second), uint8(0))
	}
	f.Add(int64(0), int64(0), int64(-1), int64(1), uint8(7))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64), uint8(255))
	e := New(rules.Default(), timesGeo)
	tiny := New(ruleSet(f, "{name: r, type: request_burst, scope: ip, threshold: 1, window: 1ns}"), timesGeo)
	ips := []string{"192.0.2.1", "198.51.100.1", "203.0.113.1", ""}
	types := []events.Type{events.SessionCreated, events.SessionAccessed, events.AuthLoginFailed, events.AuthLoginSucceeded}
	f.Fuzz(func(t *testing.T, sec, nsec, step, jitter int64, pick uint8) {
		t0 := time.Unix(sec, nsec)
		for i := range int64(6) {
			at := t0.Add(time.Duration(step * i)).Add(time.Duration(jitter % (i + 1)))
			typ := types[(int(pick)+int(i))%len(types)]
			ip := ips[(int(pick)/4+int(i))%len(ips)]
			user := fmt.Sprint("u", (int(pick)>>4+int(i))%3)
			s := ""
			if typ == events.SessionCreated || typ == events.SessionAccessed {
				s = "01" + user
			}
			for _, eng := range []*Engine{e, tiny} {
				for _, a := range eng.Process(ev(fmt.Sprint(i), typ, user, s, ip, at)) {
					x := a.Evidence
					if x.Count < 0 || x.SpeedKmh < 0 || math.IsNaN(x.SpeedKmh) || math.IsInf(x.SpeedKmh, 0) || x.ElapsedSeconds < 0 {
						t.Fatalf("evidence %+v", x)
					}
				}
			}
		}
	})
}

var _ geo.Resolver = timesGeo

// The service dead-letters an event whose time is out of range or in the
// future, with the reason counted, and goes on; the engine's clock does
// not move. (A panic here was a crash of the detector.)
func TestServiceRefusesEventTimes(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		t      time.Time
		reason string // "" when taken
	}{
		{time.Time{}, ReasonTimeOutOfRange},
		{time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), ReasonTimeOutOfRange},
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), ReasonTimeOutOfRange},
		{time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), ReasonTimeOutOfRange},
		{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), ""},
		{now.Add(-30 * 24 * time.Hour), ""},
		{now.Add(DefaultMaxFuture), ""},
		{now.Add(DefaultMaxFuture + time.Nanosecond), ReasonTimeInFuture},
		{now.Add(24 * time.Hour), ReasonTimeInFuture},
		{time.Date(2199, 12, 31, 0, 0, 0, 0, time.UTC), ReasonTimeInFuture},
		{time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), ReasonTimeOutOfRange},
		{time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), ReasonTimeOutOfRange},
		{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), ReasonTimeOutOfRange},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -(23*3600+59*60))), ReasonTimeOutOfRange},
	}
	for _, set := range []*rules.Set{rules.Default(), burstRules(t), ruleSet(t, "{name: r, type: brute_force, threshold: 1, window: 5m}")} {
		src := &sliceSource{live: make(chan Delivery)}
		sink := &fakeSink{}
		svc, _, _ := startService(t, src, sink, set, now)
		<-svc.Ready()
		var want []string
		for i, c := range cases {
			e := ev(fmt.Sprint("t", i), events.SessionAccessed, "u", sid, "192.0.2.1", c.t)
			if i%2 == 1 {
				e = ev(fmt.Sprint("t", i), events.AuthLoginFailed, "u", "", "192.0.2.1", c.t)
			}
			src.deliver(e)
			if c.reason != "" {
				want = append(want, events.SubjectFor(e)+": "+(&TimeError{Reason: c.reason, Time: c.t, Latest: now.Add(DefaultMaxFuture)}).Error())
			}
		}
		waitFor(t, "every ack", func() bool { return len(src.acked()) == len(cases) })
		_, letters, _ := sink.snapshot()
		if !slices.Equal(letters, want) {
			t.Fatalf("dead letters:\n%s\nwant:\n%s", strings.Join(letters, "\n"), strings.Join(want, "\n"))
		}
		for i, b := range sink.data {
			if !bytes.Contains(b, []byte(`"user_id":"u"`)) {
				t.Errorf("dead letter %d holds %q, not the event", i, b)
			}
		}
		if c := svc.engine.Clock(); c.After(now.Add(DefaultMaxFuture)) || c.Before(now.Add(-31*24*time.Hour)) {
			t.Errorf("engine clock %s", c)
		}
		for reason, n := range map[string]float64{ReasonTimeOutOfRange: 8, ReasonTimeInFuture: 3} {
			var m dto.Metric
			if err := svc.metrics.deadLetters.WithLabelValues(reason).Write(&m); err != nil || m.GetCounter().GetValue() != n {
				t.Errorf("dead letters %s: %v, want %v (%v)", reason, m.GetCounter().GetValue(), n, err)
			}
		}
	}
}

// The warm-up skips the events the live service refused: a far-future one
// in the stream would otherwise move the engine's clock at every start.
func TestServiceWarmupSkipsRefusedTimes(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	src := &sliceSource{live: make(chan Delivery)}
	src.history = []events.Event{
		ev("1", events.SessionAccessed, "u", sid, "192.0.2.1", now.Add(-2*time.Second)),
		ev("2", events.SessionAccessed, "u", sid, "192.0.2.1", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)),
		ev("3", events.SessionAccessed, "u", sid, "192.0.2.1", now.Add(time.Hour)),
		ev("4", events.SessionAccessed, "u", sid, "192.0.2.1", now.Add(-time.Second)),
	}
	sink := &fakeSink{}
	svc, _, _ := startService(t, src, sink, burstRules(t), now)
	<-svc.Ready()
	if c := svc.engine.Clock(); !c.Equal(now.Add(-time.Second)) {
		t.Fatalf("engine clock %s after the warm-up", c)
	}
	// The two accesses of the warm-up count: the third fires.
	src.deliver(ev("5", events.SessionAccessed, "u", sid, "192.0.2.1", now))
	waitFor(t, "the ack", func() bool { return len(src.acked()) == 1 })
	if a, _, _ := sink.snapshot(); len(a) != 1 || a[0].Evidence.Count != 3 {
		t.Fatalf("alerts %+v", a)
	}
}

// A replay stops at an event whose time the detector refuses, naming its
// line (file) or its ID (audit log), rather than crash or skip it.
func TestReplayRefusesEventTimes(t *testing.T) {
	good := ev("g", events.SessionAccessed, "u", sid, "192.0.2.1", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, at := range []string{"0001-01-01T00:00:01Z", "1969-12-31T23:59:59Z", "1999-12-31T23:59:59Z", "2262-04-12T00:00:00Z",
		"9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59"} {
		bad, err := time.Parse(time.RFC3339, at)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := good.Encode()
		line := fmt.Sprintf(`{"specversion":"1.0","id":"b","source":"s","type":"session.accessed","time":%q,"dataschema":"urn:sessionmon:events:v1","data":{"user_id":"u","session_id":%q}}`, at, sid)
		in := strings.NewReader(string(g) + "\n" + string(g) + "\n" + line + "\n" + string(g) + "\n")
		var out bytes.Buffer
		for _, set := range []*rules.Set{rules.Default(), burstRules(t)} {
			st, err := Replay(New(set, timesGeo), in, &out)
			var te *TimeError
			if !errors.As(err, &te) || te.Reason != ReasonTimeOutOfRange || !strings.HasPrefix(err.Error(), "line 3: ") || st.Events != 2 {
				t.Errorf("%s: replay: %v (%+v)", at, err, st)
			}
			in.Seek(0, io.SeekStart)
			evs := []events.Event{good, good, ev("b", events.SessionAccessed, "u", sid, "192.0.2.1", bad), good}
			st, err = ReplayEach(New(set, timesGeo), func(fn func(events.Event) error) error {
				for _, e := range evs {
					if err := fn(e); err != nil {
						return err
					}
				}
				return nil
			}, &out)
			if !errors.As(err, &te) || !strings.HasPrefix(err.Error(), "event b: ") || st.Events != 2 {
				t.Errorf("%s: replay of the audit log: %v (%+v)", at, err, st)
			}
		}
	}
}

// The counter at the ends of int64: bucket indexes next to math.MinInt64
// and math.MaxInt64 (a window of 8ns makes 1ns buckets), and times past
// what UnixNano holds, which count in the last bucket there is.
func TestCounterEnds(t *testing.T) {
	maxNano := time.Unix(0, math.MaxInt64)
	minNano := time.Unix(0, math.MinInt64)
	cases := []struct {
		name   string
		window time.Duration
		times  []time.Time
		counts []int
	}{
		{"up to the last bucket", 8, []time.Time{maxNano.Add(-3), maxNano.Add(-1), maxNano, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, []int{1, 2, 3, 4}},
		{"past the window at the end", 8, []time.Time{maxNano.Add(-20), maxNano}, []int{1, 1}},
		{"from the first bucket", 8, []time.Time{time.Time{}, minNano, minNano.Add(1), minNano.Add(7), minNano.Add(9)}, []int{1, 2, 3, 4, 2}},
		{"stale at the start", 8, []time.Time{minNano.Add(20), minNano}, []int{1, 1}},
		{"across 1970", time.Minute, []time.Time{time.Unix(-3, 0), time.Unix(-1, 0), time.Unix(0, 0), time.Unix(2, 0)}, []int{1, 2, 3, 4}},
		{"a window after 1969", time.Minute, []time.Time{time.Unix(-52, 0), time.Unix(0, 0), time.Unix(61, 0)}, []int{1, 2, 1}},
	}
	for _, c := range cases {
		var ctr counter
		for i, at := range c.times {
			if n := ctr.add(at, c.window); n != c.counts[i] {
				t.Errorf("%s: count %d after event %d, want %d", c.name, n, i, c.counts[i])
			}
		}
	}
}
