// Package redisstore is the Redis adapter of the session store: sessions,
// per-user indexes, expiry schedule and the transactional outbox of events,
// each change made atomically by one Lua script.
//
// Keys (every key of a partition shares the hash tag {NN}, so a script's
// keys live in one Redis Cluster slot):
//
//	<prefix>:{NN}:s:<session id>  hash    the session (token stored as SHA-256)
//	<prefix>:{NN}:u:<user id>     zset    live sessions of a user by creation
//	<prefix>:{NN}:x               zset    live sessions by due time (sweeper)
//	<prefix>:{NN}:o               stream  the outbox, relayed to JetStream
//	<prefix>:{NN}:lease           string  which instance relays the partition
//
// NN is the two-digit partition of the user (events.PartitionOf), which is
// also the first two characters of every session ID. Scripts build the keys
// of other sessions of the same partition from the shared prefix; they are
// in the same slot as the declared keys.
package redisstore

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/sessions"
)

var (
	//go:embed lua/lib.lua
	libLua string
	//go:embed lua/create.lua
	createLua string
	//go:embed lua/access.lua
	accessLua string
	//go:embed lua/rotate.lua
	rotateLua string
	//go:embed lua/end.lua
	endLua string
	//go:embed lua/end_user.lua
	endUserLua string
	//go:embed lua/reauth.lua
	reauthLua string
	//go:embed lua/list.lua
	listLua string
	//go:embed lua/sweep.lua
	sweepLua string
)

// The Lua code is one Redis function library, loaded once per server with
// FUNCTION LOAD: lib.lua is shared, each other file is one function. The
// library and its functions are named after a hash of the code, so that
// instances running different versions coexist during a rollout.
var (
	libraryName string
	libraryCode string
)

// Function names, set by init.
var (
	fnCreate, fnAccess, fnRotate, fnEnd, fnEndUser, fnReauth, fnList, fnSweep string
)

func init() {
	parts := []struct {
		name, src string
		readOnly  bool
		fn        *string
	}{
		{"create", createLua, false, &fnCreate}, {"access", accessLua, false, &fnAccess},
		{"rotate", rotateLua, false, &fnRotate}, {"end", endLua, false, &fnEnd},
		{"end_user", endUserLua, false, &fnEndUser}, {"reauth", reauthLua, false, &fnReauth},
		{"list", listLua, true, &fnList}, {"sweep", sweepLua, false, &fnSweep},
	}
	h := sha256.New()
	h.Write([]byte(libLua))
	for _, p := range parts {
		h.Write([]byte(p.src))
	}
	version := hex.EncodeToString(h.Sum(nil))[:12]
	libraryName = "sessionmon_" + version
	var b strings.Builder
	fmt.Fprintf(&b, "#!lua name=%s\n%s\n", libraryName, libLua)
	for _, p := range parts {
		*p.fn = "sm_" + version + "_" + p.name
		flags := ""
		if p.readOnly {
			flags = ", flags = {'no-writes'}"
		}
		fmt.Fprintf(&b, "redis.register_function{function_name = '%s'%s, callback = function(KEYS, ARGV)\nbegin(ARGV)\n%s\nend}\n",
			*p.fn, flags, p.src)
	}
	libraryCode = b.String()
}

// DefaultPrefix is the default key prefix.
const DefaultPrefix = "sm"

// DefaultTombstone is how long a dead session is kept after its absolute
// expiry. Until its key is gone the sweeper can still end it, and a dead
// token answers session_revoked or session_expired.
const DefaultTombstone = 24 * time.Hour

// Store is the Redis session store. It implements sessions.Store.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	tombstone time.Duration
	batch     *batcher // nil: one call at a time
	bases     [events.Partitions]string
}

var _ sessions.Store = (*Store)(nil)

// Options configure a Store.
type Options struct {
	// Prefix of every key; DefaultPrefix when empty. It must not contain
	// '{' or '}', which would break the hash tags.
	Prefix string
	// Tombstone is DefaultTombstone when zero.
	Tombstone time.Duration
	// Pipelines bounds the pipelines of concurrent validations in flight
	// at once; validations arriving meanwhile wait and go out together in
	// the next one. DefaultPipelines when zero; negative sends each
	// validation on its own.
	Pipelines int
}

// DefaultPipelines is the default Options.Pipelines: one pipeline in Redis
// while the answers of another are read and the next one is built. Fewer
// in flight make larger batches (BenchmarkValidate: 1: 20.0, 2: 22.8, 4:
// 24.3 µs of CPU per validate); at the HTTP level 1 to 8 measured alike.
const DefaultPipelines = 2

