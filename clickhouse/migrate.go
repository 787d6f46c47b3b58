package clickhouse

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Tables of the audit trail.
const (
	TableSessionEvents = "session_events"
	TableAlerts        = "alerts"
	TableActions       = "actions"
	TableMigrations    = "schema_migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned schema change: migrations/NNNN_name.sql.
// Statements are separated by a semicolon at the end of a line; {{db}}
// stands for the database. Every statement must be idempotent (IF NOT
// EXISTS, ADD COLUMN IF NOT EXISTS, ...): two writers starting at once may
// both apply a migration before either records it. An applied migration
// is never edited: Migrate refuses to run when an applied migration's
// checksum differs from the binary's.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string // SHA-256 of the file, hex
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) { return loadMigrations(migrationFS, "migrations") }

func loadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrations: %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: version %04d where %04d was expected (versions start at 1, no gaps or repeats)", m.Version, i+1)
		}
	}
	return out, nil
}

// Statements splits a migration into statements, {{db}} replaced by db.
func (m Migration) Statements(db string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(m.SQL) {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			if s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")); s != "" {
				out = append(out, strings.ReplaceAll(s, "{{db}}", db))
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, strings.ReplaceAll(s, "{{db}}", db))
	}
	return out
}

// AppliedMigration is a row of schema_migrations.
type AppliedMigration struct {
	Version   int
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// Migrate creates the database and the schema_migrations table if
// needed, applies the migrations not yet applied, in order, and sets the
// tables' retention. It returns the versions it applied.
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	applied, err := s.migrate(ctx)
	if err != nil {
		s.m.errors.WithLabelValues("migrate").Inc()
		return applied, err
	}
	if err := s.ApplyRetention(ctx); err != nil {
		s.m.errors.WithLabelValues("migrate").Inc()
		return applied, err
	}
	return applied, nil
}

func (s *Store) migrate(ctx context.Context) ([]int, error) {
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
		return nil, fmt.Errorf("create database %s: %w", s.dbName, err)
	}
	err = s.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table(TableMigrations)+` (
		version    UInt32,
		name       String,
		checksum   String,
		applied_at DateTime64(3, 'UTC')
	) ENGINE = ReplacingMergeTree ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", TableMigrations, err)
	}
	done, err := s.AppliedMigrations(ctx)
	if err != nil {
		return nil, err
	}
	byVersion := map[int]AppliedMigration{}
	for _, a := range done {
		byVersion[a.Version] = a
	}
	for _, a := range done {
		if a.Version > len(all) {
			// A newer binary migrated: this one can still write, as
			// migrations only add; say so.
			s.log.Warn("the database has a migration this binary does not know; it was applied by a newer version",
				"version", a.Version, "name", a.Name)
		}
	}
	var applied []int
	for _, m := range all {
		if a, ok := byVersion[m.Version]; ok {
			if a.Checksum != m.Checksum {
				return applied, fmt.Errorf("migration %04d_%s was applied with checksum %.12s but this binary has %.12s: applied migrations must never change; add a new one",
					m.Version, m.Name, a.Checksum, m.Checksum)
			}
			continue
		}
		for i, stmt := range m.Statements(s.db) {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %04d_%s, statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		err := s.conn.Exec(ctx, "INSERT INTO "+s.table(TableMigrations)+" (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
			uint32(m.Version), m.Name, m.Checksum, time.Now().UTC())
		if err != nil {
			return applied, fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
		}
		s.log.Info("applied migration", "version", m.Version, "name", m.Name, "database", s.dbName)
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// AppliedMigrations lists schema_migrations in version order.
func (s *Store) AppliedMigrations(ctx context.Context) ([]AppliedMigration, error) {
	rows, err := s.conn.Query(ctx, "SELECT version, argMax(name, applied_at), argMax(checksum, applied_at), max(applied_at) FROM "+
		s.table(TableMigrations)+" GROUP BY version ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", TableMigrations, err)
	}
	defer rows.Close()
	var out []AppliedMigration
	for rows.Next() {
		var a AppliedMigration
		var v uint32
		if err := rows.Scan(&v, &a.Name, &a.Checksum, &a.AppliedAt); err != nil {
			return nil, fmt.Errorf("read %s: %w", TableMigrations, err)
		}
		a.Version = int(v)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", TableMigrations, err)
	}
	return out, nil
}

// ttlClause is the retention of a table as ClickHouse writes it back in
// system.tables.engine_full.
func ttlClause(months int) string {
	return fmt.Sprintf("TTL toDateTime(time) + toIntervalMonth(%d)", months)
}

// ApplyRetention sets every table's TTL to the configured retention (or
// removes it for 0) where it differs. Tables keep whole parts until every
// row in them is older than the retention (ttl_only_drop_parts), so a
// change never rewrites data.
func (s *Store) ApplyRetention(ctx context.Context) error {
	for _, t := range []string{TableSessionEvents, TableAlerts, TableActions} {
		var engine string
		if err := s.conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", s.dbName, t).Scan(&engine); err != nil {
			return fmt.Errorf("retention of %s: %w", t, err)
		}
		hasTTL := strings.Contains(engine, " TTL ")
		var stmt string
		switch {
		case s.retention == 0 && hasTTL:
			stmt = "ALTER TABLE " + s.table(t) + " REMOVE TTL"
		case s.retention > 0 && !strings.Contains(engine, ttlClause(s.retention)+" "):
			stmt = fmt.Sprintf("ALTER TABLE %s MODIFY TTL toDateTime(time) + INTERVAL %d MONTH", s.table(t), s.retention)
		default:
			continue
		}
		if err := s.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("retention of %s: %w", t, err)
		}
		s.log.Info("set retention", "table", t, "months", s.retention)
	}
	return nil
}
