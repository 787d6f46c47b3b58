package detector

import "time"

// buckets is the resolution of sliding-window counts: a window is counted
// in this many buckets, so a count covers between window×(1-1/buckets) and
// window of history. It keeps the state of a counter at 48 bytes whatever
// the threshold.
const buckets = 8

// counter counts events in a sliding window of event time.
type counter struct {
	width int64 // bucket width, ns
	last  int64 // index of the newest bucket
	n     [buckets]uint32
}

// add counts one event at t and returns the count in the window ending at
// the newest event seen. An event older than the window is not counted.
func (c *counter) add(t time.Time, window time.Duration) int {
	w := int64(window) / buckets
	if w <= 0 {
		w = 1
	}
	if c.width != w {
		*c = counter{width: w}
	}
	i := t.UnixNano() / w
	switch {
	case c.last == 0:
		c.last = i
	case i > c.last:
		for j := c.last + 1; j <= i && j <= c.last+buckets; j++ {
			c.n[j%buckets] = 0
		}
		c.last = i
	case i <= c.last-buckets:
		return c.sum()
	}
	c.n[i%buckets]++
	return c.sum()
}

func (c *counter) sum() int {
	s := 0
	for _, v := range c.n {
		s += int(v)
	}
	return s
}
