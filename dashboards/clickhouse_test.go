package dashboards

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sessionmon/sessionmon/audit"
	"github.com/sessionmon/sessionmon/clickhouse"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// macroQuery is what Grafana gives the ClickHouse plugin with a query: the
// dashboard's time range and the panel's interval.
type macroQuery struct {
	From, To time.Time
	Interval time.Duration
}

// expandMacros expands the grafana-clickhouse-datasource plugin's macros
// (v4, pkg/macros/macros.go) as the plugin's backend does before the query
// reaches ClickHouse:
//
//	$__timeFilter(c)        c >= toDateTime(from) AND c <= toDateTime(to)       (seconds)
//	$__timeFilter_ms(c)     c >= fromUnixTimestamp64Milli(from) AND c <= ...(to) (milliseconds)
//	$__fromTime, $__toTime  toDateTime(from), toDateTime(to)
//	$__fromTime_ms, $__toTime_ms  fromUnixTimestamp64Milli(from), ...(to)
//	$__dateFilter(c)        c >= toDate('from') AND c <= toDate('to')
//	$__dateTimeFilter(d, t), $__dt(d, t)  both of the above, on d and t
//	$__timeInterval(c)      toStartOfInterval(toDateTime(c), INTERVAL s second)  (s = interval, at least 1)
//	$__timeInterval_ms(c)   toStartOfInterval(toDateTime64(c, 3), INTERVAL ms millisecond)
//	$__interval_s           the interval in seconds (at least 1)
//
// Anything else starting with $ (a template variable, $__conditionalAll,
// which Grafana's frontend would expand) is an error: the dashboards use
// none, and a query the test cannot expand is a query it does not prove.
func expandMacros(sql string, q macroQuery) (string, error) {
	var out strings.Builder
	for {
		i := strings.Index(sql, "$")
		if i < 0 {
			out.WriteString(sql)
			return out.String(), nil
		}
		out.WriteString(sql[:i])
		sql = sql[i:]
		m := macroName.FindStringSubmatch(sql)
		if m == nil {
			return "", fmt.Errorf("%.30q: not a macro of the ClickHouse plugin (template variables are not supported here)", sql)
		}
		name := m[1]
		sql = sql[len(m[0]):]
		var args []string
		if strings.HasPrefix(sql, "(") {
			var rest string
			var err error
			args, rest, err = macroArgs(sql)
			if err != nil {
				return "", fmt.Errorf("$__%s: %w", name, err)
			}
			sql = rest
		}
		exp, err := expandMacro(name, args, q)
		if err != nil {
			return "", err
		}
		out.WriteString(exp)
	}
}

var macroName = regexp.MustCompile(`^\$__(\w+)`)

// macroArgs splits "(a, f(b, c))rest" into [a, f(b, c)] and rest.
func macroArgs(s string) (args []string, rest string, err error) {
	depth, start := 0, 1
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				args = append(args, strings.TrimSpace(s[start:i]))
				return args, s[i+1:], nil
			}
		case ',':
			if depth == 1 {
				args = append(args, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return nil, "", fmt.Errorf("unbalanced parentheses")
}

func expandMacro(name string, args []string, q macroQuery) (string, error) {
	want := map[string]int{
		"timeFilter": 1, "timeFilter_ms": 1, "dateFilter": 1, "dateTimeFilter": 2, "dt": 2,
		"timeInterval": 1, "timeInterval_ms": 1,
		"fromTime": 0, "toTime": 0, "fromTime_ms": 0, "toTime_ms": 0, "interval_s": 0,
	}
	n, ok := want[name]
	if !ok {
		return "", fmt.Errorf("$__%s is not a macro of the ClickHouse plugin's backend", name)
	}
	if n > 0 && len(args) != n {
		return "", fmt.Errorf("$__%s: expected %d arguments, received %d", name, n, len(args))
	}
	dateTime := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	dateTime64 := func(t time.Time) string { return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.Format("2006-01-02")) }
	between := func(c string, f func(time.Time) string) string {
		return fmt.Sprintf("%s >= %s AND %s <= %s", c, f(q.From), c, f(q.To))
	}
	seconds := int(math.Max(q.Interval.Seconds(), 1))
	switch name {
	case "timeFilter":
		return between(args[0], dateTime), nil
	case "timeFilter_ms":
		return between(args[0], dateTime64), nil
	case "dateFilter":
		return between(args[0], date), nil
	case "dateTimeFilter", "dt":
		return fmt.Sprintf("(%s) AND (%s)", between(args[0], date), between(args[1], dateTime)), nil
	case "timeInterval":
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", args[0], seconds), nil
	case "timeInterval_ms":
		return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", args[0], max(q.Interval.Milliseconds(), 1)), nil
	case "fromTime":
		return dateTime(q.From), nil
	case "toTime":
		return dateTime(q.To), nil
	case "fromTime_ms":
		return dateTime64(q.From), nil
	case "toTime_ms":
		return dateTime64(q.To), nil
	default: // interval_s
		return fmt.Sprint(seconds), nil
	}
}

