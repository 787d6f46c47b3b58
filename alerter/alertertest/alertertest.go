// Package alertertest has what tests of the alerter share: an in-memory
// Store, the contract suite every alerter.Store must pass, a recorder of
// published actions, and sample alerts.
package alertertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/events"
)

// MemStore is an alerter.Store in memory. It copies incidents in and out
// through JSON, as a real store would.
type MemStore struct {
	mu       sync.Mutex
	rev      uint64
	inc      map[string]memEntry
	groups   map[string]memEntry
	watchers []chan memEvent
	// Fail, when set, is returned by every call (to simulate an outage).
	Fail error
}

type memEntry struct {
	data []byte
	rev  uint64
}

type memEvent struct {
	id  string
	inc *alerter.Incident
	rev uint64
}

var _ alerter.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{inc: map[string]memEntry{}, groups: map[string]memEntry{}}
}

func decode(b []byte) *alerter.Incident {
	var inc alerter.Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		panic(err)
	}
	return &inc
}

func (m *MemStore) notify(id string, data []byte, rev uint64) {
	for _, w := range m.watchers {
		ev := memEvent{id: id, rev: rev}
		if data != nil {
			ev.inc = decode(data)
		}
		w <- ev
	}
}

// Get implements alerter.Store.
func (m *MemStore) Get(_ context.Context, id string) (*alerter.Incident, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return nil, 0, m.Fail
	}
	e, ok := m.inc[id]
	if !ok {
		return nil, 0, fmt.Errorf("incident %s: %w", id, alerter.ErrNotFound)
	}
	return decode(e.data), e.rev, nil
}

// Create implements alerter.Store.
func (m *MemStore) Create(_ context.Context, inc *alerter.Incident) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return 0, m.Fail
	}
	if _, ok := m.inc[inc.ID]; ok {
		return 0, fmt.Errorf("incident %s: %w", inc.ID, alerter.ErrExists)
	}
	return m.put(inc)
}

func (m *MemStore) put(inc *alerter.Incident) (uint64, error) {
	b, err := json.Marshal(inc)
	if err != nil {
		return 0, err
	}
	m.rev++
	m.inc[inc.ID] = memEntry{b, m.rev}
	m.notify(inc.ID, b, m.rev)
	return m.rev, nil
}

// Update implements alerter.Store.
func (m *MemStore) Update(_ context.Context, inc *alerter.Incident, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return 0, m.Fail
	}
	if e, ok := m.inc[inc.ID]; !ok || e.rev != rev {
		return 0, fmt.Errorf("incident %s: %w", inc.ID, alerter.ErrConflict)
	}
	return m.put(inc)
}

// Delete implements alerter.Store.
func (m *MemStore) Delete(_ context.Context, id string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	if e, ok := m.inc[id]; !ok || e.rev != rev {
		return fmt.Errorf("incident %s: %w", id, alerter.ErrConflict)
	}
	delete(m.inc, id)
	m.rev++
	m.notify(id, nil, m.rev)
	return nil
}

// Group implements alerter.Store.
func (m *MemStore) Group(_ context.Context, key string) (string, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return "", 0, m.Fail
	}
	e, ok := m.groups[key]
	if !ok {
		return "", 0, fmt.Errorf("group %s: %w", key, alerter.ErrNotFound)
	}
	return string(e.data), e.rev, nil
}

// SetGroup implements alerter.Store.
func (m *MemStore) SetGroup(_ context.Context, key, id string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	e, ok := m.groups[key]
	if (rev == 0 && ok) || (rev != 0 && (!ok || e.rev != rev)) {
		return fmt.Errorf("group %s: %w", key, alerter.ErrConflict)
	}
	m.rev++
	m.groups[key] = memEntry{[]byte(id), m.rev}
	return nil
}

// DeleteGroup implements alerter.Store.
func (m *MemStore) DeleteGroup(_ context.Context, key string, rev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	if e, ok := m.groups[key]; !ok || e.rev != rev {
		return fmt.Errorf("group %s: %w", key, alerter.ErrConflict)
	}
	delete(m.groups, key)
	m.rev++
	return nil
}