// New returns a store over rdb.
func New(rdb redis.UniversalClient, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q: must not contain '{' or '}'", o.Prefix)
	}
	if o.Tombstone <= 0 {
		o.Tombstone = DefaultTombstone
	}
	s := &Store{rdb: rdb, prefix: o.Prefix, tombstone: o.Tombstone}
	for p := range s.bases {
		s.bases[p] = fmt.Sprintf("%s:{%02d}:", s.prefix, p)
	}
	if o.Pipelines == 0 {
		o.Pipelines = DefaultPipelines
	}
	if o.Pipelines > 0 {
		s.batch = &batcher{rdb: rdb, max: o.Pipelines}
	}
	return s, nil
}

func (s *Store) base(partition int) string {
	if partition >= 0 && partition < len(s.bases) {
		return s.bases[partition]
	}
	return fmt.Sprintf("%s:{%02d}:", s.prefix, partition)
}

func (s *Store) sessionKey(sid string) (base, key string) {
	p, _ := sessions.PartitionOfSessionID(sid)
	base = s.base(p)
	return base, base + "s:" + sid
}

func (s *Store) userKey(uid string) (base, key string) {
	base = s.base(events.PartitionOf(uid))
	return base, base + "u:" + uid
}

// OutboxKey returns the outbox stream key of a partition.
func (s *Store) OutboxKey(partition int) string { return s.base(partition) + "o" }

// DueKey returns the key of a partition's expiry schedule.
func (s *Store) DueKey(partition int) string { return s.base(partition) + "x" }

func (s *Store) leaseKey(partition int) string { return s.base(partition) + "lease" }

func common(base string, op sessions.Op) []any {
	return []any{base, op.Now.UnixMilli(), op.EventID, op.Actor}
}

// Create implements sessions.Store.
func (s *Store) Create(ctx context.Context, n sessions.NewSession) ([]string, error) {
	ss := n.Session
	base, skey := s.sessionKey(ss.ID)
	_, ukey := s.userKey(ss.UserID)
	attrs := ""
	if len(ss.Attributes) > 0 {
		b, err := json.Marshal(ss.Attributes)
		if err != nil {
			return nil, fmt.Errorf("encode attributes: %w", err)
		}
		attrs = string(b)
	}
	args := append(common(base, n.Op),
		ss.ID, ss.UserID, ss.App, n.SecretHash[:], ss.CSRFToken, ss.IP, ss.UserAgent, attrs,
		n.Policy.IdleTimeout.Milliseconds(), ss.ExpiresAt.UnixMilli(),
		ss.ExpiresAt.Add(s.tombstone).UnixMilli(), n.Policy.MaxSessions, string(n.Policy.LimitMode), n.Replaced)
	res, err := s.run(ctx, "create", fnCreate, []string{skey, ukey, base + "x", base + "o"}, args)
	if err != nil {
		return nil, err
	}
	evicted := make([]string, 0, len(res)-1)
	for _, v := range res[1:] {
		evicted = append(evicted, str(v))
	}
	return evicted, nil
}

// Access implements sessions.Store.
func (s *Store) Access(ctx context.Context, a sessions.Access) (*sessions.Session, error) {
	base, skey := s.sessionKey(a.SessionID)
	th := a.SecretHash // a copy, so that a itself stays off the heap
	args := []any{base, a.Op.Now.UnixMilli(), a.EventID, a.Actor,
		a.SessionID, th[:], a.Owner, a.IP, a.UserAgent, a.Path, a.CSRFToken}
	res, err := s.runBatched(ctx, "access", fnAccess, []string{skey}, args)
	if err != nil {
		return nil, err
	}
	return parseReply(a.SessionID, res)
}

// Rotate implements sessions.Store.
func (s *Store) Rotate(ctx context.Context, r sessions.Rotation) (*sessions.Session, error) {
	base, skey := s.sessionKey(r.SessionID)
	args := append(common(base, r.Op), r.SessionID, r.SecretHash[:], r.Owner, r.IP, r.UserAgent, r.Path, r.CSRFToken,
		r.NewSecretHash[:], r.NewCSRFToken)
	res, err := s.run(ctx, "rotate", fnRotate, []string{skey}, args)
	if err != nil {
		return nil, err
	}
	return parseReply(r.SessionID, res)
}