func TestExpandMacros(t *testing.T) {
	q := macroQuery{
		From:     time.Date(2026, 11, 21, 10, 0, 0, 250e6, time.UTC),
		To:       time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Interval: 90 * time.Second,
	}
	from, to := q.From.Unix(), q.To.Unix()
	for _, tc := range []struct{ in, want string }{
		{"WHERE $__timeFilter(time)", fmt.Sprintf("WHERE time >= toDateTime(%d) AND time <= toDateTime(%d)", from, to)},
		{"WHERE $__timeFilter_ms( t )", fmt.Sprintf("WHERE t >= fromUnixTimestamp64Milli(%d) AND t <= fromUnixTimestamp64Milli(%d)", q.From.UnixMilli(), q.To.UnixMilli())},
		{"$__fromTime,$__toTime", fmt.Sprintf("toDateTime(%d),toDateTime(%d)", from, to)},
		{"$__fromTime_ms", fmt.Sprintf("fromUnixTimestamp64Milli(%d)", q.From.UnixMilli())},
		{"SELECT $__timeInterval(time) AS t", "SELECT toStartOfInterval(toDateTime(time), INTERVAL 90 second) AS t"},
		{"$__timeInterval_ms(toDateTime64(x, 3))", "toStartOfInterval(toDateTime64(toDateTime64(x, 3), 3), INTERVAL 90000 millisecond)"},
		{"$__interval_s", "90"},
		{"$__dateFilter(d)", "d >= toDate('2026-11-21') AND d <= toDate('2026-11-22')"},
		{"$__dt(d, t)", fmt.Sprintf("(d >= toDate('2026-11-21') AND d <= toDate('2026-11-22')) AND (t >= toDateTime(%d) AND t <= toDateTime(%d))", from, to)},
		{"no macro", "no macro"},
	} {
		got, err := expandMacros(tc.in, q)
		if err != nil || got != tc.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tc.in, got, err, tc.want)
		}
	}
	if got, _ := expandMacros("$__interval_s", macroQuery{Interval: 10 * time.Millisecond}); got != "1" {
		t.Errorf("an interval under a second: %s, want 1", got)
	}
	for _, in := range []string{"$__timeFilter(a, b)", "$__timeFilter", "$__timeGroup(t, 1m)", "$app", "${app}", "$__conditionalAll(a = 1, $app)", "$__timeFilter(f(x)"} {
		if got, err := expandMacros(in, q); err == nil {
			t.Errorf("%s: no error, got %s", in, got)
		}
	}
}

// fixture is the audit log the security dashboard is run against: a few
// users' sessions from known places, attacks and what was done about them.
type fixture struct {
	events  []events.Event
	alerts  []events.Alert
	actions []events.Action
}

