package clickhouse

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/events"
)

var (
	_ audit.Timeline      = (*Store)(nil)
	_ audit.HistoryReader = (*Store)(nil)
)

// Query parameters travel separately from the SQL (server-side
// parameters, {name:Type}); nothing a user typed is spliced into a query.
func withParams(ctx context.Context, kv map[string]string) context.Context {
	p := make(ch.Parameters, len(kv))
	for k, v := range kv {
		p[k] = paramEscaper.Replace(v)
	}
	return ch.Context(ctx, ch.WithParameters(p))
}

// paramEscaper escapes a parameter value for the server, which reads it in
// the "Escaped" text format: a raw tab or newline would end it. (The
// driver quotes the value for transport; that quoting is undone before
// this format is read.)
var paramEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`)

// chTime formats a time as a DateTime64(3, 'UTC') parameter.
func chTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }

// clampRange bounds a time range to what DateTime64(3) holds; zero times
// mean unbounded.
func clampRange(from, to time.Time) (time.Time, time.Time) {
	if from.IsZero() || from.Before(minTime) {
		from = minTime
	}
	if to.IsZero() || to.After(maxTime) {
		to = maxTime
	}
	return from, to
}

// endingTypes is the SQL list of the ending event types.
var endingTypes = func() string {
	var q []string
	for _, t := range events.Types {
		if t.Ending() {
			q = append(q, "'"+string(t)+"'")
		}
	}
	return "(" + strings.Join(q, ", ") + ")"
}()

// display is how an address is shown: the address, its pseudonym, or "".
func display(ip netip.Addr, hash string) string {
	return audit.IPRecord{Addr: validAddr(ip), Hash: hash}.Display()
}

// validAddr maps :: (no address, or pseudonymized) to the zero Addr.
func validAddr(ip netip.Addr) netip.Addr {
	if !ip.IsValid() || ip.Unmap().IsUnspecified() {
		return netip.Addr{}
	}
	return ip
}

// MaxTimelineEntries bounds UserTimeline.
const MaxTimelineEntries = 10000

// UserTimeline implements audit.Timeline: a user's events, alerts and
// actions in [from, to), newest first, at most limit (default 500, at
// most MaxTimelineEntries). Zero times leave the range open.
func (s *Store) UserTimeline(ctx context.Context, userID string, from, to time.Time, limit int) ([]audit.Entry, error) {
	if limit <= 0 {
		limit = 500
	}
	limit = min(limit, MaxTimelineEntries)
	from, to = clampRange(from, to)
	q := `SELECT time, kind, id, type, session_id, ip, ip_hash, country, city, user_agent, detail FROM (
		SELECT time, 'event' AS kind, id, toString(type) AS type, session_id, ip, ip_hash,
			toString(country) AS country, toString(city) AS city, user_agent,
			if(rule != '', concat(toString(reason), ' (rule ', toString(rule), ')'), toString(reason)) AS detail
		FROM ` + s.table(TableSessionEvents) + ` FINAL
		WHERE user_id = {user:String} AND time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')}
		UNION ALL
		SELECT time, 'alert', id, toString(rule), arrayStringConcat(session_ids, ','), ip, ip_hash, '', '', '',
			concat(toString(severity), ': ', summary)
		FROM ` + s.table(TableAlerts) + ` FINAL
		WHERE user_id = {user:String} AND time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')}
		UNION ALL
		SELECT time, 'action', id, toString(action), session_id, toIPv6('::'), '', '', '', '',
			concat(toString(result), if(error != '', concat(' (', toString(error), ')'), ''),
				' by ', toString(actor), if(note != '', concat(': ', note), ''))
		FROM ` + s.table(TableActions) + ` FINAL
		WHERE user_id = {user:String} AND time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')}
	) ORDER BY time DESC, kind, id LIMIT {limit:UInt32}`
	rows, err := s.conn.Query(withParams(ctx, map[string]string{
		"user": userID, "from": chTime(from), "to": chTime(to), "limit": fmt.Sprint(limit),
	}), q)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("timeline of %q: %w", userID, err)
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		var e audit.Entry
		var ip netip.Addr
		var hash string
		if err := rows.Scan(&e.Time, &e.Kind, &e.ID, &e.Type, &e.SessionID, &ip, &hash, &e.Country, &e.City, &e.UserAgent, &e.Detail); err != nil {
			return nil, fmt.Errorf("timeline of %q: %w", userID, err)
		}
		e.IP = display(ip, hash)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("timeline of %q: %w", userID, err)
	}
	return out, nil
}

// UserHistory implements audit.HistoryReader: every session of a user with
// an event in [from, to) (zero times leave it open), oldest first, and the
// user's login attempts.
func (s *Store) UserHistory(ctx context.Context, userID string, from, to time.Time) (*audit.History, error) {
	h := &audit.History{UserID: userID, From: from, To: to, Generated: time.Now().UTC(), Sessions: []audit.SessionRecord{}, AuthEvents: []audit.Entry{}}
	from, to = clampRange(from, to)
	p := map[string]string{"user": userID, "from": chTime(from), "to": chTime(to)}
	where := `user_id = {user:String} AND time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')}`
	events := s.table(TableSessionEvents) + " FINAL"

	// One row per session: its start, its ending(s), counts.
	q := `SELECT session_id,
			anyIf(app, app != '') AS app,
			minIf(time, type = 'session.created') AS started,
			countIf(type = 'session.created') AS creates,
			argMinIf(ip, time, type = 'session.created'), argMinIf(ip_hash, time, type = 'session.created'),
			toString(argMinIf(country, time, type = 'session.created')), toString(argMinIf(city, time, type = 'session.created')),
			argMinIf(previous_session_id, time, type = 'session.created'),
			min(time), max(time), count(),
			groupUniqArray(20)(user_agent),
			countIf(type IN ` + endingTypes + `) AS endings,
			minIf(time, type IN ` + endingTypes + `),
			toString(argMinIf(type, time, type IN ` + endingTypes + `)),
			toString(argMinIf(reason, time, type IN ` + endingTypes + `)),
			toString(argMinIf(actor, time, type IN ` + endingTypes + `)),
			toString(argMinIf(rule, time, type IN ` + endingTypes + `))
		FROM ` + events + ` WHERE ` + where + ` AND session_id != ''
		GROUP BY session_id ORDER BY min(time), session_id`
	rows, err := s.conn.Query(withParams(ctx, p), q)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: %w", userID, err)
	}
	index := map[string]int{}
	for rows.Next() {
		var r audit.SessionRecord
		var creates, events, endings uint64
		var startIP netip.Addr
		var startHash string
		var ended time.Time
		if err := rows.Scan(&r.SessionID, &r.App, &r.Started, &creates, &startIP, &startHash, &r.StartPlace.Country, &r.StartPlace.City,
			&r.PreviousSessionID, &r.FirstSeen, &r.LastSeen, &events, &r.UserAgents, &endings, &ended, &r.End, &r.Reason, &r.Actor, &r.Rule); err != nil {
			rows.Close()
			return nil, fmt.Errorf("history of %q: %w", userID, err)
		}
		if creates == 0 {
			r.Started = time.Time{}
		} else {
			r.StartIP = display(startIP, startHash)
		}
		if endings > 0 {
			r.Ended = ended
		}
		r.Events, r.Endings = int(events), int(endings)
		r.Addresses = []audit.Address{}
		index[r.SessionID] = len(h.Sessions)
		h.Sessions = append(h.Sessions, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: %w", userID, err)
	}

	// Each session's addresses and places.
	q = `SELECT session_id, ip, ip_hash, toString(any(country)), toString(any(city)), min(time), max(time), count()
		FROM ` + events + ` WHERE ` + where + ` AND session_id != '' AND (ip != toIPv6('::') OR ip_hash != '')
		GROUP BY session_id, ip, ip_hash ORDER BY session_id, min(time)`
	rows, err = s.conn.Query(withParams(ctx, p), q)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: addresses: %w", userID, err)
	}
	for rows.Next() {
		var sid, hash string
		var ip netip.Addr
		var a audit.Address
		var n uint64
		if err := rows.Scan(&sid, &ip, &hash, &a.Place.Country, &a.Place.City, &a.First, &a.Last, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("history of %q: addresses: %w", userID, err)
		}
		a.IP, a.Events = display(ip, hash), int(n)
		if i, ok := index[sid]; ok {
			h.Sessions[i].Addresses = append(h.Sessions[i].Addresses, a)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: addresses: %w", userID, err)
	}

	// Login attempts.
	q = `SELECT time, id, toString(type), ip, ip_hash, toString(country), toString(city), user_agent, toString(reason)
		FROM ` + events + ` WHERE ` + where + ` AND type IN ('auth.login_failed', 'auth.login_succeeded')
		ORDER BY time, id`
	rows, err = s.conn.Query(withParams(ctx, p), q)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: logins: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		e := audit.Entry{Kind: audit.KindEvent}
		var ip netip.Addr
		var hash string
		if err := rows.Scan(&e.Time, &e.ID, &e.Type, &ip, &hash, &e.Country, &e.City, &e.UserAgent, &e.Detail); err != nil {
			return nil, fmt.Errorf("history of %q: logins: %w", userID, err)
		}
		e.IP = display(ip, hash)
		h.AuthEvents = append(h.AuthEvents, e)
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("history of %q: logins: %w", userID, err)
	}
	return h, nil
}

