// Package memstore is the in-process session store: sessions, per-user
// indexes, the expiry schedule and the transactional outbox of events, all
// in memory. It serves the one-command demo pipeline and tests; it has the
// semantics of redisstore (it passes the same contract suite,
// sessions/sessionstest) without a server to install. Nothing survives the
// process: a restart forgets every session, and events not yet relayed when
// the process exits are gone.
//
// The layout follows redisstore's keys, one shard per partition of the event
// stream (events.PartitionOf of the user, also the first two characters of
// every session ID):
//
//	sessions  map    the session records (token stored as SHA-256)
//	users     map    live sessions of a user, by creation
//	sched     heap   every record by its next due time (sweeper)
//	outbox    queue  the partition's events, relayed to JetStream
//
// Each operation runs under its partition's mutex, as one Redis function
// runs on its partition's hash slot: the change and its events are committed
// in one step, and the events enter the partition's outbox in commit order.
//
// The outbox is bounded (Options.MaxOutbox). While it is full, every
// operation that would write an event fails with sessions.ErrUnavailable
// (and ErrOutboxFull): the service fails closed (503) instead of dropping
// events, until the Relay has published enough of them. Reads (List) go on.
// The bound is checked when an operation starts; an admitted operation
// commits all its events, so the outbox can pass the bound by the events of
// the operations admitted at that moment (at most one per partition, each a
// few events plus one per session of one user it ends).
//
// Secrets never enter the store: it keeps the SHA-256 of each token's secret
// (and of the last four rotated ones), as redisstore does, and compares them
// in constant time.
package memstore

import (
	"container/heap"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/sessions"
)

// DefaultTombstone is how long a dead session is kept after its absolute
// expiry, as in redisstore: until then a dead token answers session_revoked
// or session_expired, and its reuse is a session.rejected event.
const DefaultTombstone = 24 * time.Hour

// DefaultMaxOutbox is the default bound of the outbox, in events over all
// partitions. An event takes a few hundred bytes in memory, so the default
// holds tens of megabytes: minutes of a busy demo's traffic with NATS away.
const DefaultMaxOutbox = 100_000

// DefaultSweepBatch is how many schedule entries Sweep handles per lock
// hold when its caller passes no limit.
const DefaultSweepBatch = 500

// ErrOutboxFull is joined to sessions.ErrUnavailable when an operation is
// refused because the outbox holds Options.MaxOutbox events.
var ErrOutboxFull = errors.New("outbox full: events are not being published")

// Options configure a Store.
type Options struct {
	// Tombstone is DefaultTombstone when zero.
	Tombstone time.Duration
	// MaxOutbox bounds the events waiting to be relayed, over all
	// partitions; DefaultMaxOutbox when zero.
	MaxOutbox int
}

// Store is the in-memory session store. It implements sessions.Store.
type Store struct {
	parts     [events.Partitions]partition
	tombstone int64 // ms
	maxOutbox int64

	depth     atomic.Int64 // events in the outboxes
	active    atomic.Int64 // live sessions
	refused   atomic.Int64 // operations refused with the outbox full
	committed atomic.Int64 // events ever committed
	relaying  atomic.Bool  // a Relay runs

	// tap, when set (by tests, before any use), sees every committed event
	// with its partition, under the partition's lock: the commit order.
	tap func(partition int, e events.Event)
}

var _ sessions.Store = (*Store)(nil)

// partition is one shard: its sessions, users, schedule and outbox, and the
// mutex that makes each operation on them one atomic step.
type partition struct {
	mu       sync.Mutex
	sessions map[string]*record
	users    map[string][]*record // live sessions by (created, ID), like a zset
	sched    schedule
	outbox   outbox
	notify   chan struct{} // a commit added events; capacity 1
}

// record is a stored session. Times are Unix milliseconds on the service's
// clock, as in redisstore's hashes.
type record struct {
	id, uid, app string
	th           sessions.SecretHash    // SHA-256 of the token's secret
	pth          [4]sessions.SecretHash // hashes of previous secrets, newest first
	npth         int
	csrf         string
	st           sessions.State
	why          string // end or re-auth reason
	ca, la, ea   int64  // created, last seen, absolute expiry
	it           int64  // idle timeout
	ena          int64  // ended at
	retain       int64  // kept until: absolute expiry + tombstone
	ip, ua       string // of the last validated request
	attrs        map[string]string

	due int64 // schedule key: when the sweeper looks at it next
	idx int   // index in the schedule heap
}

