package redisstate

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// Lock timing.
const (
	// defaultLease is how long a lock outlives the latest renewal by its
	// holder, which renews it every third of that.
	defaultLease = 10 * time.Second
	// pollInterval is how often a waiting Lock asks again without news of
	// a release: news missed while Redis was away, or a lease that ran out.
	pollInterval = 250 * time.Millisecond
	// waitTTL is how long a waiter keeps its place in the queue without
	// asking again, so that one whose process died is soon skipped.
	waitTTL = 2 * time.Second
	// cleanupTimeout bounds what is done for a call that gave up, or on
	// Close.
	cleanupTimeout = 2 * time.Second
)

// lock performs a Lock (wait) or TryLock. Each attempt is a write, so that
// an attempt that got the lock is not lost with its answer; a waiting Lock
// attempts again when a release is published, or every pollInterval. Its
// owner id names this call in the queue and in the lock. If done is not
// nil, it is asked before each attempt and once the lock is got whether the
// call is answered without the lock (a Compute whose entry is there): the
// call then leaves the queue, or gives the lock back.
func (e *engine) lock(ctx context.Context, name string, wait bool, done func(context.Context) (transport.Response, bool, error)) (transport.Response, error) {
	owner := e.client + ":" + strconv.FormatUint(e.seq.Add(1), 10)
	k := e.keys
	keys := []string{k.lock(name), k.tokens(name), k.queue(name), k.waiting(name)}
	var waitMillis int64
	var released <-chan struct{} // closed when a release is published
	if wait {
		waitMillis = waitTTL.Milliseconds()
	}
	for attempts := 0; ; attempts++ {
		if wait {
			released = e.wakeups.channel(name)
		}
		if done != nil {
			if resp, ok, err := done(ctx); err != nil || ok {
				if attempts > 0 {
					e.withdraw(name, owner)
				}
				return resp, err
			}
		}
		r, err := e.write(ctx, scriptAcquire, keys, owner, e.client, e.lease.Milliseconds(), waitMillis)
		if err != nil {
			e.withdraw(name, owner)
			return transport.Response{}, err
		}
		if r.found {
			e.held.add(name, r.version)
			if done != nil {
				// Given up by a holder that had stored the entry since
				// it was last looked for.
				if resp, ok, err := done(ctx); err != nil || ok {
					e.unlock(context.WithoutCancel(ctx), name, r.version)
					return resp, err
				}
			}
			return transport.Response{Found: true, Version: r.version}, nil
		}
		if !wait {
			return transport.Response{}, nil
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-released:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			e.withdraw(name, owner)
			return transport.Response{}, fmt.Errorf("redisstate: %w", ctx.Err())
		}
		t.Stop()
	}
}

// compute performs a Compute: the entry if it is there, else the claim of
// its computation, a lock waited for as Lock waits; a waiter looks for the
// entry each time a holder gives the claim back.
func (e *engine) compute(ctx context.Context, req *transport.Request) (transport.Response, error) {
	found := false
	resp, err := e.lock(ctx, transport.ClaimName(req.Name, req.Key), true, func(ctx context.Context) (transport.Response, bool, error) {
		r, err := e.load(ctx, req)
		found = r.found
		return transport.Response{Found: r.found, Value: r.value, Version: r.version, TTL: r.ttl}, r.found, err
	})
	if err == nil && !found {
		resp.Found = false // the claim, not an entry found
	}
	return resp, err
}

// withdraw takes a Lock call that gave up out of the queue, and gives back
// the lock if its last attempt got it unknown to the caller. It runs in
// the background, so that the call returns as soon as its context ends; if
// it fails, the waiter's place expires after waitTTL and the lock's lease
// runs out.
func (e *engine) withdraw(name, owner string) {
	k := e.keys
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		e.retry(ctx, false, func(ctx context.Context) error {
			return scriptWithdraw.Run(ctx, e.rdb, []string{k.lock(name), k.queue(name), k.waiting(name)}, owner, k.unlocked(), name).Err()
		})
	}()
}

// unlock releases the lock if this engine holds it with token.
func (e *engine) unlock(ctx context.Context, name string, token uint64) (transport.Response, error) {
	r, err := e.write(ctx, scriptRelease, []string{e.keys.lock(name)}, token, e.client, e.keys.unlocked(), name)
	if err != nil {
		return transport.Response{}, err
	}
	e.held.drop(name, token)
	if !r.found {
		return refuse(transport.StatusNotLocked, fmt.Sprintf("%q is not held with token %d by this process", name, token))
	}
	return transport.Response{}, nil
}

// lockHeld reports whether this engine holds the lock with token: false
// once its lease ran out, even if no other process took it since.
func (e *engine) lockHeld(ctx context.Context, name string, token uint64) (transport.Response, error) {
	var v []any
	err := e.retry(ctx, false, func(ctx context.Context) (err error) {
		v, err = e.rdb.HMGet(ctx, e.keys.lock(name), "token", "client").Result()
		return err
	})
	if err != nil {
		return transport.Response{}, err
	}
	held := v[0] == any(strconv.FormatUint(token, 10)) && v[1] == any(e.client)
	return transport.Response{Found: held}, nil
}

// renew extends the leases of the locks this engine holds, every third of a
// lease, until Close. A lock found no longer held (its lease ran out while
// Redis was unreachable, or Redis lost it) is forgotten.
func (e *engine) renew() {
	t := time.NewTicker(e.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		for name, token := range e.held.all() {
			ctx, cancel := context.WithTimeout(e.ctx, e.lease/3)
			n, err := scriptRenew.Run(ctx, e.rdb, []string{e.keys.lock(name)}, token, e.client, e.lease.Milliseconds()).Int()
			cancel()
			if err == nil && n == 0 {
				e.held.drop(name, token)
			}
		}
	}
}

// releaseAll releases the locks this engine holds, for Close: their next
// waiters need not wait for the leases to run out.
func (e *engine) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for name, token := range e.held.all() {
		e.unlock(ctx, name, token)
	}
}

// heldLocks are the locks an engine holds, by name, with their tokens.
type heldLocks struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (h *heldLocks) add(name string, token uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]uint64)
	}
	h.m[name] = token
}

func (h *heldLocks) drop(name string, token uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m[name] == token {
		delete(h.m, name)
	}
}

func (h *heldLocks) all() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.m)
}

// wakeups let an engine's waiting Lock calls hear that a lock was released.
type wakeups struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// channel returns a channel closed at the next release of the lock.
func (w *wakeups) channel(name string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]chan struct{})
	}
	c := w.m[name]
	if c == nil {
		c = make(chan struct{})
		w.m[name] = c
	}
	return c
}

func (w *wakeups) wake(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.m[name]; c != nil {
		close(c)
		delete(w.m, name)
	}
}