// EndingCheckOptions parameterize CheckEndings.
type EndingCheckOptions struct {
	// AbsoluteTimeout is the session service's absolute timeout: a session
	// ends at the latest this long after it started.
	AbsoluteTimeout time.Duration
	// Grace covers the sweeper's period and the pipeline's lag.
	Grace time.Duration
	// From is the start of the sessions checked.
	From time.Time
	// Now is the time of the check (default: the clock).
	Now time.Time
}

// CheckEndings checks that every session that started in [From, Now -
// AbsoluteTimeout - Grace) has exactly one ending event (terminated,
// expired, revoked, evicted, replaced), and that no session ended without
// having started (for endings late enough that their start must be in
// the log). It counts events by ID, so a row written twice is one event.
func (s *Store) CheckEndings(ctx context.Context, o EndingCheckOptions) (*audit.EndingCheck, error) {
	if o.AbsoluteTimeout <= 0 {
		return nil, fmt.Errorf("check endings: absolute timeout must be positive")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	until := now.Add(-o.AbsoluteTimeout - o.Grace)
	from, _ := clampRange(o.From, time.Time{})
	res := &audit.EndingCheck{From: from.UTC(), Until: until.UTC(), Violations: []audit.EndingViolation{}}
	if !until.After(from) {
		return res, nil
	}
	p := map[string]string{
		"from": chTime(from), "until": chTime(until), "now": chTime(now),
		// An ending at or after this time belongs to a session that
		// started at or after From: it must have a start in the log.
		"orphan_from": chTime(from.Add(o.AbsoluteTimeout)),
	}
	q := `SELECT session_id, any(user_id) AS user_id,
			uniqExactIf(id, type = 'session.created') AS starts,
			minIf(time, type = 'session.created') AS started,
			uniqExactIf(id, type IN ` + endingTypes + `) AS endings,
			arrayMap(x -> x.3, arraySort(groupUniqArrayIf((time, id, toString(type)), type IN ` + endingTypes + `))) AS end_types,
			minIf(time, type IN ` + endingTypes + `) AS first_end,
			multiIf(
				starts > 1, '` + audit.ProblemStartedTwice + `',
				starts = 1 AND endings = 0 AND started < {until:DateTime64(3, 'UTC')}, '` + audit.ProblemNoEnding + `',
				starts = 1 AND endings > 1, '` + audit.ProblemManyEndings + `',
				starts = 0 AND endings > 0 AND first_end >= {orphan_from:DateTime64(3, 'UTC')}, '` + audit.ProblemEndingNoStart + `',
				'') AS problem
		FROM ` + s.table(TableSessionEvents) + `
		WHERE time >= {from:DateTime64(3, 'UTC')} AND time <= {now:DateTime64(3, 'UTC')}
			AND session_id != '' AND type IN ('session.created', ` + strings.Trim(endingTypes, "()") + `)
		GROUP BY session_id
		HAVING problem != '' AND (starts = 0 OR started < {until:DateTime64(3, 'UTC')})
		ORDER BY started, session_id`
	rows, err := s.conn.Query(withParams(ctx, p), q)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("check endings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v audit.EndingViolation
		var starts, endings uint64
		var firstEnd time.Time
		if err := rows.Scan(&v.SessionID, &v.UserID, &starts, &v.Started, &endings, &v.EndTypes, &firstEnd, &v.Problem); err != nil {
			return nil, fmt.Errorf("check endings: %w", err)
		}
		if starts == 0 {
			v.Started = time.Time{}
		}
		v.Endings = int(endings)
		res.Violations = append(res.Violations, v)
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("check endings: %w", err)
	}
	var checked uint64
	err = s.conn.QueryRow(withParams(ctx, p), `SELECT uniqExact(session_id) FROM `+s.table(TableSessionEvents)+`
		WHERE type = 'session.created' AND time >= {from:DateTime64(3, 'UTC')} AND time < {until:DateTime64(3, 'UTC')}`).Scan(&checked)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("check endings: count: %w", err)
	}
	res.Checked = int(checked)
	return res, nil
}