func live(st sessions.State) bool {
	return st == sessions.StateActive || st == sessions.StateReauthRequired
}

// dueAt is when the session times out: idle or absolute, whichever first.
func (r *record) dueAt() int64 { return min(r.la+r.it, r.ea) }

// New returns an empty store.
func New(o Options) (*Store, error) {
	if o.Tombstone < 0 {
		return nil, fmt.Errorf("memstore tombstone: must not be negative, got %s", o.Tombstone)
	}
	if o.MaxOutbox < 0 {
		return nil, fmt.Errorf("memstore max outbox: must be positive (0: %d), got %d", DefaultMaxOutbox, o.MaxOutbox)
	}
	if o.Tombstone == 0 {
		o.Tombstone = DefaultTombstone
	}
	if o.MaxOutbox == 0 {
		o.MaxOutbox = DefaultMaxOutbox
	}
	s := &Store{tombstone: o.Tombstone.Milliseconds(), maxOutbox: int64(o.MaxOutbox)}
	for i := range s.parts {
		p := &s.parts[i]
		p.sessions = map[string]*record{}
		p.users = map[string][]*record{}
		p.notify = make(chan struct{}, 1)
	}
	return s, nil
}

// Depth returns the number of events waiting in the outboxes.
func (s *Store) Depth() int { return int(s.depth.Load()) }

// Active returns the number of live sessions (active or awaiting
// re-authentication), including timed-out ones the sweeper has not ended.
func (s *Store) Active() int { return int(s.active.Load()) }

// MaxOutbox returns the bound of the outbox.
func (s *Store) MaxOutbox() int { return int(s.maxOutbox) }

// admit refuses an operation that would write events when the context is
// done or the outbox is full.
func (s *Store) admit(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore %s: %w", op, err)
	}
	if s.depth.Load() >= s.maxOutbox {
		s.refused.Add(1)
		return sessions.Unavailable("memstore "+op, ErrOutboxFull)
	}
	return nil
}

// tx is one operation: it holds its partition's lock from begin to commit
// and appends its events to the partition's outbox.
type tx struct {
	s     *Store
	p     *partition
	pi    int // partition number
	now   int64
	evid  string
	actor string
	n     int // events emitted
}

func (s *Store) begin(partition int, op sessions.Op) tx {
	p := &s.parts[partition]
	p.mu.Lock()
	return tx{s: s, p: p, pi: partition, now: op.Now.UnixMilli(), evid: op.EventID, actor: op.Actor}
}

// commit ends the operation and wakes the relay of the partition.
func (t *tx) commit() {
	t.p.mu.Unlock()
	if t.n > 0 {
		select {
		case t.p.notify <- struct{}{}:
		default:
		}
	}
}

// emit appends one event to the partition's outbox, in the same step as
// the change it records. The first event of an operation has its ID; the
// following ones add "-1", "-2", ...
func (t *tx) emit(typ events.Type, r *record, ip, ua, reason, rule, path, prev string) {
	id := t.evid
	if t.n > 0 {
		id = t.evid + "-" + strconv.Itoa(t.n)
	}
	t.n++
	e := events.Event{
		ID: id, Type: typ, Source: sessions.EventSource, Time: time.UnixMilli(t.now).UTC(),
		Data: events.Data{
			SessionID: r.id, UserID: r.uid, App: r.app, IP: ip, UserAgent: ua, Reason: reason,
			Actor: t.actor, Rule: rule, Path: path, PreviousSessionID: prev,
		},
	}
	t.p.outbox.push(e)
	if t.s.tap != nil {
		t.s.tap(t.pi, e)
	}
	t.s.depth.Add(1)
	t.s.committed.Add(1)
}

// get returns a session record, or nil. A dead session past its tombstone
// is gone, as its Redis key would be. A live one is kept until the sweeper
// or an operation ends it, so that it still gets its ending event.
func (t *tx) get(sid string) *record {
	r := t.p.sessions[sid]
	if r == nil || (!live(r.st) && t.now >= r.retain) {
		return nil
	}
	return r
}

// endSession moves a live session to a final state and records it.
func (t *tx) endSession(r *record, st sessions.State, reason, rule string) {
	r.st, r.why, r.ena = st, reason, t.now
	t.unindex(r)
	r.due = r.retain
	heap.Fix(&t.p.sched, r.idx)
	t.s.active.Add(-1)
	t.emit(st.EventType(), r, r.ip, r.ua, reason, rule, "", "")
}

