package sharedstate

import (
	"context"
	"fmt"

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
// loaded reports whether the value was there already or computed by
// another caller. compute
// gets the caller's context; a computation that outlives it holds the
// claim until compute returns, so give compute a deadline of its own if it
// may hang. A value stored by another write while a computation runs is
// replaced by the computation's.
func (m *Map[V]) LoadOrCompute(ctx context.Context, key string, compute func(ctx context.Context) (V, error), opts ...WriteOption) (value V, loaded bool, err error) {
	if _, err := applyWriteOptions(opts); err != nil {
		return value, false, fmt.Errorf("sharedstate: map %q: compute %q: %w", m.name, key, err)
	}
	if value, loaded, err = m.Load(ctx, key); err != nil || loaded {
		return value, loaded, err
	}
	resp, err := m.do(ctx, transport.Request{Op: transport.OpCompute, Key: key})
	if err != nil || resp.Found {
		return m.decodeFound(resp, err)
	}
	defer m.release(key, resp.Version) // also if compute panics
	if value, err = compute(ctx); err != nil {
		var zero V
		return zero, false, err
	}
	if err := m.Store(ctx, key, value, opts...); err != nil {
		var zero V
		return zero, false, err
	}
	return value, false, nil
}

// release gives back the claim of key's computation, granted with token:
// its waiters get the entry, or the first of them the claim.
func (m *Map[V]) release(key string, token uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
	defer cancel()
	claim := transport.ClaimName(m.name, key)
	if _, err := m.st.do(ctx, transport.Request{Op: transport.OpUnlock, Name: claim, Version: token}); err != nil {
		m.st.cfg.logger.Warn("sharedstate: cannot give back the claim of a computation; its waiters wait for the claim's holder to be gone", "map", m.name, "key", key, "err", err)
	}
}
