package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
type Relay struct {
	store *Store
	rdb   redis.UniversalClient
	pub   Publisher
	log   *slog.Logger
	m     *Metrics
	id    string
	cfg   RelayConfig
}

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	Batch         int           // entries per read and publish; 1000
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

// NewRelay returns a relay of store's outbox to pub. rdb serves its blocking
// reads; give it a client of its own with a pool of at least
// events.Partitions+2 connections, so that the reads never starve the API.
func NewRelay(store *Store, rdb redis.UniversalClient, pub Publisher, log *slog.Logger, m *Metrics, cfg RelayConfig) *Relay {
	cfg.defaults()
	if m == nil {
		m = NewMetrics(nil)
	}
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &Relay{store: store, rdb: rdb, pub: pub, log: log.With("component", "relay"), m: m,
		id: host + "/" + hex.EncodeToString(b[:]), cfg: cfg}
}

var (
	renewScript   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// Run relays and sweeps the partitions whose lease it holds until ctx ends,
// then flushes what its partitions' outboxes still hold (within
// DrainTimeout) and releases the leases.
func (r *Relay) Run(ctx context.Context) error {
	type worker struct {
		lost chan struct{}
		done chan struct{}
	}
	workers := map[int]*worker{}
	var wg sync.WaitGroup
	tick := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		for p := 0; p < events.Partitions; p++ {
			w := workers[p]
			ok, err := r.lease(ctx, p, w != nil)
			if err != nil && ctx.Err() == nil {
				r.m.RelayErrors.WithLabelValues("lease").Inc()
				r.log.Warn("partition lease", "partition", p, "err", err)
			}
			switch {
			case ok && w == nil:
				w = &worker{lost: make(chan struct{}), done: make(chan struct{})}
				workers[p] = w
				wg.Add(1)
				go func(p int, w *worker) {
					defer wg.Done()
					defer close(w.done)
					r.relay(ctx, p, w.lost)
				}(p, w)
			case !ok && w != nil && ctx.Err() == nil:
				r.log.Warn("lost partition lease", "partition", p)
				close(w.lost)
				delete(workers, p)
			}
		}
		r.m.PartitionsOwned.Set(float64(len(workers)))
		select {
		case <-ctx.Done():
			wg.Wait()
			rel, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			for p := range workers {
				_ = releaseScript.Run(rel, r.rdb, []string{r.store.leaseKey(p)}, r.id).Err()
			}
			cancel()
			r.m.PartitionsOwned.Set(0)
			return nil
		case <-tick.C:
		}
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

// relay is the loop of one partition.
func (r *Relay) relay(ctx context.Context, p int, lost <-chan struct{}) {
	log := r.log.With("partition", p)
	key := r.store.OutboxKey(p)
	last := "0" // everything not yet trimmed: a previous holder may have died mid-batch
	nextSweep := time.Now()
	backoff := newBackoff()
	for {
		select {
		case <-lost:
			return
		default:
		}
		if ctx.Err() != nil {
			dctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
			n, err := r.drain(dctx, key, last)
			cancel()
			if err != nil {
				log.Error("outbox not flushed at shutdown; the next relay publishes it", "err", err)
			} else if n > 0 {
				log.Info("outbox flushed at shutdown", "events", n)
			}
			return
		}
		if time.Now().After(nextSweep) {
			if n, err := r.store.Sweep(ctx, p, r.cfg.Now(), 500); err != nil && ctx.Err() == nil {
				r.m.RelayErrors.WithLabelValues("sweep").Inc()
				log.Warn("sweep", "err", err)
			} else {
				r.m.SweepExpired.Add(float64(n))
			}
			nextSweep = time.Now().Add(r.cfg.SweepInterval)
		}
		id, n, err := r.step(ctx, key, last, 250*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			log.Warn("outbox relay", "err", err, "retry_in", backoff.d)
			backoff.wait(ctx, lost)
			continue
		}
		backoff.reset()
		if n > 0 {
			last = id
		}
		if n > 0 && n < r.cfg.Batch/4 {
			// A small batch: let the next one grow for a moment. Fewer,
			// larger reads and publishes cost Redis and NATS far less per
			// event, for at most Linger of added delivery delay.
			time.Sleep(r.cfg.Linger)
		}
	}
}

// drain publishes everything left in a partition's outbox.
func (r *Relay) drain(ctx context.Context, key, last string) (int, error) {
	total := 0
	for {
		id, n, err := r.step(ctx, key, last, -1)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		total += n
		last = id
	}
}

// step reads one batch after last, publishes it, and trims it from the
// outbox once acknowledged. It returns the last ID it handled.
func (r *Relay) step(ctx context.Context, key, last string, block time.Duration) (string, int, error) {
	res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: int64(r.cfg.Batch), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return last, 0, nil
	}
	if err != nil {
		r.m.RelayErrors.WithLabelValues("read").Inc()
		return last, 0, fmt.Errorf("read outbox: %w", err)
	}
	if len(res) == 0 || len(res[0].Messages) == 0 {
		return last, 0, nil
	}
	msgs := res[0].Messages
	evs := make([]events.Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := decodeEntry(m.Values)
		if err != nil {
			// A malformed entry is a bug of ours; publishing stops for
			// nobody, and the entry is logged and counted, not lost silently.
			r.m.RelayErrors.WithLabelValues("decode").Inc()
			r.log.Error("malformed outbox entry skipped", "stream", key, "entry", m.ID, "err", err)
			continue
		}
		evs = append(evs, e)
	}
	start := time.Now()
	if err := r.pub.Publish(ctx, evs); err != nil {
		r.m.RelayErrors.WithLabelValues("publish").Inc()
		return last, 0, err
	}
	r.m.PublishSeconds.Observe(time.Since(start).Seconds())
	r.m.Published.Add(float64(len(evs)))
	lastID := msgs[len(msgs)-1].ID
	next, err := nextID(lastID)
	if err != nil {
		return last, 0, err
	}
	if err := r.rdb.XTrimMinID(ctx, key, next).Err(); err != nil {
		// Published but not trimmed: the entries will be published again
		// and de-duplicated by the stream.
		r.m.RelayErrors.WithLabelValues("trim").Inc()
		return last, 0, fmt.Errorf("trim outbox: %w", err)
	}
	return lastID, len(msgs), nil
}

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
