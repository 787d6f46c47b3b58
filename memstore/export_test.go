package memstore

import "github.com/sessionmon/sessionmon/events"

// Pending returns every event in the outboxes, partition by partition.
func (s *Store) Pending() []events.Event { return s.pending() }

// Committed returns how many events the store ever committed.
func (s *Store) Committed() int64 { return s.committed.Load() }

// Records returns how many session records (live and tombstones) it holds.
func (s *Store) Records() int {
	n := 0
	for i := range s.parts {
		p := &s.parts[i]
		p.mu.Lock()
		n += len(p.sessions)
		p.mu.Unlock()
	}
	return n
}

// Tap makes f see every committed event, in commit order per partition.
// Set it before the store is used.
func (s *Store) Tap(f func(partition int, e events.Event)) { s.tap = f }
