package detector

import (
	"math"
	"time"
)

// buckets is the resolution of sliding-window counts: a window is counted
// in this many buckets, so a count covers between window×(1-1/buckets) and
// window of history. It keeps the state of a counter at 48 bytes whatever
// the threshold. It is a power of two: a bucket's slot is its index's low
// bits, which is the floor modulo for negative indexes too.
const buckets = 8

// The bucket slot of an index is i & slotMask; buckets must be a power of 2.
const slotMask = buckets - 1

var _ [0]struct{} = [buckets & slotMask]struct{}{} // buckets is a power of two

// counter counts events in a sliding window of event time.
type counter struct {
	width int64 // bucket width, ns
	last  int64 // index of the newest bucket; math.MinInt64: none yet
	n     [buckets]uint32
}

// add counts one event at t and returns the count in the window ending at
// the newest event seen. An event older than the window is not counted.
//
// Any time.Time is counted without overflow: bucket indexes are floored
// (times before 1970 have negative ones), and times beyond what UnixNano
// holds (before 1677, after 2262) count in the first or last bucket there
// is, as though they happened then. The detector service refuses such
// times before they get here (see CheckTime); this is defence in depth.
func (c *counter) add(t time.Time, window time.Duration) int {
	w := int64(window) / buckets
	if w <= 0 {
		w = 1
	}
	if c.width != w {
		*c = counter{width: w, last: math.MinInt64}
	}
	n := unixNano(t)
	i := n / w
	if n%w < 0 {
		i-- // floor, not truncation: a bucket before 1970 is as wide as one after
	}
	i = max(i, math.MinInt64+1) // MinInt64 is "none yet"
	switch {
	case i > c.last:
		// The gap fits in a uint64 however far apart the two are (and
		// counting in uint64 cannot overflow at the end of int64).
		if gap := uint64(i) - uint64(c.last); gap >= buckets {
			c.n = [buckets]uint32{}
		} else {
			for k := uint64(1); k <= gap; k++ {
				c.n[(uint64(c.last)+k)&slotMask] = 0
			}
		}
		c.last = i
	case uint64(c.last)-uint64(i) >= buckets:
		return c.sum() // older than the window
	}
	c.n[i&slotMask]++
	return c.sum()
}

// unixNano is t.UnixNano, saturated at the ends of int64 (UnixNano's
// result is undefined past them).
func unixNano(t time.Time) int64 {
	const lim = math.MaxInt64/int64(time.Second) - 1 // whole seconds UnixNano holds either way
	if s := t.Unix(); s > -lim && s < lim {
		return t.UnixNano()
	}
	switch {
	case t.Before(minUnixNano):
		return math.MinInt64
	case t.After(maxUnixNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var minUnixNano, maxUnixNano = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

func (c *counter) sum() int {
	s := 0
	for _, v := range c.n {
		s += int(v)
	}
	return s
}
