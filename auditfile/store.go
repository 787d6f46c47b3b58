// Package auditfile is an audit log that needs no server: JSON-lines files
// in a directory, one a month, with every user's timeline indexed in
// memory. It is the audit store of the one-process pipeline (cmd/sessionmon)
// and implements audit.Timeline for its console. Production runs write to
// ClickHouse (package clickhouse), which scales, keeps years and answers
// the compliance queries.
//
// Each line is one entry of the audit trail (an event, an alert or an
// action) as the console shows it, with its user:
//
//	{"user_id":"u-0042","time":"2026-11-22T10:00:00.123Z","kind":"event","id":"…","type":"session.created",…}
//
// Writes are exactly-once as seen by a reader: an entry whose kind and ID
// are already stored is skipped, so a batch redelivered after a crash adds
// nothing twice. A batch is written and synced before Write returns, and
// the consumer acks JetStream only after that. A write that fails part way
// is cut off again, and a line left half-written by a crash is dropped when
// the store is opened.
package auditfile

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sessionmon/sessionmon/audit"
)

// Options configure a Store.
type Options struct {
	// IP decides what is kept of addresses (nil: the addresses).
	IP *audit.IPPolicy
	// RetentionMonths: files of months older than this are deleted when
	// the store opens (default 13).
	RetentionMonths int
	Log             *slog.Logger
	Now             func() time.Time
}

// DefaultRetentionMonths is the default retention, as for ClickHouse.
const DefaultRetentionMonths = 13

// MaxTimelineEntries bounds UserTimeline.
const MaxTimelineEntries = 10000

// record is one line of a file.
type record struct {
	UserID string `json:"user_id"`
	audit.Entry
}

// Store is the audit log in a directory. It is safe for concurrent use.
type Store struct {
	dir string
	o   Options

	mu     sync.RWMutex
	seen   map[string]struct{} // kind/id of every stored entry
	byUser map[string][]audit.Entry
	f      *os.File
	month  string // of f: 2006-01
	size   int64  // of f: the end of its last whole line
	rows   int
}

var fileName = regexp.MustCompile(`^audit-(\d{4}-\d{2})\.jsonl$`)

// Open opens the store in dir (created if missing), deletes the files
// past the retention and reads the rest into the index.
func Open(dir string, o Options) (*Store, error) {
	if o.RetentionMonths <= 0 {
		o.RetentionMonths = DefaultRetentionMonths
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	s := &Store{dir: dir, o: o, seen: map[string]struct{}{}, byUser: map[string][]audit.Entry{}}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	oldest := o.Now().UTC().AddDate(0, -o.RetentionMonths, 0).Format("2006-01")
	var months []string
	for _, n := range names {
		m := fileName.FindStringSubmatch(n.Name())
		if m == nil || n.IsDir() {
			continue
		}
		if m[1] < oldest {
			o.Log.Info("audit log: deleting a file past the retention", "file", n.Name(), "retention_months", o.RetentionMonths)
			if err := os.Remove(filepath.Join(dir, n.Name())); err != nil {
				return nil, fmt.Errorf("audit log: %w", err)
			}
			continue
		}
		months = append(months, m[1])
	}
	slices.Sort(months)
	for i, m := range months {
		if err := s.load(m, i == len(months)-1); err != nil {
			return nil, err
		}
	}
	for u := range s.byUser {
		sortEntries(s.byUser[u])
	}
	return s, nil
}

func (s *Store) path(month string) string {
	return filepath.Join(s.dir, "audit-"+month+".jsonl")
}

// load reads one month's file into the index. In the newest file a last
// line without its newline is what a crash mid-write leaves: it is cut
// off. Anywhere else a bad line is an error naming the file and line.
func (s *Store) load(month string, newest bool) error {
	path := s.path(month)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	whole := bytes.LastIndexByte(data, '\n') + 1
	if whole < len(data) {
		if !newest {
			return fmt.Errorf("audit log: %s: the last line is incomplete", path)
		}
		s.o.Log.Warn("audit log: dropping a line left incomplete by a crash", "file", path, "bytes", len(data)-whole)
		if err := os.Truncate(path, int64(whole)); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		data = data[:whole]
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("audit log: %s:%d: %w", path, line, err)
		}
		s.index(r)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log: %s: %w", path, err)
	}
	return nil
}

func key(kind, id string) string { return kind + "/" + id }

// index adds a record to the in-memory index.
func (s *Store) index(r record) {
	s.seen[key(r.Kind, r.ID)] = struct{}{}
	s.byUser[r.UserID] = append(s.byUser[r.UserID], r.Entry)
	s.rows++
}

// sortEntries orders a timeline newest first, as ClickHouse answers it.
func sortEntries(es []audit.Entry) {
	slices.SortStableFunc(es, func(a, b audit.Entry) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.ID, b.ID))
	})
}

// append writes records not stored yet to the current month's file,
// syncs it and indexes them. On an error the file is cut back to where it
// was, so that the retry writes the same lines once.
func (s *Store) append(recs []record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var buf bytes.Buffer
	var fresh []record
	batch := map[string]struct{}{}
	for _, r := range recs {
		k := key(r.Kind, r.ID)
		if _, dup := s.seen[k]; dup {
			continue
		}
		if _, dup := batch[k]; dup {
			continue
		}
		batch[k] = struct{}{}
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
		fresh = append(fresh, r)
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := s.openMonth(); err != nil {
		return err
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		return s.undo(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.undo(err)
	}
	s.size += int64(buf.Len())
	touched := map[string]struct{}{}
	for _, r := range fresh {
		s.index(r)
		touched[r.UserID] = struct{}{}
	}
	for u := range touched {
		sortEntries(s.byUser[u])
	}
	return nil
}

// undo cuts the file back after a failed write.
func (s *Store) undo(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		err = errors.Join(err, terr)
	}
	_, _ = s.f.Seek(s.size, io.SeekStart)
	return fmt.Errorf("audit log: writing %s: %w", s.f.Name(), err)
}

// openMonth makes f the file of the current month.
func (s *Store) openMonth() error {
	month := s.o.Now().UTC().Format("2006-01")
	if s.f != nil && s.month == month {
		return nil
	}
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		s.f = nil
	}
	f, err := os.OpenFile(s.path(month), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	s.f, s.month, s.size = f, month, end
	return nil
}

// Close closes the current file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Ping reports whether the directory is still there.
func (s *Store) Ping(context.Context) error {
	if _, err := os.Stat(s.dir); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// Rows is the number of stored entries.
func (s *Store) Rows() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rows
}

// UserTimeline implements audit.Timeline: a user's events, alerts and
// actions in [from, to), newest first, at most limit (default 500, at
// most MaxTimelineEntries). Zero times leave the range open.
func (s *Store) UserTimeline(_ context.Context, userID string, from, to time.Time, limit int) ([]audit.Entry, error) {
	if limit <= 0 {
		limit = 500
	}
	limit = min(limit, MaxTimelineEntries)
	s.mu.RLock()
	defer s.mu.RUnlock()
	es := s.byUser[userID]
	// Newest first: the entries before to start at the first index whose
	// time is before to.
	i := 0
	if !to.IsZero() {
		i = sort.Search(len(es), func(i int) bool { return es[i].Time.Before(to) })
	}
	out := []audit.Entry{}
	for ; i < len(es) && len(out) < limit; i++ {
		if !from.IsZero() && es[i].Time.Before(from) {
			break
		}
		out = append(out, es[i])
	}
	return out, nil
}
