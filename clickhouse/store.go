// Package clickhouse is the ClickHouse adapter of the audit trail: the
// schema (versioned migrations embedded in the binary, applied at start),
// the batches the audit writer inserts into session_events, alerts and
// actions, and the queries of the trail (a user's timeline and session
// history, the session-ending check, events of a time range).
//
// Every row is keyed by its event, alert or action ID, and the tables are
// ReplacingMergeTree with the ID in the sorting key: an event written twice
// (a retried batch, a writer killed between its insert and its JetStream
// ack) is one row to every query here, which read with FINAL, LIMIT 1 BY id
// or uniqExact(id), and one row on disk once parts merge. A retried batch
// also carries an insert_deduplication_token, so the second copy usually
// never reaches the table at all.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultURL is the ClickHouse of CLICKHOUSE_URL when it is not set.
const DefaultURL = "clickhouse://127.0.0.1:9000/sessionmon"

// DefaultRetentionMonths is how long the audit log keeps rows by default:
// PCI DSS 10.5.1 asks for 12 months, 3 of them at hand; 13 gives a month of
// margin.
const DefaultRetentionMonths = 13

// Config configures a Store.
type Config struct {
	// URL is clickhouse://[user[:password]@]host:port[,host:port]/database[?options]
	// (clickhouse-go's DSN: dial_timeout, read_timeout, secure, compress, ...).
	URL string
	// RetentionMonths is the TTL of every table: rows are kept at least
	// this long (whole parts are dropped once all their rows are older).
	// 0 keeps everything.
	RetentionMonths int
	Log             *slog.Logger
	Metrics         *Metrics
}

// Store is the audit trail in ClickHouse.
type Store struct {
	conn      driver.Conn
	db        string // the database, quoted for SQL
	dbName    string
	retention int
	log       *slog.Logger
	m         *Metrics
}

var dbNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// ParseURL checks a ClickHouse URL and returns its options and database.
// Errors never repeat the password.
func ParseURL(raw string) (*ch.Options, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", errors.New("not a URL")
	}
	if u.Scheme != "clickhouse" {
		return nil, "", fmt.Errorf("scheme %q: want clickhouse:// (the native protocol)", u.Scheme)
	}
	opts, err := ch.ParseDSN(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", Redact(raw), err)
	}
	db := opts.Auth.Database
	if db == "" {
		return nil, "", errors.New("no database in the path (e.g. clickhouse://127.0.0.1:9000/sessionmon)")
	}
	if !dbNameRE.MatchString(db) {
		return nil, "", fmt.Errorf("database %q: want letters, digits and _ (up to 64)", db)
	}
	return opts, db, nil
}

// Redact returns a ClickHouse URL without its password, for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// Open connects to ClickHouse. It does not wait for the server: Migrate
// and Ping tell whether it answers.
func Open(cfg Config) (*Store, error) {
	opts, db, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.RetentionMonths < 0 {
		return nil, fmt.Errorf("retention: %d months, want 0 (keep) or more", cfg.RetentionMonths)
	}
	// Connect to the user's default database: ours may not exist yet.
	// Every statement names its tables with the database.
	opts.Auth.Database = ""
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	if opts.Settings == nil {
		opts.Settings = ch.Settings{}
	}
	// The writer batches itself; a server default of async inserts would
	// add latency and a second, weaker de-duplication.
	opts.Settings["async_insert"] = 0
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", Redact(cfg.URL), err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Store{conn: conn, db: "`" + db + "`", dbName: db, retention: cfg.RetentionMonths, log: log, m: m}, nil
}

// Database is the name of the store's database.
func (s *Store) Database() string { return s.dbName }

// Conn is the store's connection, for tests and tools.
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		s.m.errors.WithLabelValues("ping").Inc()
		return fmt.Errorf("clickhouse ping: %w", err)
	}
	return nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.conn.Close() }

// table returns the quoted name of a table of the store's database.
func (s *Store) table(name string) string { return s.db + ".`" + name + "`" }
