package sharedstate

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// LoadOrCompute returns the value stored for key. If there is none, it
// calls compute and stores the value it returns (with opts, such as
// WithTTL), once across every process of the state: the first caller to
// find the entry missing claims its computation, and the others, in any
// process, wait for its value (or for their own context) instead of
// computing it again, so a cold key under a stampede costs one call to
// the upstream. If compute fails, the caller that ran it gets its error and
// one of the waiters computes in its place; so does one if the computing
// process dies, or its caller's context ends. Nobody waits for a
// computation that is not running, and no two run at once for one key.
//
// Within a process, the calls for one key wait for one of them, which alone
// asks the owner, as golang.org/x/sync/singleflight does, and they get its
// value as soon as it is computed (even if storing it then fails); each
// caller gets a value of its own. loaded reports whether the value was there
// already or computed by another caller. compute gets the caller's
// context; a computation that outlives it holds the claim until compute
// returns, so give compute a deadline of its own if it may hang. A value
// stored by another write while a computation runs is replaced by the
// computation's.
func (m *Map[V]) LoadOrCompute(ctx context.Context, key string, compute func(ctx context.Context) (V, error), opts ...WriteOption) (value V, loaded bool, err error) {
	w, err := applyWriteOptions(opts)
	if err != nil {
		return value, false, fmt.Errorf("sharedstate: map %q: compute %q: %w", m.name, key, err)
	}
	var left time.Duration
	if value, left, loaded, err = m.LoadTTL(ctx, key); err != nil || loaded {
		if loaded && w.staleAfter != 0 && left < w.ttl-w.staleAfter {
			m.refresh(key, compute, opts)
		}
		return value, loaded, err
	}
	for {
		f, lead := m.st.flights.join(m.name, key)
		if lead {
			return m.lead(ctx, f, key, compute, opts)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return value, false, ctx.Err()
		}
		if f.err == nil {
			return m.valueOf(f)
		}
		// The call this one waited for failed: its error is its own. One
		// of those that waited with it leads the next try.
		if err := ctx.Err(); err != nil {
			return value, false, err
		}
	}
}

// valueOf returns a value of a flight's for one of its waiting calls: a
// copy of the one the flight got, or its own decoding if a copy would share
// references with the other calls' (a slice, a map, a pointer).
func (m *Map[V]) valueOf(f *flight) (value V, loaded bool, err error) {
	switch v := f.decoded.(type) {
	case nil:
		err = m.codec.decode(f.value, &value)
	case []byte:
		value, _ = any(bytes.Clone(v)).(V) // V is []byte
	default:
		value = v.(V)
	}
	return value, true, err
}

// errComputePanicked is what the calls waiting for a computation that
// panicked are told; they try again.
var errComputePanicked = errors.New("the computation panicked")

// lead is LoadOrCompute for the one call of a process that asks the owner.
// The calls waiting for it in this process get the value as soon as it is
// computed, and the Store of the value releases the claim in the same step,
// so that the waiters in other processes get it a round trip sooner.
func (m *Map[V]) lead(ctx context.Context, f *flight, key string, compute func(ctx context.Context) (V, error), opts []WriteOption) (value V, loaded bool, err error) {
	landed := false
	land := func(enc []byte, decoded any, err error) {
		m.st.flights.land(f, enc, decoded, err)
		landed = true
	}
	defer func() {
		if !landed {
			land(nil, nil, cmp.Or(err, errComputePanicked))
		}
	}()
	resp, err := m.do(ctx, transport.Request{Op: transport.OpCompute, Key: key})
	if err != nil || resp.Found {
		value, loaded, err = m.decodeFound(resp, err)
		land(resp.Value, m.shared(value), err)
		return value, loaded, err
	}
	value, err = m.fill(ctx, key, resp.Version, compute, opts, func(enc []byte, v V) { land(enc, m.shared(v), nil) })
	return value, false, err
}

// fill computes the entry whose claim this call holds with token, and
// stores it, which releases the claim; if either fails, it gives the claim
// back. computed, if not nil, gets the value and its encoding as soon as
// they are known.
func (m *Map[V]) fill(ctx context.Context, key string, token uint64, compute func(ctx context.Context) (V, error), opts []WriteOption, computed func(enc []byte, v V)) (V, error) {
	released := false
	defer func() {
		if !released { // also if compute panics
			m.release(key, token)
		}
	}()
	var zero V
	value, err := compute(ctx)
	var req transport.Request
	if err == nil {
		req, err = m.write(transport.OpStore, key, value, opts)
	}
	if err != nil {
		return zero, err
	}
	if computed != nil {
		computed(req.Value, value)
	}
	req.Version = token
	if _, err := m.do(ctx, req); err != nil {
		return zero, err
	}
	released = true
	return value, nil
}