// End implements sessions.Store.
func (s *Store) End(ctx context.Context, e sessions.End) error {
	base, skey := s.sessionKey(e.SessionID)
	var th []byte
	if e.SecretHash != nil {
		th = e.SecretHash[:]
	}
	args := append(common(base, e.Op), e.SessionID, th, e.Owner, e.UserID, string(e.As), e.Reason, e.Rule)
	_, err := s.run(ctx, "end", fnEnd, []string{skey}, args)
	return err
}

// EndUser implements sessions.Store.
func (s *Store) EndUser(ctx context.Context, e sessions.EndUser) (int, error) {
	base, ukey := s.userKey(e.UserID)
	args := append(common(base, e.Op), e.UserID, e.Owner, e.Except, string(e.As), e.Reason)
	res, err := s.run(ctx, "end_user", fnEndUser, []string{ukey}, args)
	if err != nil {
		return 0, err
	}
	return int(num(res[1])), nil
}

// Reauth implements sessions.Store.
func (s *Store) Reauth(ctx context.Context, m sessions.Mark) error {
	base, skey := s.sessionKey(m.SessionID)
	args := append(common(base, m.Op), m.SessionID, m.Reason, m.Rule)
	_, err := s.run(ctx, "reauth", fnReauth, []string{skey}, args)
	return err
}

// List implements sessions.Store.
func (s *Store) List(ctx context.Context, userID, owner string, now time.Time) ([]sessions.Session, error) {
	base, ukey := s.userKey(userID)
	args := append(common(base, sessions.Op{Now: now}), owner)
	res, err := s.run(ctx, "list", fnList, []string{ukey}, args)
	if err != nil {
		return nil, err
	}
	const width = 11
	out := make([]sessions.Session, 0, (len(res)-1)/width)
	for i := 1; i+width <= len(res); i += width {
		ss, err := parseFields(str(res[i]), res[i+1:i+width])
		if err != nil {
			return nil, err
		}
		out = append(out, *ss)
	}
	return out, nil
}

// Append implements sessions.Store: one XADD to the user's outbox.
func (s *Store) Append(ctx context.Context, e events.Event) error {
	d := e.Data
	if hasSep(e.ID, d.SessionID, d.UserID, d.Actor, d.App, d.IP, d.UserAgent, d.Reason, d.Rule, d.Path, d.PreviousSessionID) {
		return fmt.Errorf("redis append: %w", errSep)
	}
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.OutboxKey(events.PartitionOf(d.UserID)), Values: []any{"e1", encodeEntry(e)}}).Err()
	if err != nil {
		return storeErr("append", err)
	}
	return nil
}

// errSep refuses a text holding the outbox entries' field separator. The
// service refuses control characters in what callers send; this guards the
// caller names that reach the store from configuration.
var errSep = errors.New("a value contains a control character (US)")

func hasSep(ss ...string) bool {
	for _, s := range ss {
		if strings.IndexByte(s, entrySep) >= 0 {
			return true
		}
	}
	return false
}

// Ping implements sessions.Store. On a cluster it pings every master: each
// holds some of the partitions.
func (s *Store) Ping(ctx context.Context) error {
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() })
	} else {
		err = s.rdb.Ping(ctx).Err()
	}
	if err != nil {
		return storeErr("ping", err)
	}
	return nil
}

// Sweep ends the sessions of a partition whose timeout passed by now, in
// batches of limit, and returns how many it ended.
func (s *Store) Sweep(ctx context.Context, partition int, now time.Time, limit int) (int, error) {
	base := s.base(partition)
	total := 0
	for {
		op := sessions.Op{Now: now, EventID: events.NewID(), Actor: "sweeper"}
		res, err := s.run(ctx, "sweep", fnSweep, []string{base + "x"}, append(common(base, op), limit))
		if err != nil {
			return total, err
		}
		total += int(num(res[2]))
		if int(num(res[1])) < limit {
			return total, nil
		}
	}
}

// Load loads the function library into Redis (into every master of a
// cluster). The store also loads it by itself when Redis lost it, e.g.
// after a restart without persistence.
func (s *Store) Load(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		return c.FunctionLoadReplace(ctx, libraryCode).Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, load)
	case *redis.Client:
		err = load(ctx, c)
	default:
		err = s.rdb.FunctionLoadReplace(ctx, libraryCode).Err()
	}
	if err != nil {
		return storeErr("function load", err)
	}
	return nil
}

// run calls a library function and maps its status reply to a sessions
// error.
func (s *Store) run(ctx context.Context, op, fn string, keys []string, args []any) ([]any, error) {
	return s.call(ctx, op, fn, keys, args, false)
}

// runBatched is run sending the call with those of concurrent requests.
func (s *Store) runBatched(ctx context.Context, op, fn string, keys []string, args []any) ([]any, error) {
	return s.call(ctx, op, fn, keys, args, s.batch != nil)
}