func newFixture(base time.Time) *fixture {
	f := &fixture{}
	at := func(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }
	ev := func(min int, typ events.Type, user, sid, ip string, d events.Data) {
		d.UserID, d.SessionID, d.IP, d.App = user, sid, ip, "shop"
		if d.UserAgent == "" {
			d.UserAgent = "Firefox"
		}
		if d.Actor == "" {
			d.Actor = "shop"
		}
		f.events = append(f.events, events.Event{ID: events.NewID(), Type: typ, Source: "sessionsvc", Time: at(min), Data: d})
	}
	session := func(min int, user, sid, ip string, accesses int) {
		ev(min, events.SessionCreated, user, sid, ip, events.Data{})
		for i := 1; i <= accesses; i++ {
			ev(min+i, events.SessionAccessed, user, sid, ip, events.Data{Path: "/orders"})
		}
	}
	// Addresses of geo/geodb/networks.csv: 81.2.69.0/24 London (GB),
	// 198.51.100.0/26 New York and .64/26 San Francisco (US), .128/26
	// Sydney (AU), 192.0.2.128/26 Paris (FR), .192/26 Frankfurt (DE),
	// 203.0.113.0/26 Tokyo (JP), .64/26 São Paulo (BR); 10.0.0.0/8 is
	// private (no country).
	session(0, "alice", "07Sa1", "81.2.69.10", 3)
	session(10, "alice", "07Sa2", "198.51.100.130", 1) // Sydney, minutes after London
	ev(11, events.SessionReauthRequired, "alice", "07Sa2", "", events.Data{Reason: "impossible_travel", Actor: "detector", Rule: "impossible-travel"})
	ev(12, events.SessionAccessed, "alice", "07Sa1", "198.51.100.131", events.Data{UserAgent: "curl"})
	ev(13, events.SessionRevoked, "alice", "07Sa1", "", events.Data{Reason: "shared_session", Actor: "detector", Rule: "shared-session"})
	session(5, "bob", "03Sb1", "198.51.100.7", 2)
	ev(8, events.SessionTerminated, "bob", "03Sb1", "198.51.100.7", events.Data{Reason: "logout"})
	session(30, "bob", "03Sb2", "198.51.100.8", 1)
	session(20, "gina", "05Sg1", "198.51.100.70", 1) // San Francisco
	session(25, "carol", "01Sc1", "192.0.2.130", 2)
	ev(40, events.SessionRevoked, "carol", "01Sc1", "", events.Data{Reason: "reviewer decision", Actor: "alerter", Rule: "new-country"})
	session(2, "dave", "09Sd1", "10.0.0.5", 0)
	ev(50, events.SessionExpired, "dave", "09Sd1", "", events.Data{Reason: "idle_timeout", Actor: "sweeper"})
	session(3, "erin", "11Se1", "203.0.113.7", 0)
	ev(45, events.SessionEvicted, "erin", "11Se1", "", events.Data{Reason: "session_limit"})
	// Brute force on frank from São Paulo; credential stuffing from Frankfurt.
	for i := range 12 {
		ev(15, events.AuthLoginFailed, "frank", "", fmt.Sprintf("203.0.113.%d", 70+i%3), events.Data{Reason: "bad_password"})
	}
	for _, u := range []string{"hal", "ivy", "jon", "kim", "lea"} {
		ev(16, events.AuthLoginFailed, u, "", "192.0.2.200", events.Data{Reason: "bad_password"})
	}

	alert := func(min int, id, rule, typ, sev, user, ip, action, result string, sids ...string) {
		f.alerts = append(f.alerts, events.Alert{
			ID: id, Time: at(min), Rule: rule, RuleType: typ, RuleVersion: "v1", Severity: sev, UserID: user,
			SessionIDs: sids, IP: ip, Action: action, Mode: "enforce", ActionResult: result,
			Summary: rule + " for " + user + ip,
		})
	}
	alert(10, "al-travel", "impossible-travel", "impossible_travel", "high", "alice", "", "reauth", "done", "07Sa2")
	alert(12, "al-shared", "shared-session", "shared_session", "high", "alice", "", "revoke_session", "done", "07Sa1")
	alert(15, "al-brute", "brute-force", "brute_force", "medium", "frank", "", "alert", "none")
	alert(16, "al-stuffing", "credential-stuffing", "credential_stuffing", "critical", "", "192.0.2.200", "alert", "none")
	alert(30, "al-country", "new-country", "new_country", "low", "carol", "", "alert", "none", "01Sc1")
	alert(31, "al-burst", "session-burst", "request_burst", "medium", "bob", "", "revoke_session", "failed", "03Sb1")

	action := func(min int, id, kind, actor, act, alertID, rule, user, sid, result, errCode string) {
		f.actions = append(f.actions, events.Action{
			ID: id, Time: at(min), Kind: kind, Actor: actor, Action: act, AlertID: alertID, Rule: rule,
			UserID: user, SessionID: sid, Result: result, Error: errCode, Attempts: 1,
		})
	}
	action(11, "ac-1", events.KindEnforcement, "detector", "reauth", "al-travel", "impossible-travel", "alice", "07Sa2", events.ResultDone, "")
	action(13, "ac-2", events.KindEnforcement, "detector", "revoke_session", "al-shared", "shared-session", "alice", "07Sa1", events.ResultDone, "")
	action(32, "ac-3", events.KindEnforcement, "detector", "revoke_session", "al-burst", "session-burst", "bob", "03Sb1", events.ResultFailed, "session_not_found")
	action(39, "ac-4", events.KindReview, "rita", "revoke_session", "al-country", "new-country", "carol", "01Sc1", events.ResultDone, "")
	action(41, "ac-5", events.KindReview, "rita", "resolve", "al-country", "new-country", "carol", "", events.ResultDone, "")
	return f
}

