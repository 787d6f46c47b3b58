package alerter

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// index is the in-memory view of every incident, fed by the store's watch
// (so that several instances see each other's changes) and by this
// instance's own writes. The console's list and the janitor read it.
type index struct {
	mu     sync.RWMutex
	m      map[string]indexed
	loaded bool
	gauge  *prometheus.GaugeVec
}

type indexed struct {
	inc *Incident
	rev uint64
}

func newIndex(gauge *prometheus.GaugeVec) *index {
	return &index{m: map[string]indexed{}, gauge: gauge}
}

// put stores inc at rev unless a later revision is already there. The
// index owns inc from now on: callers give it a copy.
func (x *index) put(inc *Incident, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.m[inc.ID]
	if ok && old.rev >= rev {
		return
	}
	if ok {
		x.gauge.WithLabelValues(severityLabel(old.inc.Severity), string(old.inc.State)).Dec()
	}
	x.gauge.WithLabelValues(severityLabel(inc.Severity), string(inc.State)).Inc()
	x.m[inc.ID] = indexed{inc, rev}
}

// del removes an incident deleted at rev.
func (x *index) del(id string, rev uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.m[id]
	if !ok || old.rev >= rev {
		return
	}
	x.gauge.WithLabelValues(severityLabel(old.inc.Severity), string(old.inc.State)).Dec()
	delete(x.m, id)
}

func (x *index) setLoaded() {
	x.mu.Lock()
	x.loaded = true
	x.mu.Unlock()
}

func (x *index) isLoaded() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.loaded
}

// all returns every incident. They are shared: do not modify them.
func (x *index) all() []*Incident {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]*Incident, 0, len(x.m))
	for _, e := range x.m {
		out = append(out, e.inc)
	}
	return out
}

// list returns the incidents f selects, latest alert first.
func (x *index) list(f Filter) []*Incident {
	limit := f.Limit
	if limit <= 0 {
		limit = 200
	}
	user := strings.ToLower(f.User)
	x.mu.RLock()
	var out []*Incident
	for _, e := range x.m {
		inc := e.inc
		switch {
		case f.Severity != "" && inc.Severity != f.Severity,
			f.Rule != "" && inc.Rule != f.Rule,
			len(f.States) > 0 && !slices.Contains(f.States, inc.State),
			user != "" && !strings.Contains(strings.ToLower(inc.UserID), user) && !strings.Contains(strings.ToLower(inc.IP), user),
			!f.From.IsZero() && inc.LastSeen.Before(f.From),
			!f.To.IsZero() && inc.FirstSeen.After(f.To):
			continue
		}
		out = append(out, inc)
	}
	x.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Incident) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// rules returns the rules of the incidents, sorted.
func (x *index) rules() []string {
	x.mu.RLock()
	seen := map[string]bool{}
	for _, e := range x.m {
		seen[e.inc.Rule] = true
	}
	x.mu.RUnlock()
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
