package sharedstate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// Map.Update combines the Updates of one key within a process: while one
// batch of them is in flight, the Updates that come queue, and the next
// batch applies all their functions in turn and writes the result once,
// with a compare-and-swap on the entry's version. So a hot key costs one
// round trip per batch, rather than a read and a write per call with all
// but one of them failing and trying again, which collapsed at a few
// hundred goroutines. A batch starts from the entry as the previous batch
// left it, without reading it first; if another process has written it
// since, the compare-and-swap fails and brings back the current entry, and
// the batch runs again on that after a short random pause (conflicts
// between processes back off with jitter, up to maxUpdateBackoff).

// maxUpdateBackoff bounds the pause before a batch tries again.
const maxUpdateBackoff = 2 * time.Millisecond

// updateQueues holds the queue of each key that has Updates waiting or in
// flight in this process, and of up to maxIdleQueues keys that had some
// lately, for the entry they last saw.
type updateQueues struct {
	mu     sync.Mutex
	queues map[string]*updateQueue // by map name, NUL, key
}

// maxIdleQueues bounds the queues kept idle, each for the entry its last
// batch saw: a hot key's next Update then writes at once, with no read.
const maxIdleQueues = 1024

// updateQueue is the Updates of one key.
type updateQueue struct {
	pending []*updateCall // waiting for the next batch; under updateQueues.mu
	running bool          // a batch is in flight; under updateQueues.mu
	// The entry as the last batch saw it, for the next to start from. Only
	// the batch in flight uses these.
	known   bool
	version uint64 // 0: absent
	value   []byte
}

// updateCall is one Update waiting in a queue.
type updateCall struct {
	fn func(old []byte, ok bool) ([]byte, error) // the Update's function, on encodings
	w  writeOptions
	queuedCall
	value []byte // once done: the encoding stored, or nil with err
	err   error
}

// queuedCall is what a call that waits for a batch of its queue has: its
// state, which goes from callQueued to callSent (the call is part of a
// batch whose outcome stands for it) and to callDone, or from callQueued to
// callAbandoned if the caller's context ends first; its end; its batch.
type queuedCall struct {
	state atomic.Int32
	done  chan struct{} // closed at callDone
	batch *updateBatch  // once sent
}

func newQueuedCall() queuedCall { return queuedCall{done: make(chan struct{})} }

// wait waits until the call is done, and returns nil then; or until ctx
// ends, and returns ctx's error if the call was never sent, else an error
// that says the call, what, may or may not have been applied.
func (c *queuedCall) wait(ctx context.Context, what string) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
	}
	if c.state.CompareAndSwap(callQueued, callAbandoned) {
		return ctx.Err() // never sent
	}
	select {
	case <-c.done: // done as ctx ended
		return nil
	default:
	}
	if b := c.batch; b.waiting.Add(-1) == 0 {
		b.cancel() // nobody waits for this batch any more
	}
	return fmt.Errorf("%w; the %s may or may not have been applied", ctx.Err(), what)
}

// send puts the call in batch b, unless its caller has left.
func (c *queuedCall) send(b *updateBatch) bool {
	c.batch = b
	return c.state.CompareAndSwap(callQueued, callSent)
}

// end marks the call done, once its outcome is set.
func (c *queuedCall) end() {
	c.state.Store(callDone)
	close(c.done)
}

const (
	callQueued int32 = iota
	callSent
	callDone
	callAbandoned
)

// updateBatch is the calls one batch answers for, and the end of its round
// trips once none of them is waiting any more.
type updateBatch struct {
	waiting atomic.Int32
	cancel  context.CancelFunc
}

// update runs fn, an Update's function on encodings, in the queue of key,
// and returns the encoding stored. With no batch in flight, the call is a
// batch of its own, run at once on its own context; else it waits for the
// next batch, which a goroutine runs for all its calls.
func (m *Map[V]) update(ctx context.Context, key string, fn func([]byte, bool) ([]byte, error), w writeOptions) ([]byte, error) {
	u := &m.st.updates
	id := m.name + "\x00" + key
	call := &updateCall{fn: fn, w: w, queuedCall: newQueuedCall()}
	u.mu.Lock()
	if u.queues == nil {
		u.queues = make(map[string]*updateQueue)
	}
	q := u.queues[id]
	if q == nil {
		q = &updateQueue{}
		u.queues[id] = q
	}
	if !q.running {
		q.running = true
		u.mu.Unlock()
		call.state.Store(callSent)
		m.runBatch(ctx, key, q, []*updateCall{call})
		m.next(id, key, q)
		return call.value, call.err
	}
	q.pending = append(q.pending, call)
	u.mu.Unlock()
	if err := call.wait(ctx, "Update"); err != nil {
		return nil, err
	}
	return call.value, call.err
}