// expireIfDue ends a live session whose idle or absolute timeout passed.
func (t *tx) expireIfDue(r *record) bool {
	if live(r.st) && t.now >= r.dueAt() {
		reason := "idle_timeout"
		if t.now >= r.ea {
			reason = "absolute_timeout"
		}
		t.endSession(r, sessions.StateExpired, reason, "")
		return true
	}
	return false
}

// check authenticates a token's secret hash against a session and returns
// nil when the session may be used. Reuse of a dead or rotated token is
// recorded as session.rejected: replay after logout is a theft signal.
func (t *tx) check(r *record, th *sessions.SecretHash, owner, ip, ua, path string) error {
	if !ctEqHash(&r.th, th) {
		if r.inPrev(th) {
			t.emit(events.SessionRejected, r, ip, ua, "rotated_token", "", path, "")
			return sessions.ErrRevoked
		}
		t.emit(events.SessionRejected, r, ip, ua, "invalid_secret", "", path, "")
		return sessions.ErrNotFound
	}
	if owner != "" && r.app != owner {
		return sessions.ErrForbidden
	}
	t.expireIfDue(r)
	if r.st == sessions.StateActive {
		return nil
	}
	t.emit(events.SessionRejected, r, ip, ua, string(r.st), "", path, "")
	switch r.st {
	case sessions.StateExpired:
		return sessions.ErrExpired
	case sessions.StateReauthRequired:
		return sessions.ErrReauth
	}
	return sessions.ErrRevoked
}

// index adds a live session to its user's list, ordered by creation time
// and then ID, as a Redis sorted set orders equal scores.
func (t *tx) index(r *record) {
	l := t.p.users[r.uid]
	i := sort.Search(len(l), func(i int) bool { return l[i].ca > r.ca || (l[i].ca == r.ca && l[i].id > r.id) })
	l = append(l, nil)
	copy(l[i+1:], l[i:])
	l[i] = r
	t.p.users[r.uid] = l
}

func (t *tx) unindex(r *record) {
	l := t.p.users[r.uid]
	for i, x := range l {
		if x == r {
			copy(l[i:], l[i+1:])
			l[len(l)-1] = nil // no stale reference in the spare capacity
			l = l[:len(l)-1]
			break
		}
	}
	if len(l) == 0 {
		delete(t.p.users, r.uid)
	} else {
		t.p.users[r.uid] = l
	}
}

// userSessions returns a copy of a user's list, for loops that end
// sessions (and so change the list) while walking it.
func (t *tx) userSessions(buf []*record, uid string) []*record {
	return append(buf[:0], t.p.users[uid]...)
}

func sessionPartition(sid string) (int, bool) { return sessions.PartitionOfSessionID(sid) }

// Create implements sessions.Store.
func (s *Store) Create(ctx context.Context, n sessions.NewSession) ([]string, error) {
	if err := s.admit(ctx, "create"); err != nil {
		return nil, err
	}
	ss := n.Session
	p, ok := sessionPartition(ss.ID)
	if !ok {
		return nil, errors.New("memstore create: malformed session ID")
	}
	if up := events.PartitionOf(ss.UserID); up != p {
		return nil, fmt.Errorf("memstore create: session %s is in partition %d, its user in %d", ss.ID, p, up)
	}
	t := s.begin(p, n.Op)
	defer t.commit()
	if old := t.p.sessions[ss.ID]; old != nil {
		if t.get(ss.ID) != nil {
			return nil, errors.New("memstore create: session ID collision")
		}
		t.purge(old)
	}

	// End the user's sessions that timed out, so they do not count.
	var buf [8]*record
	for _, r := range t.userSessions(buf[:], ss.UserID) {
		t.expireIfDue(r)
	}
	evicted := []string{}
	l := t.p.users[ss.UserID]
	if most := n.Policy.MaxSessions; most > 0 && len(l) >= most {
		if n.Policy.LimitMode == sessions.LimitDeny {
			return nil, sessions.ErrLimit
		}
		// Evict the oldest, leaving room for this one.
		for _, r := range append(buf[:0], l[:len(l)-most+1]...) {
			t.endSession(r, sessions.StateEvicted, "max_sessions", "")
			evicted = append(evicted, r.id)
		}
	}

	r := &record{
		id: ss.ID, uid: ss.UserID, app: ss.App, th: n.SecretHash, csrf: ss.CSRFToken,
		st: sessions.StateActive, ca: t.now, la: t.now, ea: ss.ExpiresAt.UnixMilli(),
		it: n.Policy.IdleTimeout.Milliseconds(), ip: ss.IP, ua: ss.UserAgent,
	}
	r.retain = r.ea + s.tombstone
	if len(ss.Attributes) > 0 {
		r.attrs = maps.Clone(ss.Attributes)
	}
	t.p.sessions[r.id] = r
	t.index(r)
	r.due = r.dueAt()
	heap.Push(&t.p.sched, r)
	s.active.Add(1)
	t.emit(events.SessionCreated, r, r.ip, r.ua, "", "", "", n.Replaced)
	return evicted, nil
}

