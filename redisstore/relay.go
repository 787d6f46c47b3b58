package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/sessions"
)

// Publisher publishes a batch of events in order and returns once the
// broker has durably accepted all of them.
type Publisher interface {
	Publish(ctx context.Context, evs []events.Event) error
}

// Relay moves events from the Redis outbox to the broker and runs the
// expiry sweeper. Each partition is relayed by one instance at a time, the
// holder of the partition's lease, so that a user's events reach the stream
// in the order Redis committed them. An entry leaves the outbox only after
// the broker acknowledged it; a relay that dies mid-batch leaves the batch
// for the next lease holder, whose republication the stream de-duplicates by
// event ID.
//
// One loop relays every partition the instance holds: each step reads all
// of their outboxes in one round trip (one XREAD over all the streams, or a
// pipeline of them on a cluster, whose streams live in different slots),
// publishes what it read as one batch and trims the outboxes in one
// pipeline. Under load a step carries the events of every partition, not of
// one, which costs Redis, NATS and the relay far less per event.
type Relay struct {
	store *Store
	rdb   redis.UniversalClient
	pub   Publisher
	log   *slog.Logger
	m     *Metrics
	id    string
	cfg   RelayConfig

	// perStream reads each outbox with an XREAD of its own (a cluster,
	// whose streams one command cannot span).
	perStream bool

	mu      sync.Mutex
	held    map[int]uint64 // partition -> generation of its lease
	gen     uint64
	changed chan struct{}
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	Batch         int           // entries per step and publish; 1000
	LeaseTTL      time.Duration // lease of a partition; 10s
	SweepInterval time.Duration // how often to end timed-out sessions; 1s
	DrainTimeout  time.Duration // how long shutdown may spend flushing; 10s
	Linger        time.Duration // pause after a small batch; 2ms
	// Now is the clock of the sweeper; time.Now when nil.
	Now func() time.Time
}