// refresh computes the next value of a stale entry in the background, in
// one process at a time: the one that takes the entry's claim without
// waiting, while the others go on serving the stale value.
func (m *Map[V]) refresh(key string, compute func(ctx context.Context) (V, error), opts []WriteOption) {
	m.st.bg.run(flightKey{m.name, key}, func(ctx context.Context) {
		resp, err := m.st.do(ctx, transport.Request{Op: transport.OpTryLock, Name: transport.ClaimName(m.name, key)})
		if err != nil || !resp.Found {
			return // another caller computes it, or the owner is away: the stale value serves
		}
		if _, err := m.fill(ctx, key, resp.Version, compute, opts, nil); err != nil && ctx.Err() == nil {
			m.st.cfg.logger.Warn("sharedstate: the refresh of a stale entry failed; it serves until its TTL ends", "state", m.st.name, "map", m.name, "key", key, "err", err)
		}
	})
}

// background runs a State's work that no caller waits for (refresh), one
// task per key at a time, until Close, which waits for them.
type background struct {
	mu      sync.Mutex
	ctx     context.Context // ends on Close
	cancel  context.CancelFunc
	running map[flightKey]bool
	closed  bool
	wg      sync.WaitGroup
}

// run runs task for k in a goroutine of its own, unless one runs for k
// already or the State is closed.
func (b *background) run(k flightKey, task func(ctx context.Context)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.running[k] {
		return
	}
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
		b.running = make(map[flightKey]bool)
	}
	b.running[k] = true
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		task(b.ctx)
		b.mu.Lock()
		delete(b.running, k)
		b.mu.Unlock()
	}()
}

// stop ends the tasks running and waits for them; none starts after it.
func (b *background) stop() {
	b.mu.Lock()
	b.closed = true
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// release gives back the claim of key's computation, granted with token:
// its waiters get the entry, or the first of them the claim.
func (m *Map[V]) release(key string, token uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
	defer cancel()
	claim := transport.ClaimName(m.name, key)
	_, err := m.st.do(ctx, transport.Request{Op: transport.OpUnlock, Name: claim, Version: token})
	if err != nil && !errors.Is(err, ErrClosed) { // a closed State's claims go with it
		m.st.cfg.logger.Warn("sharedstate: cannot give back the claim of a computation; its waiters wait until its process is gone",
			"state", m.st.name, "map", m.name, "key", key, "err", err)
	}
}

// flights are a process's LoadOrCompute calls that ask the owner, by map
// and key; the other calls for the same entry wait for them.
type flights struct {
	mu sync.Mutex
	m  map[flightKey]*flight
}

type flightKey struct{ mapName, key string }

// flight is one call that asks the owner; done is closed once it has the
// value's encoding, or failed with err.
type flight struct {
	key     flightKey
	done    chan struct{}
	value   []byte // its encoding
	decoded any    // the value, for V without references; a private copy of a []byte
	err     error
}

// join returns the flight of the entry, and whether the caller leads it:
// it is new, and the caller must land it.
func (fs *flights) join(mapName, key string) (f *flight, lead bool) {
	k := flightKey{mapName, key}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.m[k]; f != nil {
		return f, false
	}
	if fs.m == nil {
		fs.m = make(map[flightKey]*flight)
	}
	f = &flight{key: k, done: make(chan struct{})}
	fs.m[k] = f
	return f, true
}

// land ends a flight with its outcome, for the calls that wait for it.
func (fs *flights) land(f *flight, value []byte, decoded any, err error) {
	fs.mu.Lock()
	delete(fs.m, f.key)
	fs.mu.Unlock()
	f.value, f.decoded, f.err = value, decoded, err
	close(f.done)
}

// shared returns what of a leading call's value the calls waiting for it
// copy (valueOf): the value itself if it holds no references, a copy of its
// bytes if it is a []byte (the leader's caller owns the original), else
// nothing, and they decode its encoding.
func (m *Map[V]) shared(v V) any {
	if b, ok := any(v).([]byte); ok {
		return bytes.Clone(b)
	}
	if m.codec.plain {
		return v
	}
	return nil
}
