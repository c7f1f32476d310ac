package sharedstate

import (
	"sync"
	"sync/atomic"
)

// ackTracker numbers this process's requests and finds the lowest-numbered
// write still in flight: every request reports it to the owner as its Ack,
// and the owner drops the saved answers below it. Only writes are tracked:
// nothing is saved for other requests.
type ackTracker struct {
	mu  sync.Mutex
	seq atomic.Uint64 // the last id given out
	// inflight lists the writes begun, in ascending order, from its front
	// (index head) up to the first one not finished; done holds the finished
	// ones behind it. So low is the front, found without scanning what is in
	// flight.
	inflight []uint64
	head     int
	done     map[uint64]struct{}
}

// next numbers a request that is not a write.
func (a *ackTracker) next() uint64 { return a.seq.Add(1) }

// begin numbers a write, in flight until finish. Numbering under the lock
// keeps inflight in order, and low from passing a write not yet in it.
func (a *ackTracker) begin() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := a.seq.Add(1)
	a.inflight = append(a.inflight, id)
	return id
}

func (a *ackTracker) finish(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.head == len(a.inflight) || a.inflight[a.head] != id {
		a.done[id] = struct{}{}
		return
	}
	a.head++
	for a.head < len(a.inflight) {
		if _, ok := a.done[a.inflight[a.head]]; !ok {
			break
		}
		delete(a.done, a.inflight[a.head])
		a.head++
	}
	if a.head == len(a.inflight) { // empty: reuse the array from its start
		a.inflight, a.head = a.inflight[:0], 0
	}
}

// low returns an id such that every write numbered below it has finished.
func (a *ackTracker) low() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.head < len(a.inflight) {
		return a.inflight[a.head]
	}
	return a.seq.Load() + 1
}