// Watch implements alerter.Store.
func (m *MemStore) Watch(ctx context.Context, fn func(id string, inc *alerter.Incident, rev uint64), loaded func()) error {
	ch := make(chan memEvent, 1<<16)
	m.mu.Lock()
	for id, e := range m.inc {
		ch <- memEvent{id: id, inc: decode(e.data), rev: e.rev}
	}
	n := len(ch)
	m.watchers = append(m.watchers, ch)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		for i, w := range m.watchers {
			if w == ch {
				m.watchers = append(m.watchers[:i], m.watchers[i+1:]...)
				break
			}
		}
		m.mu.Unlock()
	}()
	for range n {
		ev := <-ch
		fn(ev.id, ev.inc, ev.rev)
	}
	loaded()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-ch:
			fn(ev.id, ev.inc, ev.rev)
		}
	}
}

// Actions records published actions; Fail makes publishing fail.
type Actions struct {
	mu   sync.Mutex
	list []events.Action
	Fail error
}

// PublishAction implements alerter.ActionPublisher.
func (a *Actions) PublishAction(_ context.Context, act events.Action) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Fail != nil {
		return a.Fail
	}
	a.list = append(a.list, act)
	return nil
}

// SetFail sets or clears the failure.
func (a *Actions) SetFail(err error) { a.mu.Lock(); a.Fail = err; a.mu.Unlock() }

// List returns the actions published so far.
func (a *Actions) List() []events.Action {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]events.Action(nil), a.list...)
}

// TravelAlert is an impossible-travel alert about user at t, with both
// places as evidence.
func TravelAlert(id, user string, t time.Time) events.Alert {
	return events.Alert{
		ID: id, Time: t, Rule: "impossible-travel", RuleType: "impossible_travel", RuleVersion: "v1",
		Severity: "high", UserID: user, SessionIDs: []string{"07aaaa", "07bbbb"}, Action: "reauth", Target: "07bbbb",
		Mode: "enforce", ActionResult: "done",
		Summary: user + " in Paris then Sydney 1 h later (16,960 km at 16,960 km/h)",
		Evidence: events.Evidence{
			Events: []events.EventRef{
				{ID: id + "-1", Type: events.Type("session.accessed"), Time: t.Add(-time.Hour), SessionID: "07aaaa", IP: "198.51.100.7",
					UserAgent: "Firefox", Country: "FR", City: "Paris", Lat: 48.8566, Lon: 2.3522, AccuracyKm: 20},
				{ID: id + "-2", Type: events.Type("session.accessed"), Time: t, SessionID: "07bbbb", IP: "203.0.113.80",
					UserAgent: "Firefox", Country: "AU", City: "Sydney", Lat: -33.8688, Lon: 151.2093, AccuracyKm: 20},
			},
			DistanceKm: 16960, EffectiveDistanceKm: 16920, SpeedKmh: 16920, ElapsedSeconds: 3600,
		},
	}
}

