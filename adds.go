package sharedstate

import (
	"context"
	"fmt"
	"sync"

	"github.com/sharedstate/sharedstate/transport"
)

// A proxy combines the Adds of one counter: while one is in flight to the
// owner, the Adds that come queue, and the next request carries all of
// them, as their sum. Each call gets the value the counter had just after
// its own delta, as if the calls had been applied one after another at the
// instant the sum was, which they may be: all of them were in flight then.
// So a hot counter costs one round trip, one journal record and one saved
// answer per batch rather than per call, as Map.Update's batches do for a
// key. The sum is one write with a request id of its own, applied exactly
// once across takeovers; its outcome is each of its calls'. Sums wrap as
// Add does, so a batch's values are those of its calls applied in turn.

// addQueues holds the queue of each counter with Adds in flight, and of up
// to maxIdleQueues that had some lately.
type addQueues struct {
	mu     sync.Mutex
	queues map[string]*addQueue // by counter name
}

// addQueue is the Adds of one counter.
type addQueue struct {
	pending []*addCall // waiting for the next batch; under addQueues.mu
	running bool       // a batch is in flight; under addQueues.mu
}

// addCall is one Add waiting in a queue.
type addCall struct {
	delta int64
	queuedCall
	value int64 // once done
	err   error
}

// combinedAdd is Add through the counter's queue: at once if no batch is
// in flight, else in the next batch.
func (c *Counter) combinedAdd(ctx context.Context, delta int64) (int64, error) {
	u := &c.st.adds
	u.mu.Lock()
	q := u.queues[c.name]
	if q == nil {
		if u.queues == nil {
			u.queues = make(map[string]*addQueue)
		}
		q = &addQueue{}
		u.queues[c.name] = q
	}
	if !q.running {
		q.running = true
		u.mu.Unlock()
		resp, err := c.do(ctx, transport.OpAdd, 0, delta)
		c.nextAdds(q)
		return resp.Int, err
	}
	call := &addCall{delta: delta, queuedCall: newQueuedCall()}
	q.pending = append(q.pending, call)
	u.mu.Unlock()
	if err := call.wait(ctx, "Add"); err != nil {
		return 0, fmt.Errorf("sharedstate: counter %q: Add: %w", c.name, err)
	}
	return call.value, call.err
}

// nextAdds hands the Adds that queued meanwhile to a goroutine, or lets
// the queue go.
func (c *Counter) nextAdds(q *addQueue) {
	u := &c.st.adds
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(q.pending) > 0 {
		go c.runAdds(q)
		return
	}
	q.running = false
	if len(u.queues) > maxIdleQueues { // as Map.Update's: a busy counter's queue stays
		for name, other := range u.queues {
			if !other.running && len(u.queues) > maxIdleQueues/2 {
				delete(u.queues, name)
			}
		}
	}
}

// runAdds sends the batches of a queue until none is pending.
func (c *Counter) runAdds(q *addQueue) {
	u := &c.st.adds
	for {
		u.mu.Lock()
		calls := q.pending
		q.pending = nil
		u.mu.Unlock()
		if len(calls) == 0 {
			c.nextAdds(q)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		b := &updateBatch{cancel: cancel}
		var sent []*addCall
		var sum int64
		for _, a := range calls {
			if a.send(b) {
				sent = append(sent, a)
				sum += a.delta
			}
		}
		b.waiting.Store(int32(len(sent)))
		if len(sent) > 0 {
			resp, err := c.do(ctx, transport.OpAdd, 0, sum)
			// The last call's value is the sum's; each one before it
			// is the next one's less the next one's delta.
			v := resp.Int
			for i := len(sent) - 1; i >= 0; i-- {
				a := sent[i]
				a.value, a.err = v, err
				if err != nil {
					a.value = 0
				}
				v -= a.delta
				a.end()
			}
		}
		cancel()
	}
}