// EventsChunk is the span of one query of Events: each query sorts its
// rows by time, so the span bounds what ClickHouse sorts at once.
const EventsChunk = 10 * time.Minute

// Events calls fn with every session event in [from, to), in time order
// (then by ID), each once however many times it was written; for
// `detector replay` from the audit log. Times are milliseconds (the
// table's precision) in UTC. Pseudonymized addresses come back empty: the
// audit log cannot give them back. An error from fn stops the reading and
// is returned.
func (s *Store) Events(ctx context.Context, from, to time.Time, fn func(events.Event) error) error {
	from, to = clampRange(from, to)
	for cursor := from; cursor.Before(to); {
		// Skip to the next event, so that gaps cost one query.
		var next time.Time
		var n uint64
		err := s.conn.QueryRow(withParams(ctx, map[string]string{"from": chTime(cursor), "to": chTime(to)}),
			`SELECT min(time), count() FROM (SELECT time FROM `+s.table(TableSessionEvents)+`
			WHERE time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')} ORDER BY time LIMIT 1)`).Scan(&next, &n)
		if err != nil {
			s.m.errors.WithLabelValues("query").Inc()
			return fmt.Errorf("events: %w", err)
		}
		if n == 0 {
			return nil
		}
		a := next.Truncate(time.Millisecond)
		b := a.Add(EventsChunk)
		if b.After(to) {
			b = to
		}
		if err := s.eventsChunk(ctx, a, b, fn); err != nil {
			return err
		}
		cursor = b
	}
	return nil
}