// Access implements sessions.Store.
func (s *Store) Access(ctx context.Context, a sessions.Access) (*sessions.Session, error) {
	if err := s.admit(ctx, "access"); err != nil {
		return nil, err
	}
	p, ok := sessionPartition(a.SessionID)
	if !ok {
		return nil, sessions.ErrNotFound
	}
	t := s.begin(p, a.Op)
	defer t.commit()
	r := t.get(a.SessionID)
	if r == nil {
		return nil, sessions.ErrNotFound
	}
	if err := t.check(r, &a.SecretHash, a.Owner, a.IP, a.UserAgent, a.Path); err != nil {
		return nil, err
	}
	if a.CSRFToken != "" && !ctEqString(r.csrf, a.CSRFToken) {
		t.emit(events.SessionRejected, r, a.IP, a.UserAgent, "csrf_mismatch", "", a.Path, "")
		return nil, sessions.ErrCSRF
	}
	// The schedule is not moved on each access: the sweeper reschedules a
	// session it finds not yet due (as redisstore does).
	r.la, r.ip, r.ua = t.now, a.IP, a.UserAgent
	t.emit(events.SessionAccessed, r, a.IP, a.UserAgent, "", "", a.Path, "")
	return r.session(true), nil
}

// Rotate implements sessions.Store.
func (s *Store) Rotate(ctx context.Context, rot sessions.Rotation) (*sessions.Session, error) {
	if err := s.admit(ctx, "rotate"); err != nil {
		return nil, err
	}
	p, ok := sessionPartition(rot.SessionID)
	if !ok {
		return nil, sessions.ErrNotFound
	}
	t := s.begin(p, rot.Op)
	defer t.commit()
	r := t.get(rot.SessionID)
	if r == nil {
		return nil, sessions.ErrNotFound
	}
	if err := t.check(r, &rot.SecretHash, rot.Owner, rot.IP, rot.UserAgent, rot.Path); err != nil {
		return nil, err
	}
	if rot.CSRFToken != "" && !ctEqString(r.csrf, rot.CSRFToken) {
		t.emit(events.SessionRejected, r, rot.IP, rot.UserAgent, "csrf_mismatch", "", rot.Path, "")
		return nil, sessions.ErrCSRF
	}
	// Keep the last four secret hashes, so reuse of a rotated token is seen.
	copy(r.pth[1:], r.pth[:len(r.pth)-1])
	r.pth[0] = r.th
	r.npth = min(r.npth+1, len(r.pth))
	r.th = rot.NewSecretHash
	r.csrf = rot.NewCSRFToken
	r.la, r.ip, r.ua = t.now, rot.IP, rot.UserAgent
	t.emit(events.SessionRegenerated, r, rot.IP, rot.UserAgent, "regenerate", "", rot.Path, "")
	return r.session(true), nil
}

// checkEnding refuses a state that ends no session: it would have no
// ending event.
func checkEnding(op string, st sessions.State) error {
	switch st {
	case sessions.StateTerminated, sessions.StateRevoked, sessions.StateReplaced, sessions.StateEvicted, sessions.StateExpired:
		return nil
	}
	return fmt.Errorf("memstore %s: %q is not an ending state", op, st)
}