// RunStoreTests is the contract suite of alerter.Store; newStore returns a
// fresh, empty store.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) alerter.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)

	t.Run("CreateGetUpdate", func(t *testing.T) {
		s := newStore(t)
		inc := alerter.NewIncident(TravelAlert("a1", "alice", now), now)
		if _, _, err := s.Get(ctx, inc.ID); !errors.Is(err, alerter.ErrNotFound) {
			t.Fatalf("get missing: %v, want ErrNotFound", err)
		}
		rev, err := s.Create(ctx, inc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, inc); !errors.Is(err, alerter.ErrExists) {
			t.Fatalf("create twice: %v, want ErrExists", err)
		}
		got, grev, err := s.Get(ctx, inc.ID)
		if err != nil || grev != rev {
			t.Fatalf("get: rev %d err %v, want rev %d", grev, err, rev)
		}
		if got.UserID != "alice" || got.Count != 1 || got.Alerts[0].Evidence.Events[1].City != "Sydney" || !got.FirstSeen.Equal(now) {
			t.Fatalf("round trip lost data: %+v", got)
		}
		got.State = alerter.Acknowledged
		rev2, err := s.Update(ctx, got, rev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, got, rev); !errors.Is(err, alerter.ErrConflict) {
			t.Fatalf("update at a stale revision: %v, want ErrConflict", err)
		}
		if err := s.Delete(ctx, inc.ID, rev); !errors.Is(err, alerter.ErrConflict) {
			t.Fatalf("delete at a stale revision: %v, want ErrConflict", err)
		}
		if err := s.Delete(ctx, inc.ID, rev2); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get(ctx, inc.ID); !errors.Is(err, alerter.ErrNotFound) {
			t.Fatalf("get deleted: %v, want ErrNotFound", err)
		}
		if _, err := s.Create(ctx, inc); err != nil {
			t.Fatalf("create after delete: %v", err)
		}
	})

	t.Run("Groups", func(t *testing.T) {
		s := newStore(t)
		if _, _, err := s.Group(ctx, "k1"); !errors.Is(err, alerter.ErrNotFound) {
			t.Fatalf("missing group: %v, want ErrNotFound", err)
		}
		if err := s.SetGroup(ctx, "k1", "i1", 0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroup(ctx, "k1", "i2", 0); !errors.Is(err, alerter.ErrConflict) {
			t.Fatalf("create existing group: %v, want ErrConflict", err)
		}
		id, rev, err := s.Group(ctx, "k1")
		if err != nil || id != "i1" {
			t.Fatalf("group: %q %v", id, err)
		}
		if err := s.SetGroup(ctx, "k1", "i2", rev); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroup(ctx, "k1", "i3", rev); !errors.Is(err, alerter.ErrConflict) {
			t.Fatalf("stale group update: %v, want ErrConflict", err)
		}
		id, rev, _ = s.Group(ctx, "k1")
		if id != "i2" {
			t.Fatalf("group points to %q, want i2", id)
		}
		if err := s.DeleteGroup(ctx, "k1", rev); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroup(ctx, "k1", "i4", 0); err != nil {
			t.Fatalf("create group after delete: %v", err)
		}
	})

	t.Run("Watch", func(t *testing.T) {
		s := newStore(t)
		a := alerter.NewIncident(TravelAlert("w1", "alice", now), now)
		if _, err := s.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
		type seen struct {
			id      string
			deleted bool
			state   alerter.State
		}
		ch := make(chan seen, 16)
		loaded := make(chan struct{})
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- s.Watch(wctx, func(id string, inc *alerter.Incident, rev uint64) {
				if inc == nil {
					ch <- seen{id: id, deleted: true}
					return
				}
				ch <- seen{id: id, state: inc.State}
			}, func() { close(loaded) })
		}()
		next := func() seen {
			t.Helper()
			select {
			case v := <-ch:
				return v
			case <-time.After(5 * time.Second):
				t.Fatal("watch: nothing in 5s")
			}
			return seen{}
		}
		if v := next(); v.id != a.ID || v.state != alerter.Open {
			t.Fatalf("initial value: %+v", v)
		}
		select {
		case <-loaded:
		case <-time.After(5 * time.Second):
			t.Fatal("watch: loaded not called")
		}
		_, rev, _ := s.Get(ctx, a.ID)
		a.State = alerter.Resolved
		rev, err := s.Update(ctx, a, rev)
		if err != nil {
			t.Fatal(err)
		}
		if v := next(); v.id != a.ID || v.state != alerter.Resolved {
			t.Fatalf("update: %+v", v)
		}
		if err := s.Delete(ctx, a.ID, rev); err != nil {
			t.Fatal(err)
		}
		if v := next(); v.id != a.ID || !v.deleted {
			t.Fatalf("delete: %+v", v)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch ended with %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch did not end with its context")
		}
	})
}