// write stores the fixture through the audit writer's batches, in the
// given order of rows (each order is a batch with its own deduplication
// token, so writing twice stores every row twice, as a redelivery after
// a crash does).
func (f *fixture) write(t *testing.T, s *clickhouse.Store, o clickhouse.WriterOptions, reverse bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	order := func(n int) []int {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		if reverse {
			slices.Reverse(idx)
		}
		return idx
	}
	eb := s.NewEventBatch(o)
	for _, i := range order(len(f.events)) {
		if err := eb.AddEvent(f.events[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := eb.Write(ctx); err != nil {
		t.Fatal(err)
	}
	ab := s.NewAlertBatch(o)
	for _, i := range order(len(f.alerts)) {
		if err := ab.AddAlert(f.alerts[i], "detector"); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range order(len(f.actions)) {
		src := "detector"
		if f.actions[i].Kind == events.KindReview {
			src = "alerter"
		}
		if err := ab.AddAction(f.actions[i], src); err != nil {
			t.Fatal(err)
		}
	}
	if err := ab.Write(ctx); err != nil {
		t.Fatal(err)
	}
}

// result is a query's columns and rows, values formatted.
type result struct {
	columns []string
	types   []string
	rows    [][]string
}

func runQuery(ctx context.Context, conn driver.Conn, sql string) (*result, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	r := &result{columns: rows.Columns()}
	cts := rows.ColumnTypes()
	for _, ct := range cts {
		r.types = append(r.types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		vals := make([]any, len(cts))
		for i, ct := range cts {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, err
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			switch v := reflect.ValueOf(v).Elem().Interface().(type) {
			case time.Time:
				row[i] = v.UTC().Format(time.RFC3339Nano)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		r.rows = append(r.rows, row)
	}
	return r, rows.Err()
}

// TestSecurityQueries runs every ClickHouse query of the dashboards, its
// macros expanded, against the real ClickHouse holding the project's
// schema (migrated by the audit writer's own code) and the fixture written
// through the audit writer's batches. Every query returns rows; a time
// series query returns its time first, in order; and writing every row a
// second time (as a redelivery does) changes no result.
func TestSecurityQueries(t *testing.T) {
	conn := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, conn)
	store, err := clickhouse.Open(clickhouse.Config{URL: "clickhouse://" + testenv.ClickHouseAddr() + "/" + db, RetentionMonths: 13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Duplicates stay until the test ends: no merge collapses them.
	for _, tbl := range []string{clickhouse.TableSessionEvents, clickhouse.TableAlerts, clickhouse.TableActions} {
		if err := conn.Exec(ctx, "SYSTEM STOP MERGES "+db+"."+tbl); err != nil {
			t.Fatal(err)
		}
	}

	// The audit writer's GeoIP: the test databases built from the
	// project's CSV of networks.
	paths := geotest.MustBuild(t)
	res, err := geo.Open(geo.Config{CityDB: paths.City})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Close() })
	policy, err := audit.NewIPPolicy(nil, res)
	if err != nil {
		t.Fatal(err)
	}
	wo := clickhouse.WriterOptions{IP: policy}

	now := time.Now().UTC()
	base := now.Add(-2 * time.Hour).Truncate(time.Minute)
	fx := newFixture(base)
	fx.write(t, store, wo, false)

	// A connection as the plugin makes one: native protocol, the data
	// source's defaultDatabase as the connection's database.
	panelConn, err := ch.Open(&ch.Options{
		Addr: []string{testenv.ClickHouseAddr()},
		Auth: ch.Auth{Database: db, Username: "default"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = panelConn.Close() })

	mq := macroQuery{From: now.Add(-6 * time.Hour), To: now.Add(time.Minute), Interval: time.Minute}
	var qs []query
	for _, q := range queries(t, loadDashboards(t)) {
		if q.ds.Type == typeClickHouse {
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		t.Fatal("no ClickHouse queries")
	}
	run := func() map[string]*result {
		out := map[string]*result{}
		for _, q := range qs {
			sql, err := expandMacros(q.target.RawSQL, mq)
			if err != nil {
				t.Errorf("%s: %v", q, err)
				continue
			}
			r, err := runQuery(ctx, panelConn, sql)
			if err != nil {
				t.Errorf("%s: %v\n%s", q, err, sql)
				continue
			}
			out[q.String()] = r
			if len(r.rows) == 0 {
				t.Errorf("%s: no rows\n%s", q, sql)
				continue
			}
			if *q.target.Format == formatTimeSeries {
				if !strings.HasPrefix(r.types[0], "DateTime") {
					t.Errorf("%s: a time series query's first column is its time; %s is a %s", q, r.columns[0], r.types[0])
				}
				for i := 1; i < len(r.rows); i++ {
					if r.rows[i][0] < r.rows[i-1][0] {
						t.Errorf("%s: rows not in time order: %s after %s", q, r.rows[i][0], r.rows[i-1][0])
						break
					}
				}
			}
		}
		return out
	}
	first := run()
	if testing.Verbose() {
		for _, q := range qs {
			if r := first[q.String()]; r != nil {
				t.Logf("%s: %v %v", q, r.columns, r.rows)
			}
		}
	}

	// Spot checks of what the fixture holds.
	byTitle := func(title string) *result {
		for _, q := range qs {
			if q.panel.Title == title {
				return first[q.String()]
			}
		}
		t.Fatalf("no panel %q", title)
		return nil
	}
	for title, want := range map[string][][]string{
		"Sessions created":      {{"8"}},
		"Failed logins":         {{"17"}},
		"Alerts":                {{"6"}},
		"Users alerted":         {{"4"}},
		"Sessions revoked":      {{"2"}},
		"Failed enforcements":   {{"1"}},
		"Sessions by country":   {{"US", "3"}, {"AU", "1"}, {"FR", "1"}, {"GB", "1"}, {"JP", "1"}, {"unknown", "1"}},
		"Revocations by reason": {{"reviewer decision", "1"}, {"shared_session", "1"}},
		"Failed logins by country": {
			{"BR", "12", "1", "3"}, {"DE", "5", "5", "1"},
		},
	} {
		r := byTitle(title)
		if r == nil {
			continue
		}
		if !reflect.DeepEqual(r.rows, want) {
			t.Errorf("%s: rows %v, want %v", title, r.rows, want)
		}
	}
	if r := byTitle("Top users by alerts"); r != nil && (len(r.rows) != 4 || r.rows[0][0] != "alice" || r.rows[0][1] != "2" || r.rows[0][3] != "high") {
		t.Errorf("Top users by alerts: %v, want alice first with 2 alerts, highest high", r.rows)
	}
	if r := byTitle("Recent high and critical alerts"); r != nil && len(r.rows) != 3 {
		t.Errorf("Recent high and critical alerts: %d rows, want 3", len(r.rows))
	}

	// Every row again, in other batches: each table now holds every row
	// twice, and no panel may count one twice.
	fx.write(t, store, wo, true)
	for tbl, n := range map[string]int{
		clickhouse.TableSessionEvents: len(fx.events), clickhouse.TableAlerts: len(fx.alerts), clickhouse.TableActions: len(fx.actions),
	} {
		var got uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+tbl).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != uint64(2*n) {
			t.Fatalf("%s holds %d rows, want every row twice (%d)", tbl, got, 2*n)
		}
	}
	second := run()
	for _, q := range qs {
		a, b := first[q.String()], second[q.String()]
		if a != nil && b != nil && !reflect.DeepEqual(a.rows, b.rows) {
			t.Errorf("%s: rows written twice change the result:\nonce:  %v\ntwice: %v", q, a.rows, b.rows)
		}
	}
	t.Logf("%d ClickHouse queries", len(qs))
}
