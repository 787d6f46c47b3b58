package clickhouse

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// testStore returns a migrated store on a database of the test's own.
func testStore(t testing.TB, retention int) *Store {
	t.Helper()
	conn := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, conn)
	return openStore(t, db, retention)
}

func openStore(t testing.TB, db string, retention int) *Store {
	t.Helper()
	s, err := Open(Config{URL: "clickhouse://" + testenv.ClickHouseAddr() + "/" + db, RetentionMonths: retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func scalar[T any](t testing.TB, s *Store, q string, args ...any) T {
	t.Helper()
	var v T
	if err := s.conn.QueryRow(ctxT(t), q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func TestParseURL(t *testing.T) {
	cases := []struct{ url, want string }{
		{"", `scheme ""`},
		{"http://127.0.0.1:8123/x", `scheme "http"`},
		{"clickhouse://127.0.0.1:9000", "no database"},
		{"clickhouse://127.0.0.1:9000/a-b", `database "a-b"`},
		{"clickhouse://127.0.0.1:9000/x;drop", `database "x;drop"`},
		{"clickhouse://u:secretpw@127.0.0.1:9000/db?dial_timeout=nope", "dial_timeout"},
	}
	for _, c := range cases {
		_, _, err := ParseURL(c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%q: the error shows the password: %v", c.url, err)
		}
	}
	opts, db, err := ParseURL(DefaultURL)
	if err != nil || db != "sessionmon" || opts.Addr[0] != "127.0.0.1:9000" {
		t.Fatalf("default URL: %v %q %v", opts, db, err)
	}
	if got := Redact("clickhouse://u:secretpw@h:9000/db"); strings.Contains(got, "secretpw") {
		t.Fatalf("Redact: %s", got)
	}
}

func TestMigrate(t *testing.T) {
	s := testStore(t, 13)
	ctx := ctxT(t)
	applied, err := s.AppliedMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := Migrations()
	if len(applied) != len(all) || len(all) < 3 {
		t.Fatalf("applied %v, migrations %d", applied, len(all))
	}
	for i, a := range applied {
		if a.Version != all[i].Version || a.Checksum != all[i].Checksum {
			t.Fatalf("applied %+v, want %+v", a, all[i])
		}
	}
	// Again: nothing to do.
	again, err := s.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Migrate: %v %v", again, err)
	}

	// The schema the issue asks for.
	for _, tc := range []struct{ table, column, typ string }{
		{TableSessionEvents, "type", "LowCardinality(String)"},
		{TableSessionEvents, "reason", "LowCardinality(String)"},
		{TableSessionEvents, "ip", "IPv6"},
		{TableSessionEvents, "time", "DateTime64(3, 'UTC')"},
		{TableAlerts, "rule", "LowCardinality(String)"},
		{TableAlerts, "ip", "IPv6"},
		{TableAlerts, "time", "DateTime64(3, 'UTC')"},
		{TableActions, "action", "LowCardinality(String)"},
		{TableActions, "time", "DateTime64(3, 'UTC')"},
	} {
		got := scalar[string](t, s, "SELECT type FROM system.columns WHERE database = ? AND table = ? AND name = ?", s.dbName, tc.table, tc.column)
		if got != tc.typ {
			t.Errorf("%s.%s: %s, want %s", tc.table, tc.column, got, tc.typ)
		}
	}
	for _, table := range []string{TableSessionEvents, TableAlerts, TableActions} {
		engine := scalar[string](t, s, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", s.dbName, table)
		for _, want := range []string{"ReplacingMergeTree", "PARTITION BY toYYYYMM(time)", "ORDER BY (user_id, time, id)", ttlClause(13), "non_replicated_deduplication_window = 1000"} {
			if !strings.Contains(engine, want) {
				t.Errorf("%s: engine %q lacks %q", table, engine, want)
			}
		}
	}

	// Retention follows the setting, both ways.
	for _, months := range []int{6, 0, 13} {
		s2 := openStore(t, s.dbName, months)
		engine := scalar[string](t, s2, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", s.dbName, TableSessionEvents)
		if months == 0 && strings.Contains(engine, " TTL ") || months > 0 && !strings.Contains(engine, ttlClause(months)+" ") {
			t.Fatalf("retention %d: engine %q", months, engine)
		}
	}
}

func TestMigrateRefusesChangedMigration(t *testing.T) {
	s := testStore(t, 13)
	ctx := ctxT(t)
	err := s.conn.Exec(ctx, "INSERT INTO "+s.table(TableMigrations)+" (version, name, checksum, applied_at) VALUES (2, 'alerts', 'deadbeef', now64(3))")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "migration 0002_alerts was applied with checksum deadbeef") {
		t.Fatalf("Migrate: %v", err)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	conn := testenv.ClickHouse(t)
	db := testenv.ClickHouseDatabase(t, conn)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		s, err := Open(Config{URL: "clickhouse://" + testenv.ClickHouseAddr() + "/" + db, RetentionMonths: 13})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Go(func() {
			_, err := s.Migrate(ctxT(t))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, db, 13)
	if n := scalar[uint64](t, s, "SELECT uniqExact(version) FROM "+s.table(TableMigrations)); n != 3 {
		t.Fatalf("versions recorded: %d", n)
	}
}

func TestLoadMigrationsErrors(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	cases := []struct {
		fs   fstest.MapFS
		want string
	}{
		{fstest.MapFS{"m/0001_a.sql": file("x"), "m/readme.txt": file("")}, "readme.txt: name must be NNNN_name.sql"},
		{fstest.MapFS{"m/0001_a.sql": file("x"), "m/0003_c.sql": file("")}, "version 0003 where 0002 was expected"},
		{fstest.MapFS{"m/0002_a.sql": file("x")}, "version 0002 where 0001 was expected"},
	}
	for _, c := range cases {
		_, err := loadMigrations(c.fs, "m")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}

func TestMigrationStatements(t *testing.T) {
	m := Migration{SQL: "-- a comment;\nCREATE TABLE {{db}}.a (x UInt8)\nENGINE = Log;\n\n-- b\nALTER TABLE {{db}}.a ADD COLUMN IF NOT EXISTS y UInt8;\nSELECT 1"}
	got := m.Statements("`d`")
	want := []string{"CREATE TABLE `d`.a (x UInt8)\nENGINE = Log", "ALTER TABLE `d`.a ADD COLUMN IF NOT EXISTS y UInt8", "SELECT 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// The embedded ones parse and name the database in every statement.
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		for _, st := range m.Statements("`d`") {
			if !strings.Contains(st, "`d`.") {
				t.Errorf("%04d_%s: statement without the database: %s", m.Version, m.Name, st)
			}
		}
	}
}

var _ = events.Types

// FuzzParseURL: CLICKHOUSE_URL is the one setting the adapter decodes
// itself; whatever it is given, it does not panic, accepts only a
// database name that is safe to put in SQL, and never repeats a password.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{DefaultURL, "clickhouse://u:pw@h:9000,h2:9000/db?dial_timeout=1s&secure=true", "clickhouse://h/a`b", "clickhouse://%zz", "clickhouse://u:pw@h/x y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, db, err := ParseURL(raw)
		if err == nil && !dbNameRE.MatchString(db) {
			t.Fatalf("%q: database %q accepted", raw, db)
		}
		if err != nil {
			if u, perr := url.Parse(raw); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) > 3 && strings.Count(raw, pw) == 1 && strings.Contains(err.Error(), pw) {
					t.Fatalf("%q: the error shows the password: %v", raw, err)
				}
			}
		}
	})
}