func (s *Store) call(ctx context.Context, op, fn string, keys []string, args []any, batched bool) ([]any, error) {
	for _, a := range args {
		if a, ok := a.(string); ok && hasSep(a) {
			return nil, fmt.Errorf("redis %s: %w", op, errSep)
		}
	}
	var v []any
	var err error
	if batched {
		v, err = s.batch.do(ctx, fn, keys, args)
	} else {
		v, err = s.rdb.FCall(ctx, fn, keys, args...).Slice()
	}
	if err != nil && strings.Contains(err.Error(), "Function not found") {
		if err = s.Load(ctx); err == nil {
			v, err = s.rdb.FCall(ctx, fn, keys, args...).Slice()
		}
	}
	if err != nil {
		return nil, storeErr(op, err)
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("redis %s: empty reply", op)
	}
	switch code := str(v[0]); code {
	case "ok":
		return v, nil
	case "conflict":
		return nil, fmt.Errorf("redis %s: session ID collision", op)
	default:
		if e := codeErr(code); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("redis %s: unexpected reply %q", op, code)
	}
}

func codeErr(code string) error {
	for _, e := range []*sessions.Error{sessions.ErrNotFound, sessions.ErrExpired, sessions.ErrRevoked,
		sessions.ErrReauth, sessions.ErrCSRF, sessions.ErrForbidden, sessions.ErrLimit} {
		if string(e.Code) == code {
			return e
		}
	}
	return nil
}

// storeErr classifies a Redis failure. The store being unreachable, busy
// or read-only is unavailable: the service fails closed with 503. An error
// reply from a script is a bug and stays internal.
func storeErr(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redis %s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "OOM", "MOVED", "ASK"} {
			if strings.HasPrefix(msg, p) {
				return sessions.Unavailable("redis "+op, err)
			}
		}
		return fmt.Errorf("redis %s: %w", op, err)
	}
	// Timeouts, refused or reset connections, an exhausted pool.
	return sessions.Unavailable("redis "+op, err)
}

func parseReply(sid string, v []any) (*sessions.Session, error) {
	if len(v) == 2 {
		return parsePacked(sid, str(v[1]))
	}
	// {'ok', uid, app, ip, ua, ca, la, ea, it, st, at, csrf}
	if len(v) != 12 {
		return nil, fmt.Errorf("redis: session reply has %d values", len(v))
	}
	ss, err := parseFields(sid, v[1:11])
	if err != nil {
		return nil, err
	}
	ss.CSRFToken = str(v[11])
	return ss, nil
}

// parsePacked decodes the session of the access function's common path:
// one string of the reply's 11 values separated by entrySep (a control
// character, which none of them can hold), which costs Redis and go-redis
// less than 11 values.
func parsePacked(sid, s string) (*sessions.Session, error) {
	var f [10]string
	for i := range f {
		j := strings.IndexByte(s, entrySep)
		if j < 0 {
			return nil, fmt.Errorf("redis: session reply has %d values", i+1)
		}
		f[i], s = s[:j], s[j+1:]
	}
	ss, err := parseSession(sid, &f)
	if err != nil {
		return nil, err
	}
	ss.CSRFToken = s
	return ss, nil
}

// parseFields decodes uid app ip ua ca la ea it st at.
func parseFields(sid string, v []any) (*sessions.Session, error) {
	var f [10]string
	for i := range f {
		f[i] = str(v[i])
	}
	return parseSession(sid, &f)
}

// parseSession decodes uid app ip ua ca la ea it st at.
func parseSession(sid string, f *[10]string) (*sessions.Session, error) {
	la := time.UnixMilli(atoi(f[5])).UTC()
	ea := time.UnixMilli(atoi(f[6])).UTC()
	idle := la.Add(time.Duration(atoi(f[7])) * time.Millisecond)
	if idle.After(ea) {
		idle = ea
	}
	ss := &sessions.Session{
		ID: sid, UserID: f[0], App: f[1], IP: f[2], UserAgent: f[3],
		CreatedAt: time.UnixMilli(atoi(f[4])).UTC(), LastSeenAt: la, ExpiresAt: ea, IdleExpiresAt: idle,
		State: sessions.State(f[8]),
	}
	if at := f[9]; at != "" {
		if err := json.Unmarshal([]byte(at), &ss.Attributes); err != nil {
			return nil, fmt.Errorf("redis: session %s attributes: %w", sid, err)
		}
	}
	return ss, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}
