package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the function calls of concurrent requests to Redis
// together: while up to max pipelines are in flight, calls that arrive
// queue, and the next pipeline takes all of them in one write and one
// read. Under load this replaces a write and a read system call per
// request, on both sides, by one per batch; alone, a call goes out at once
// as before.
//
// There is no goroutine of its own: the caller that finds a free slot
// sends the queue, and when its pipeline is answered hands the slot to the
// first caller queued meanwhile, which sends the rest.
type batcher struct {
	rdb redis.UniversalClient
	max int

	mu      sync.Mutex
	running int
	queue   []*call
}

// call is one queued function call and, once done is closed or signalled,
// its result; lead is set when the caller is to send batch itself.
type call struct {
	fn   string
	keys []string
	args []any

	res  []any
	err  error
	done chan struct{}
	lead []*call
}

var calls = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// do runs fn and returns its reply. ctx is not honoured once the call is
// queued: it is answered within the client's timeouts, as a call already
// written to Redis would be.
func (b *batcher) do(ctx context.Context, fn string, keys []string, args []any) ([]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := calls.Get().(*call)
	c.fn, c.keys, c.args = fn, keys, args
	b.mu.Lock()
	if b.running < b.max {
		// A free slot means an empty queue: a slot is only freed when
		// nothing waits.
		b.running++
		b.mu.Unlock()
		b.send(ctx, []*call{c})
	} else {
		b.queue = append(b.queue, c)
		b.mu.Unlock()
		<-c.done
		if batch := c.lead; batch != nil {
			c.lead = nil
			b.send(ctx, batch)
		}
	}
	res, err := c.res, c.err
	*c = call{done: c.done}
	calls.Put(c)
	return res, err
}

// send runs batch as one pipeline, answers its calls (the first is the
// caller's own, answered by returning), then passes the slot on.
func (b *batcher) send(ctx context.Context, batch []*call) {
	// The pipeline answers other requests than the caller's: it must not
	// be cut short when the caller's request is.
	ctx = context.WithoutCancel(ctx)
	if len(batch) == 1 {
		c := batch[0]
		c.res, c.err = b.rdb.FCall(ctx, c.fn, c.keys, c.args...).Slice()
	} else {
		pipe := b.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, c := range batch {
			cmds[i] = pipe.FCall(ctx, c.fn, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
		for i, c := range batch {
			c.res, c.err = cmds[i].Slice()
		}
	}
	own := batch[0]
	for _, c := range batch {
		if c != own {
			c.done <- struct{}{}
		}
	}
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	next := b.queue
	b.queue = nil
	b.mu.Unlock()
	next[0].lead = next
	next[0].done <- struct{}{}
}