// End implements sessions.Store.
func (s *Store) End(ctx context.Context, e sessions.End) error {
	if err := s.admit(ctx, "end"); err != nil {
		return err
	}
	if err := checkEnding("end", e.As); err != nil {
		return err
	}
	p, ok := sessionPartition(e.SessionID)
	if !ok {
		return sessions.ErrNotFound
	}
	t := s.begin(p, e.Op)
	defer t.commit()
	r := t.get(e.SessionID)
	if r == nil {
		return sessions.ErrNotFound
	}
	if e.SecretHash != nil && !ctEqHash(&r.th, e.SecretHash) {
		if r.inPrev(e.SecretHash) {
			t.emit(events.SessionRejected, r, r.ip, r.ua, "rotated_token", "", "", "")
			return sessions.ErrRevoked
		}
		t.emit(events.SessionRejected, r, r.ip, r.ua, "invalid_secret", "", "", "")
		return sessions.ErrNotFound
	}
	if e.Owner != "" && r.app != e.Owner {
		return sessions.ErrForbidden
	}
	if e.UserID != "" && r.uid != e.UserID {
		return sessions.ErrNotFound
	}
	if t.expireIfDue(r) {
		return nil
	}
	if !live(r.st) {
		// Ending a dead session changes nothing; presenting its token
		// again is a reuse worth recording.
		if e.SecretHash != nil {
			t.emit(events.SessionRejected, r, r.ip, r.ua, string(r.st), "", "", "")
		}
		return nil
	}
	t.endSession(r, e.As, e.Reason, e.Rule)
	return nil
}

// EndUser implements sessions.Store.
func (s *Store) EndUser(ctx context.Context, e sessions.EndUser) (int, error) {
	if err := s.admit(ctx, "end user"); err != nil {
		return 0, err
	}
	if err := checkEnding("end user", e.As); err != nil {
		return 0, err
	}
	t := s.begin(events.PartitionOf(e.UserID), e.Op)
	defer t.commit()
	var buf [8]*record
	n := 0
	for _, r := range t.userSessions(buf[:], e.UserID) {
		if r.id != e.Except && (e.Owner == "" || r.app == e.Owner) && !t.expireIfDue(r) && live(r.st) {
			t.endSession(r, e.As, e.Reason, "")
			n++
		}
	}
	return n, nil
}

// Reauth implements sessions.Store.
func (s *Store) Reauth(ctx context.Context, m sessions.Mark) error {
	if err := s.admit(ctx, "reauth"); err != nil {
		return err
	}
	p, ok := sessionPartition(m.SessionID)
	if !ok {
		return sessions.ErrNotFound
	}
	t := s.begin(p, m.Op)
	defer t.commit()
	r := t.get(m.SessionID)
	if r == nil {
		return sessions.ErrNotFound
	}
	if t.expireIfDue(r) || r.st != sessions.StateActive {
		return nil
	}
	r.st, r.why = sessions.StateReauthRequired, m.Reason
	t.emit(events.SessionReauthRequired, r, r.ip, r.ua, m.Reason, m.Rule, "", "")
	return nil
}

// List implements sessions.Store. Sessions past their timeout are left out
// (the sweeper ends them); it writes nothing, so it answers with the
// outbox full.
func (s *Store) List(ctx context.Context, userID, owner string, now time.Time) ([]sessions.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore list: %w", err)
	}
	p := &s.parts[events.PartitionOf(userID)]
	ms := now.UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.users[userID]
	out := make([]sessions.Session, 0, len(l))
	for _, r := range l {
		if live(r.st) && ms < r.dueAt() && (owner == "" || r.app == owner) {
			out = append(out, *r.session(false))
		}
	}
	return out, nil
}

// Append implements sessions.Store: the event goes to its user's outbox.
// It keeps the fields redisstore's outbox keeps (no rule, path or previous
// session), with the service as source and the time in milliseconds, so
// that both stores publish the same events.
func (s *Store) Append(ctx context.Context, e events.Event) error {
	if err := s.admit(ctx, "append"); err != nil {
		return err
	}
	switch {
	case e.ID == "":
		return errors.New("memstore append: event without ID")
	case !e.Type.Valid():
		return fmt.Errorf("memstore append: unknown event type %q", e.Type)
	case e.Data.UserID == "":
		return errors.New("memstore append: event without user ID")
	}
	t := s.begin(events.PartitionOf(e.Data.UserID), sessions.Op{Now: e.Time, EventID: e.ID, Actor: e.Data.Actor})
	defer t.commit()
	t.emit(e.Type, &record{id: e.Data.SessionID, uid: e.Data.UserID, app: e.Data.App},
		e.Data.IP, e.Data.UserAgent, e.Data.Reason, "", "", "")
	return nil
}