// next hands the calls that queued meanwhile to a goroutine, or leaves the
// queue idle.
func (m *Map[V]) next(id, key string, q *updateQueue) {
	u := &m.st.updates
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(q.pending) > 0 {
		go m.runUpdates(id, key, q)
		return
	}
	q.running = false
	if len(u.queues) > maxIdleQueues {
		for other, oq := range u.queues {
			if !oq.running && len(u.queues) > maxIdleQueues/2 {
				delete(u.queues, other)
			}
		}
	}
}

// runUpdates runs the batches of a key's queue until none is pending.
func (m *Map[V]) runUpdates(id, key string, q *updateQueue) {
	u := &m.st.updates
	for {
		u.mu.Lock()
		calls := q.pending
		q.pending = nil
		if len(calls) == 0 {
			u.mu.Unlock()
			m.next(id, key, q)
			return
		}
		u.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		b := &updateBatch{cancel: cancel}
		var sent []*updateCall
		for _, c := range calls {
			if c.send(b) {
				sent = append(sent, c)
			}
		}
		b.waiting.Store(int32(len(sent)))
		if len(sent) > 0 {
			m.runBatch(ctx, key, q, sent)
		}
		cancel()
	}
}

// runBatch applies the functions of the calls, which are sent, in order
// and writes the result, trying again on a conflict, until the write
// succeeds, fails, or ctx ends.
func (m *Map[V]) runBatch(ctx context.Context, key string, q *updateQueue, sent []*updateCall) {
	values, errs := make([][]byte, len(sent)), make([]error, len(sent))
	fresh := false // q holds the entry as just read, not as last left
	for attempt := 0; ; attempt++ {
		if !q.known {
			resp, err := m.do(ctx, transport.Request{Op: transport.OpLoad, Key: key})
			if err != nil {
				finishAll(sent, err)
				return
			}
			q.known, q.version, q.value, fresh = true, resp.Version, resp.Value, true
		}
		value, found, last := q.value, q.version != 0, -1
		for i, c := range sent {
			values[i], errs[i] = c.fn(value, found)
			if errs[i] == nil {
				value, found, last = values[i], true, i
			}
		}
		if last < 0 {
			// Nothing to write. The errors stand if the entry they were
			// computed from is current: read it, unless it just was.
			if fresh {
				finish(sent, values, errs)
				return
			}
			q.known = false
			continue
		}
		req := transport.Request{Op: transport.OpStoreIfVersion, Key: key, Value: value,
			TTL: sent[last].w.ttl, KeepTTL: sent[last].w.keepTTL, Version: q.version}
		resp, err := m.do(ctx, req)
		switch {
		case err != nil:
			q.known = false // the write may or may not have happened
			finishAll(sent, err)
			return
		case resp.Found:
			q.version, q.value = resp.Version, value
			finish(sent, values, errs)
			return
		}
		// Another process wrote the entry: the answer is the current one.
		q.version, q.value, fresh = resp.Version, resp.Value, true
		pause := time.NewTimer(rand.N(min(maxUpdateBackoff, 20*time.Microsecond<<min(attempt, 10)) + 1))
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			finishAll(sent, ctx.Err())
			return
		}
	}
}

// finish ends each call with its own outcome.
func finish(calls []*updateCall, values [][]byte, errs []error) {
	for i, c := range calls {
		c.value, c.err = values[i], errs[i]
		if c.err != nil {
			c.value = nil
		}
		c.end()
	}
}

// finishAll ends every call with err.
func finishAll(calls []*updateCall, err error) {
	for _, c := range calls {
		c.value, c.err = nil, err
		c.end()
	}
}
