package clickhouse

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/events"
)

func TestUserTimeline(t *testing.T) {
	s := testStore(t, 13)
	// A user ID that would break a query built by splicing strings.
	user := `o'brien\` + "\t\"x"
	evs := session(user, sid(1), base, 2, events.SessionRevoked)
	evs[3].Data.Rule, evs[3].Data.Reason = "shared-session", "shared_session"
	write(t, s, WriterOptions{}, evs...)
	write(t, s, WriterOptions{}, session("someone-else", sid(2), base, 2, "")...)
	ab := s.NewAlertBatch(WriterOptions{})
	alert := events.Alert{ID: "al1", Time: base.Add(2500 * time.Millisecond), Rule: "shared-session", RuleType: "shared_session", Severity: "high",
		UserID: user, SessionIDs: []string{sid(1)}, Action: "revoke_session", Mode: "enforce", ActionResult: "done", Summary: "session alternates between networks"}
	action := events.Action{ID: "ac1", Time: base.Add(2600 * time.Millisecond), Kind: events.KindEnforcement, Actor: "detector", Action: "revoke_session",
		AlertID: "al1", Rule: "shared-session", UserID: user, SessionID: sid(1), Result: events.ResultDone, Attempts: 1, Count: 1}
	review := events.Action{ID: "ac2", Time: base.Add(time.Hour), Kind: events.KindReview, Actor: "rita", Action: "resolve", AlertID: "al1",
		UserID: user, Result: events.ResultDone, Note: "confirmed with the user"}
	for _, err := range []error{ab.AddAlert(alert, "detector"), ab.AddAction(action, "detector"), ab.AddAction(review, "alerter")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := ab.Write(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	tl, err := s.UserTimeline(ctxT(t), user, time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tl {
		got = append(got, e.Kind+" "+e.Type+" "+e.Detail)
	}
	want := []string{
		"action resolve done by rita: confirmed with the user",
		"event session.revoked shared_session (rule shared-session)",
		"action revoke_session done by detector",
		"alert shared-session high: session alternates between networks",
		"event session.accessed ",
		"event session.accessed ",
		"event session.created ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e := tl[len(tl)-1]
	if e.IP != "198.51.100.7" || e.SessionID != sid(1) || e.UserAgent != "Firefox" || !e.Time.Equal(base) || e.ID != evs[0].ID {
		t.Fatalf("entry %+v", e)
	}
	// Limit and range.
	tl, err = s.UserTimeline(ctxT(t), user, base.Add(time.Second), base.Add(3*time.Second), 2)
	if err != nil || len(tl) != 2 || tl[0].Type != "revoke_session" {
		t.Fatalf("limited: %+v %v", tl, err)
	}
	tl, err = s.UserTimeline(ctxT(t), "nobody", time.Time{}, time.Time{}, 10)
	if err != nil || tl == nil || len(tl) != 0 {
		t.Fatalf("nobody: %+v %v", tl, err)
	}
}

func TestUserHistory(t *testing.T) {
	s := testStore(t, 13)
	var evs []events.Event
	// 1: ended, used from two addresses.
	evs = append(evs, session("erin", sid(1), base, 3, events.SessionTerminated, "192.0.2.10", "203.0.113.7")...)
	// 2: replaced at the next login, which names it.
	evs = append(evs, session("erin", sid(2), base.Add(time.Hour), 1, events.SessionReplaced)...)
	next := session("erin", sid(3), base.Add(2*time.Hour), 0, "")
	next[0].Data.PreviousSessionID = sid(2)
	evs = append(evs, next...)
	// Login attempts.
	fail := events.Event{ID: events.NewID(), Type: events.AuthLoginFailed, Source: "sessionsvc", Time: base.Add(-time.Minute),
		Data: events.Data{UserID: "erin", IP: "203.0.113.99", UserAgent: "curl"}}
	evs = append(evs, fail)
	write(t, s, WriterOptions{}, evs...)
	// 4: started before the period asked for.
	write(t, s, WriterOptions{}, session("erin", sid(4), base.Add(-48*time.Hour), 1, events.SessionExpired)...)

	h, err := s.UserHistory(ctxT(t), "erin", base.Add(-time.Hour), base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range h.Sessions {
		ids = append(ids, r.SessionID)
	}
	if !slices.Equal(ids, []string{sid(1), sid(2), sid(3)}) {
		t.Fatalf("sessions %v", ids)
	}
	r := h.Sessions[0]
	if !r.Started.Equal(base) || r.StartIP != "192.0.2.10" || r.End != "session.terminated" || r.Reason != "logout" || r.Actor != "shop" ||
		!r.Ended.Equal(base.Add(4*time.Second)) || r.Endings != 1 || r.Events != 5 || r.App != "shop" || !slices.Equal(r.UserAgents, []string{"Firefox"}) {
		t.Fatalf("session 1: %+v", r)
	}
	if len(r.Addresses) != 2 || r.Addresses[0].IP != "192.0.2.10" || r.Addresses[0].Events != 3 || r.Addresses[1].IP != "203.0.113.7" || r.Addresses[1].Events != 2 {
		t.Fatalf("addresses %+v", r.Addresses)
	}
	if h.Sessions[1].End != "session.replaced" || h.Sessions[2].PreviousSessionID != sid(2) || !h.Sessions[2].Ended.IsZero() || h.Sessions[2].Endings != 0 {
		t.Fatalf("sessions 2, 3: %+v", h.Sessions[1:])
	}
	if len(h.AuthEvents) != 1 || h.AuthEvents[0].Type != "auth.login_failed" || h.AuthEvents[0].IP != "203.0.113.99" {
		t.Fatalf("auth events %+v", h.AuthEvents)
	}
	// All time: session 4 too, with its start.
	h, err = s.UserHistory(ctxT(t), "erin", time.Time{}, time.Time{})
	if err != nil || len(h.Sessions) != 4 || h.Sessions[0].SessionID != sid(4) || h.Sessions[0].Started.IsZero() {
		t.Fatalf("all time: %+v %v", h, err)
	}
	// A period that starts after a session's creation: no start.
	h, err = s.UserHistory(ctxT(t), "erin", base.Add(time.Second), time.Time{})
	if err != nil || h.Sessions[0].SessionID != sid(1) || !h.Sessions[0].Started.IsZero() || h.Sessions[0].StartIP != "" {
		t.Fatalf("partial: %+v %v", h.Sessions[0], err)
	}
}

func TestCheckEndings(t *testing.T) {
	s := testStore(t, 13)
	const abs = 8 * time.Hour
	now := base.Add(24 * time.Hour)
	start := base.Add(-time.Hour)
	var evs []events.Event
	// Fine: ended once.
	evs = append(evs, session("u1", sid(1), base, 1, events.SessionTerminated)...)
	// No ending, absolute timeout long passed.
	evs = append(evs, session("u2", sid(2), base, 1, "")...)
	// Ended twice (two distinct ending events).
	two := session("u3", sid(3), base, 1, events.SessionRevoked)
	extra := two[len(two)-1]
	extra.ID, extra.Type, extra.Time = events.NewID(), events.SessionExpired, extra.Time.Add(time.Hour)
	evs = append(evs, append(two, extra)...)
	// Ended without a start, late enough that the start should be here.
	orphan := session("u4", sid(4), base.Add(10*time.Hour), 0, events.SessionExpired)[1:]
	evs = append(evs, orphan...)
	// Still within its absolute timeout (+ grace): not checked yet.
	evs = append(evs, session("u5", sid(5), now.Add(-abs), 1, "")...)
	// Started before the period checked, ended inside it: fine.
	evs = append(evs, session("u6", sid(6), start.Add(-time.Hour), 0, events.SessionExpired)[1:]...)
	// Started twice.
	twice := session("u7", sid(7), base, 0, events.SessionEvicted)
	again := twice[0]
	again.ID = events.NewID()
	evs = append(evs, append(twice, again)...)
	write(t, s, WriterOptions{}, evs...)
	// A duplicate row (a redelivered batch) is not a second ending.
	write(t, s, WriterOptions{}, evs[:3]...)

	res, err := s.CheckEndings(ctxT(t), EndingCheckOptions{AbsoluteTimeout: abs, Grace: 15 * time.Minute, From: start, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]audit.EndingViolation{}
	for _, v := range res.Violations {
		got[v.UserID] = v
	}
	want := map[string]string{"u2": audit.ProblemNoEnding, "u3": audit.ProblemManyEndings, "u4": audit.ProblemEndingNoStart, "u7": audit.ProblemStartedTwice}
	if len(got) != len(want) {
		t.Fatalf("violations %+v", res.Violations)
	}
	for u, p := range want {
		if got[u].Problem != p {
			t.Errorf("%s: %+v, want %s", u, got[u], p)
		}
	}
	if v := got["u3"]; v.Endings != 2 || !slices.Equal(v.EndTypes, []string{"session.revoked", "session.expired"}) || !v.Started.Equal(base) {
		t.Fatalf("u3: %+v", v)
	}
	if v := got["u4"]; !v.Started.IsZero() || v.SessionID != sid(4) {
		t.Fatalf("u4: %+v", v)
	}
	// u1, u2, u3, u7 started in the window; u4's start is missing; u5
	// started too recently.
	if res.Checked != 4 || !res.Until.Equal(now.Add(-abs-15*time.Minute)) {
		t.Fatalf("checked %d until %s", res.Checked, res.Until)
	}
	if _, err := s.CheckEndings(ctxT(t), EndingCheckOptions{}); err == nil {
		t.Fatal("no absolute timeout: no error")
	}
}

func TestEvents(t *testing.T) {
	s := testStore(t, 13)
	var evs []events.Event
	// Three bursts far apart (several chunks, long gaps), out of order
	// across batches, one event written twice.
	for i, at := range []time.Time{base.Add(3 * time.Hour), base, base.Add(25 * time.Minute)} {
		evs = append(evs, session(fmt.Sprint("u", i), sid(i), at, 3, events.SessionTerminated)...)
	}
	evs[0].Data.Path = "/x"
	evs[0].Data.PreviousSessionID = sid(9)
	write(t, s, WriterOptions{}, evs[:7]...)
	write(t, s, WriterOptions{}, evs[5:]...)
	var got []events.Event
	err := s.Events(ctxT(t), time.Time{}, time.Time{}, func(e events.Event) error { got = append(got, e); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events, want %d", len(got), len(evs))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatalf("out of order at %d", i)
		}
	}
	byID := map[string]events.Event{}
	for _, e := range evs {
		e.Time = e.Time.Truncate(time.Millisecond)
		byID[e.ID] = e
	}
	for _, e := range got {
		if want := byID[e.ID]; fmt.Sprint(e) != fmt.Sprint(want) {
			t.Fatalf("read back\n %+v\nwant\n %+v", e, want)
		}
	}
	// A range, and an error from fn.
	var n int
	err = s.Events(ctxT(t), base.Add(time.Minute), base.Add(time.Hour), func(events.Event) error { n++; return nil })
	if err != nil || n != 5 {
		t.Fatalf("range: %d %v", n, err)
	}
	stop := errors.New("stop")
	n = 0
	err = s.Events(ctxT(t), time.Time{}, time.Time{}, func(events.Event) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("stop: %d %v", n, err)
	}
	// A session's history.
	es, err := s.SessionEvents(ctxT(t), sid(1))
	if err != nil || len(es) != 5 || es[0].Type != "session.created" || es[4].Type != "session.terminated" {
		t.Fatalf("session events %+v %v", es, err)
	}
}