func (s *Store) eventsChunk(ctx context.Context, from, to time.Time, fn func(events.Event) error) error {
	rows, err := s.conn.Query(withParams(ctx, map[string]string{"from": chTime(from), "to": chTime(to)}),
		`SELECT id, time, toString(type), toString(source), user_id, session_id, toString(app), ip, user_agent,
			toString(reason), toString(actor), toString(rule), path, previous_session_id
		FROM `+s.table(TableSessionEvents)+`
		WHERE time >= {from:DateTime64(3, 'UTC')} AND time < {to:DateTime64(3, 'UTC')}
		ORDER BY time, id`)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return fmt.Errorf("events: %w", err)
	}
	defer rows.Close()
	var last string
	for rows.Next() {
		var e events.Event
		var typ string
		var ip netip.Addr
		d := &e.Data
		if err := rows.Scan(&e.ID, &e.Time, &typ, &e.Source, &d.UserID, &d.SessionID, &d.App, &ip, &d.UserAgent,
			&d.Reason, &d.Actor, &d.Rule, &d.Path, &d.PreviousSessionID); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		// Copies of one event have one time and one ID: they are
		// adjacent in this order.
		if e.ID == last {
			continue
		}
		last = e.ID
		e.Type = events.Type(typ)
		e.Time = e.Time.UTC()
		if ip = validAddr(ip); ip.IsValid() {
			d.IP = ip.Unmap().String()
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return fmt.Errorf("events: %w", err)
	}
	return nil
}

// SessionEvents returns a session's events in time order, each once.
func (s *Store) SessionEvents(ctx context.Context, sessionID string) ([]audit.Entry, error) {
	rows, err := s.conn.Query(withParams(ctx, map[string]string{"sid": sessionID}),
		`SELECT time, id, toString(type), session_id, ip, ip_hash, toString(country), toString(city), user_agent, toString(reason)
		FROM `+s.table(TableSessionEvents)+` FINAL WHERE session_id = {sid:String} ORDER BY time, id`)
	if err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("session %q: %w", sessionID, err)
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		e := audit.Entry{Kind: audit.KindEvent}
		var ip netip.Addr
		var hash string
		if err := rows.Scan(&e.Time, &e.ID, &e.Type, &e.SessionID, &ip, &hash, &e.Country, &e.City, &e.UserAgent, &e.Detail); err != nil {
			return nil, fmt.Errorf("session %q: %w", sessionID, err)
		}
		e.IP = display(ip, hash)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		s.m.errors.WithLabelValues("query").Inc()
		return nil, fmt.Errorf("session %q: %w", sessionID, err)
	}
	return out, nil
}