// Ping implements sessions.Store. The store is in the process, so it is
// reachable; but while the outbox is full it cannot take a write, and Ping
// says so (readiness answers 503, like a Redis that is down).
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore ping: %w", err)
	}
	if d := s.depth.Load(); d >= s.maxOutbox {
		return sessions.Unavailable("memstore ping", fmt.Errorf("%w (%d events)", ErrOutboxFull, d))
	}
	return nil
}

// Sweep ends the sessions of a partition whose timeout passed by now, with
// session.expired events, and forgets dead sessions past their tombstone. It
// works in batches of limit schedule entries (DefaultSweepBatch when limit
// is not positive), one lock hold each, and returns how many sessions it
// ended. The Relay calls it for every partition; without a Relay running,
// call it yourself, or memory holds every session until it is next used.
func (s *Store) Sweep(ctx context.Context, partition int, now time.Time, limit int) (int, error) {
	if partition < 0 || partition >= events.Partitions {
		return 0, fmt.Errorf("memstore sweep: partition %d out of range", partition)
	}
	if limit <= 0 {
		limit = DefaultSweepBatch
	}
	total := 0
	for {
		if err := s.admit(ctx, "sweep"); err != nil {
			return total, err
		}
		t := s.begin(partition, sessions.Op{Now: now, EventID: events.NewID(), Actor: "sweeper"})
		looked, expired := t.sweep(limit)
		t.commit()
		total += expired
		if looked < limit {
			return total, nil
		}
	}
}

// sweep handles up to limit schedule entries that are due.
func (t *tx) sweep(limit int) (looked, expired int) {
	sched := &t.p.sched
	for looked < limit && len(*sched) > 0 && (*sched)[0].due <= t.now {
		r := (*sched)[0]
		looked++
		switch {
		case t.expireIfDue(r):
			expired++
		case live(r.st):
			// Accessed since it was scheduled: look again when it is due.
			r.due = r.dueAt()
			heap.Fix(sched, 0)
		case t.now >= r.retain:
			t.purge(r)
		default:
			r.due = r.retain
			heap.Fix(sched, 0)
		}
	}
	return looked, expired
}

// purge forgets a dead session.
func (t *tx) purge(r *record) {
	heap.Remove(&t.p.sched, r.idx)
	delete(t.p.sessions, r.id)
}

// session returns the session as apps see it, with its CSRF token when
// withCSRF (validate and regenerate) and without (list).
func (r *record) session(withCSRF bool) *sessions.Session {
	la := time.UnixMilli(r.la).UTC()
	ea := time.UnixMilli(r.ea).UTC()
	idle := la.Add(time.Duration(r.it) * time.Millisecond)
	if idle.After(ea) {
		idle = ea
	}
	ss := &sessions.Session{
		ID: r.id, UserID: r.uid, App: r.app, IP: r.ip, UserAgent: r.ua,
		CreatedAt: time.UnixMilli(r.ca).UTC(), LastSeenAt: la, ExpiresAt: ea, IdleExpiresAt: idle,
		State: r.st,
	}
	if r.attrs != nil {
		ss.Attributes = maps.Clone(r.attrs)
	}
	if withCSRF {
		ss.CSRFToken = r.csrf
	}
	return ss
}

// inPrev reports whether th is one of the previous secret hashes, comparing
// every one in constant time.
func (r *record) inPrev(th *sessions.SecretHash) bool {
	found := 0
	for i := range r.npth {
		found |= subtle.ConstantTimeCompare(r.pth[i][:], th[:])
	}
	return found == 1
}

func ctEqHash(a, b *sessions.SecretHash) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// ctEqString compares two strings in time that depends only on their
// length (CSRF tokens), without copying them to byte slices.
func ctEqString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := 0; i < len(a); i++ {
		v |= a[i] ^ b[i]
	}
	return subtle.ConstantTimeByteEq(v, 0) == 1
}

// schedule is a min-heap of records by due time (container/heap).
type schedule []*record

func (h schedule) Len() int           { return len(h) }
func (h schedule) Less(i, j int) bool { return h[i].due < h[j].due }
func (h schedule) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *schedule) Push(x any) {
	r := x.(*record)
	r.idx = len(*h)
	*h = append(*h, r)
}
func (h *schedule) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.idx = -1
	return r
}