func (c *RelayConfig) defaults() {
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.Linger <= 0 {
		c.Linger = 2 * time.Millisecond
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// NewRelay returns a relay of store's outbox to pub. rdb serves its reads,
// which block while the outboxes are empty; give it a client of its own, so
// that they never hold a connection the API needs.
func NewRelay(store *Store, rdb redis.UniversalClient, pub Publisher, log *slog.Logger, m *Metrics, cfg RelayConfig) *Relay {
	cfg.defaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	_, cluster := rdb.(*redis.ClusterClient)
	return &Relay{store: store, rdb: rdb, pub: pub, log: log.With("component", "relay"), m: m,
		id: host + "/" + hex.EncodeToString(b[:]), cfg: cfg, perStream: cluster, held: map[int]uint64{}, changed: make(chan struct{}, 1)}
}

var (
	renewScript   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// Run relays and sweeps the partitions whose lease it holds until ctx ends,
// then flushes what its partitions' outboxes still hold (within
// DrainTimeout) and releases the leases.
func (r *Relay) Run(ctx context.Context) error {
	held := map[int]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.loop(ctx)
	}()
	tick := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		for p := 0; p < events.Partitions; p++ {
			ok, err := r.lease(ctx, p, held[p])
			if err != nil && ctx.Err() == nil {
				r.m.RelayErrors.WithLabelValues("lease").Inc()
				r.log.Warn("partition lease", "partition", p, "err", err)
			}
			switch {
			case ok && !held[p]:
				held[p] = true
				r.setHeld(p, true)
			case !ok && held[p] && ctx.Err() == nil:
				r.log.Warn("lost partition lease", "partition", p)
				delete(held, p)
				r.setHeld(p, false)
			}
		}
		r.m.PartitionsOwned.Set(float64(len(held)))
		select {
		case <-ctx.Done():
			<-done
			rel, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for p := range held {
				_ = releaseScript.Run(rel, r.rdb, []string{r.store.leaseKey(p)}, r.id).Err()
			}
			cancel()
			r.m.PartitionsOwned.Set(0)
			return nil
		case <-tick.C:
		}
	}
}

// setHeld records that the lease of p was taken (a new generation: its
// outbox is read again from the start) or lost, and wakes the loop.
func (r *Relay) setHeld(p int, held bool) {
	r.mu.Lock()
	if held {
		r.gen++
		r.held[p] = r.gen
	} else {
		delete(r.held, p)
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// lease takes or renews the lease of partition p.
func (r *Relay) lease(ctx context.Context, p int, held bool) (bool, error) {
	key, ttl := r.store.leaseKey(p), r.cfg.LeaseTTL
	if held {
		n, err := renewScript.Run(ctx, r.rdb, []string{key}, r.id, ttl.Milliseconds()).Int()
		if err != nil {
			// Keep relaying on a transient error; the lease is still ours
			// until it expires, and Redis being down stops the relay anyway.
			return true, err
		}
		return n == 1, nil
	}
	return r.rdb.SetNX(ctx, key, r.id, ttl).Result()
}

// partition is the relay's state of one held partition.
type partition struct {
	p         int
	gen       uint64
	key       string
	last      string // the last entry published and trimmed
	nextSweep time.Time
	// unsettled is how many entries the last step read and did not
	// settle (publish and trim): the next step takes the same entries, no
	// more, so that they form the same messages and the stream drops the
	// copies of those already stored (see eventbus.Publisher).
	unsettled int
}

// loop relays the held partitions until ctx ends, then flushes them.
func (r *Relay) loop(ctx context.Context) {
	var parts []*partition
	backoff := newBackoff()
	for {
		parts = r.refresh(parts)
		if ctx.Err() != nil {
			r.flush(parts)
			return
		}
		if len(parts) == 0 {
			select {
			case <-ctx.Done():
			case <-r.changed:
			}
			continue
		}
		now := time.Now()
		for _, pt := range parts {
			if now.Before(pt.nextSweep) {
				continue
			}
			if n, err := r.store.Sweep(ctx, pt.p, r.cfg.Now(), 500); err != nil && ctx.Err() == nil {
				r.m.RelayErrors.WithLabelValues("sweep").Inc()
				r.log.Warn("sweep", "partition", pt.p, "err", err)
			} else {
				r.m.SweepExpired.Add(float64(n))
			}
			pt.nextSweep = time.Now().Add(r.cfg.SweepInterval)
		}
		n, err := r.step(ctx, parts, 250*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			r.log.Warn("outbox relay", "partitions", len(parts), "err", err, "retry_in", backoff.d)
			backoff.wait(ctx, nil)
			continue
		}
		backoff.reset()
		if n > 0 && n < r.cfg.Batch/4 {
			// A small batch: let the next one grow for a moment. Fewer,
			// larger reads and publishes cost Redis and NATS far less per
			// event, for at most Linger of added delivery delay.
			time.Sleep(r.cfg.Linger)
		}
	}
}

// refresh returns the state of the partitions held now, in order: a
// partition whose lease was lost is dropped, and one taken (again) starts
// from the head of its outbox, where a previous holder may have died
// mid-batch.
func (r *Relay) refresh(parts []*partition) []*partition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := parts[:0]
	have := make(map[int]bool, len(r.held))
	for _, pt := range parts {
		if r.held[pt.p] == pt.gen {
			out = append(out, pt)
			have[pt.p] = true
		}
	}
	for p, gen := range r.held {
		if !have[p] {
			out = append(out, &partition{p: p, gen: gen, key: r.store.OutboxKey(p), last: "0", nextSweep: time.Now()})
		}
	}
	slices.SortFunc(out, func(a, b *partition) int { return a.p - b.p })
	return out
}

// flush publishes everything left in the outboxes of parts, at shutdown.
func (r *Relay) flush(parts []*partition) {
	if len(parts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
	defer cancel()
	total := 0
	for {
		n, err := r.step(ctx, parts, -1)
		if err != nil {
			r.log.Error("outbox not flushed at shutdown; the next relay publishes it", "err", err)
			return
		}
		if n == 0 {
			if total > 0 {
				r.log.Info("outbox flushed at shutdown", "events", total)
			}
			return
		}
		total += n
	}
}

// step reads the entries after last of every partition of parts, waiting
// up to block for one when all are empty (block < 0: not at all),
// publishes them, and trims them from the outboxes once acknowledged. It
// returns how many entries it handled.
func (r *Relay) step(ctx context.Context, parts []*partition, block time.Duration) (int, error) {
	// Each partition's share of a batch: a backlog in one drains a share
	// at a time, all of them together at most about a batch.
	count := int64(max(r.cfg.Batch/len(parts), 50))
	streams, err := r.read(ctx, parts, count, block)
	if err != nil {
		r.m.RelayErrors.WithLabelValues("read").Inc()
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	var evs []events.Event
	read := 0
	for i, msgs := range streams {
		if u := parts[i].unsettled; u > 0 && len(msgs) > u {
			msgs = msgs[:u]
			streams[i] = msgs
		}
		parts[i].unsettled = len(msgs)
		for _, m := range msgs {
			e, err := decodeEntry(m.Values)
			if err != nil {
				// A malformed entry is a bug of ours; publishing stops for
				// nobody, and the entry is logged and counted, not lost silently.
				r.m.RelayErrors.WithLabelValues("decode").Inc()
				r.log.Error("malformed outbox entry skipped", "stream", parts[i].key, "entry", m.ID, "err", err)
				continue
			}
			evs = append(evs, e)
		}
		read += len(msgs)
	}
	if read == 0 {
		return 0, nil
	}
	if len(evs) > 0 {
		start := time.Now()
		if err := r.pub.Publish(ctx, evs); err != nil {
			r.m.RelayErrors.WithLabelValues("publish").Inc()
			return 0, err
		}
		r.m.PublishSeconds.Observe(time.Since(start).Seconds())
		r.m.Published.Add(float64(len(evs)))
	}
	pipe := r.rdb.Pipeline()
	lasts := make([]string, len(parts))
	for i, msgs := range streams {
		if len(msgs) == 0 {
			continue
		}
		lasts[i] = msgs[len(msgs)-1].ID
		next, err := nextID(lasts[i])
		if err != nil {
			return 0, err
		}
		pipe.XTrimMinID(ctx, parts[i].key, next)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Published but not trimmed: the entries will be published again
		// and de-duplicated by the stream.
		r.m.RelayErrors.WithLabelValues("trim").Inc()
		return 0, fmt.Errorf("trim outbox: %w", err)
	}
	for i, last := range lasts {
		if last != "" {
			parts[i].last = last
		}
		parts[i].unsettled = 0
	}
	return read, nil
}

// read returns the entries after last of each partition of parts, up to
// count each. On a single server it is one XREAD over all the streams,
// blocking up to block while all are empty. A cluster keeps the streams in
// different slots, which one command cannot span: there it is a pipeline
// of XREADs, repeated while all are empty for up to block, after pauses
// that start at Linger and double up to maxPollPause, so that an idle
// relay does not keep the masters busy.
func (r *Relay) read(ctx context.Context, parts []*partition, count int64, block time.Duration) ([][]redis.XMessage, error) {
	out := make([][]redis.XMessage, len(parts))
	if !r.perStream {
		args := make([]string, 2*len(parts))
		for i, pt := range parts {
			args[i], args[len(parts)+i] = pt.key, pt.last
		}
		res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: args, Count: count, Block: block}).Result()
		if errors.Is(err, redis.Nil) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		for _, st := range res {
			for i, pt := range parts {
				if pt.key == st.Stream {
					out[i] = st.Messages
				}
			}
		}
		return out, nil
	}
	deadline := time.Now().Add(block)
	pause := r.cfg.Linger
	for {
		pipe := r.rdb.Pipeline()
		cmds := make([]*redis.XStreamSliceCmd, len(parts))
		for i, pt := range parts {
			cmds[i] = pipe.XRead(ctx, &redis.XReadArgs{Streams: []string{pt.key, pt.last}, Count: count, Block: -1})
		}
		_, _ = pipe.Exec(ctx)
		n := 0
		for i, c := range cmds {
			res, err := c.Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if len(res) > 0 {
				out[i] = res[0].Messages
				n += len(out[i])
			}
		}
		if n > 0 || block < 0 || !time.Now().Before(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, nil
		case <-time.After(pause):
		}
		pause = min(2*pause, max(r.cfg.Linger, maxPollPause))
	}
}

// maxPollPause bounds the pause between a cluster relay's reads of empty
// outboxes: the most an event may wait after a quiet spell. At rest a
// read's pauses go 2, 4, 8, 16, 20, 20 ms... for up to its block time, and
// the next read starts again at Linger: about 1,000 XREADs a second over
// the 16 outboxes, against 6,300 with a pause of Linger alone.
const maxPollPause = 20 * time.Millisecond

// nextID returns the smallest stream ID greater than id.
func nextID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return "", fmt.Errorf("bad stream ID %q", id)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}

// decodeEntry turns an outbox entry (written by the functions or Append)
// into an event. An entry is one field, e1, holding the event's fields
// separated by entrySep in the order of entryFields; entries of earlier
// versions, one stream field per attribute, are still read.
func decodeEntry(v map[string]any) (events.Event, error) {
	if packed, ok := v["e1"].(string); ok {
		return decodePacked(packed)
	}
	get := func(k string) string { s, _ := v[k].(string); return s }
	return checkEntry(get("id"), get("ty"), get("t"), events.Data{
		SessionID: get("sid"), UserID: get("uid"), App: get("app"), IP: get("ip"), UserAgent: get("ua"),
		Reason: get("rs"), Actor: get("ac"), Rule: get("ru"), Path: get("pa"), PreviousSessionID: get("pv"),
	})
}

// entrySep separates the fields of an outbox entry: US, a control
// character, which the service refuses in every text it stores.
const entrySep = '\x1f'

// entryFields is the number of fields of an outbox entry: id type time sid
// uid actor app ip ua reason rule path previous_sid.
const entryFields = 13

func decodePacked(s string) (events.Event, error) {
	var f [entryFields]string
	for i := range entryFields - 1 {
		j := strings.IndexByte(s, entrySep)
		if j < 0 {
			return events.Event{}, fmt.Errorf("field e1: %d fields, want %d", i+1, entryFields)
		}
		f[i], s = s[:j], s[j+1:]
	}
	if strings.IndexByte(s, entrySep) >= 0 {
		return events.Event{}, fmt.Errorf("field e1: more than %d fields", entryFields)
	}
	f[entryFields-1] = s
	return checkEntry(f[0], f[1], f[2], events.Data{
		SessionID: f[3], UserID: f[4], Actor: f[5], App: f[6], IP: f[7], UserAgent: f[8],
		Reason: f[9], Rule: f[10], Path: f[11], PreviousSessionID: f[12],
	})
}

// encodeEntry is the e1 field of an outbox entry for e (see decodePacked).
func encodeEntry(e events.Event) string {
	d := e.Data
	return strings.Join([]string{e.ID, string(e.Type), strconv.FormatInt(e.Time.UnixMilli(), 10), d.SessionID, d.UserID,
		d.Actor, d.App, d.IP, d.UserAgent, d.Reason, d.Rule, d.Path, d.PreviousSessionID}, string(entrySep))
}

func checkEntry(id, typ, t string, d events.Data) (events.Event, error) {
	ms, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return events.Event{}, fmt.Errorf("field t: %w", err)
	}
	e := events.Event{ID: id, Type: events.Type(typ), Source: sessions.EventSource, Time: time.UnixMilli(ms).UTC(), Data: d}
	switch {
	case e.ID == "":
		return e, errors.New("field id: missing")
	case !e.Type.Valid():
		return e, fmt.Errorf("field ty: unknown type %q", e.Type)
	case e.Data.UserID == "":
		return e, errors.New("field uid: missing")
	}
	return e, nil
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }
func (b *backoff) reset()  { b.d = 100 * time.Millisecond }
func (b *backoff) wait(ctx context.Context, lost <-chan struct{}) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-lost:
	}
	if b.d < 5*time.Second {
		b.d *= 2
	}
}
