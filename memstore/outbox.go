package memstore

import "github.com/sessionmon/sessionmon/events"

// outbox is one partition's queue of committed events, oldest first. Only
// the relay removes events, and only after the broker acknowledged them.
// Its partition's mutex guards it.
type outbox struct {
	q    []events.Event
	head int // q[:head] is published and cleared
}

// spareCap is the capacity an empty outbox keeps for the next events; a
// larger array, grown while the broker was away, is released.
const spareCap = 4096

func (o *outbox) push(e events.Event) { o.q = append(o.q, e) }

func (o *outbox) len() int { return len(o.q) - o.head }

// peek appends up to n of the oldest events to buf.
func (o *outbox) peek(buf []events.Event, n int) []events.Event {
	return append(buf, o.q[o.head:min(o.head+n, len(o.q))]...)
}

// drop removes the n oldest events.
func (o *outbox) drop(n int) {
	clear(o.q[o.head : o.head+n])
	o.head += n
	switch {
	case o.head == len(o.q) && cap(o.q) > spareCap:
		o.q, o.head = nil, 0
	case o.head == len(o.q):
		o.q, o.head = o.q[:0], 0
	case o.head >= spareCap && o.head >= len(o.q)/2:
		// Move the rest to the front, so the array does not grow forever
		// while the relay keeps up with a steady stream.
		k := copy(o.q, o.q[o.head:])
		clear(o.q[k:])
		o.q, o.head = o.q[:k], 0
	}
}

// peek copies up to n of partition p's oldest events into buf[:0].
func (s *Store) peek(p int, buf []events.Event, n int) []events.Event {
	part := &s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	return part.outbox.peek(buf[:0], n)
}

// drop removes partition p's n oldest events, once the broker has them.
func (s *Store) drop(p, n int) {
	part := &s.parts[p]
	part.mu.Lock()
	part.outbox.drop(n)
	part.mu.Unlock()
	s.depth.Add(-int64(n))
}

// pending returns every event in the outboxes, partition by partition, in
// commit order within each.
func (s *Store) pending() []events.Event {
	var out []events.Event
	for p := range s.parts {
		part := &s.parts[p]
		part.mu.Lock()
		out = part.outbox.peek(out, part.outbox.len())
		part.mu.Unlock()
	}
	return out
}
