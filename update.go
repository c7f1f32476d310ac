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
// flight in this process.
type updateQueues struct {
	mu     sync.Mutex
	queues map[string]*updateQueue // by map name, NUL, key
}

// updateQueue is the Updates of one key.
type updateQueue struct {
	pending []*updateCall // waiting for the next batch; under updateQueues.mu
	// The entry as the last batch saw it, for the next to start from. Only
	// the goroutine running the batches uses these.
	known   bool
	version uint64 // 0: absent
	value   []byte
}

// updateCall is one Update waiting in a queue.
type updateCall struct {
	fn func(old []byte, ok bool) ([]byte, error) // the Update's function, on encodings
	w  writeOptions
	// state goes from callQueued to callSent (the call is part of a batch
	// whose outcome stands for it) and to callDone; or from callQueued to
	// callAbandoned, if the caller's context ends first.
	state atomic.Int32
	done  chan struct{} // closed at callDone
	batch *updateBatch  // once sent
	value []byte        // once done: the encoding stored, or nil with err
	err   error
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
// and returns the encoding stored.
func (m *Map[V]) update(ctx context.Context, key string, fn func([]byte, bool) ([]byte, error), w writeOptions) ([]byte, error) {
	u := &m.st.updates
	id := m.name + "\x00" + key
	call := &updateCall{fn: fn, w: w, done: make(chan struct{})}
	u.mu.Lock()
	if u.queues == nil {
		u.queues = make(map[string]*updateQueue)
	}
	q := u.queues[id]
	start := q == nil
	if start {
		q = &updateQueue{}
		u.queues[id] = q
	}
	q.pending = append(q.pending, call)
	u.mu.Unlock()
	if start {
		go m.runUpdates(id, key, q)
	}
	select {
	case <-call.done:
		return call.value, call.err
	case <-ctx.Done():
	}
	if call.state.CompareAndSwap(callQueued, callAbandoned) {
		return nil, ctx.Err() // never sent
	}
	select {
	case <-call.done: // done as ctx ended
		return call.value, call.err
	default:
	}
	if b := call.batch; b.waiting.Add(-1) == 0 {
		b.cancel() // nobody waits for this batch any more
	}
	return nil, fmt.Errorf("%w; the Update may or may not have been applied", ctx.Err())
}

// runUpdates runs batches of a key's queue until it is empty, then drops
// the queue.
func (m *Map[V]) runUpdates(id, key string, q *updateQueue) {
	u := &m.st.updates
	for {
		u.mu.Lock()
		calls := q.pending
		q.pending = nil
		if len(calls) == 0 {
			delete(u.queues, id)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
		m.runBatch(key, q, calls)
	}
}

// runBatch applies the functions of the calls in order and writes the
// result, trying again on a conflict, until the write succeeds, fails, or
// nobody waits for it.
func (m *Map[V]) runBatch(key string, q *updateQueue, calls []*updateCall) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &updateBatch{cancel: cancel}
	var sent []*updateCall
	for _, c := range calls {
		c.batch = b
		if c.state.CompareAndSwap(callQueued, callSent) {
			sent = append(sent, c)
		}
	}
	b.waiting.Store(int32(len(sent)))
	if len(sent) == 0 {
		return
	}
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
		c.state.Store(callDone)
		close(c.done)
	}
}

// finishAll ends every call with err.
func finishAll(calls []*updateCall, err error) {
	for _, c := range calls {
		c.value, c.err = nil, err
		c.state.Store(callDone)
		close(c.done)
	}
}
