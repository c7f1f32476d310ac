package sharedstate

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// Mutex is a lock shared by every process of a State, with the methods of
// sync.Mutex plus a context and an error.
//
// The lock belongs to the process that acquired it, not to a goroutine:
// like sync.Mutex, any goroutine of that process may unlock it, and a second
// Lock from the same process waits like any other. Waiters are served in
// the order they asked. When the holding process dies or closes its State,
// the owner releases the lock at once; a holder whose connection to the
// owner drops keeps it while it connects again (see WithLockGrace).
//
// Each acquisition carries a fencing token, larger than every token given
// before for the same name. Pass it to any external system the lock guards,
// so that a holder that lost its lock without knowing it (paused, then
// released because its process was taken for dead) can be told apart.
type Mutex struct {
	st   *State
	name string

	mu    sync.Mutex
	token uint64
}

// Mutex returns the lock called name. Locks are a namespace of their own:
// a Mutex, a Counter and a Map may share a name.
func (s *State) Mutex(name string) *Mutex {
	return &Mutex{st: s, name: name}
}

// Lock waits until the lock is free and takes it. If ctx ends first, Lock
// leaves the queue and returns the context's error, holding nothing.
func (m *Mutex) Lock(ctx context.Context) error {
	resp, err := m.st.do(ctx, transport.Request{Op: transport.OpLock, Name: m.name})
	if err != nil {
		return fmt.Errorf("sharedstate: lock %q: %w", m.name, err)
	}
	m.setToken(resp.Version)
	return nil
}

// TryLock takes the lock if it is free, without waiting for it.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	resp, err := m.st.do(ctx, transport.Request{Op: transport.OpTryLock, Name: m.name})
	if err != nil {
		return false, fmt.Errorf("sharedstate: trylock %q: %w", m.name, err)
	}
	if resp.Found {
		m.setToken(resp.Version)
	}
	return resp.Found, nil
}

// Unlock releases the lock. It returns ErrNotLocked if this process does not
// hold it (any more).
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if _, err := m.st.do(ctx, transport.Request{Op: transport.OpUnlock, Name: m.name, Version: token}); err != nil {
		return fmt.Errorf("sharedstate: unlock %q: %w", m.name, err)
	}
	return nil
}

// Held reports whether this process still holds the lock with the token of
// its latest acquisition. A holder that may have lost its lock (through a
// lease that ran out, with an engine that uses leases, or a takeover grace
// it missed) checks this before acting on what the lock guards.
func (m *Mutex) Held(ctx context.Context) (bool, error) {
	resp, err := m.st.do(ctx, transport.Request{Op: transport.OpLockHeld, Name: m.name, Version: m.Token()})
	if err != nil {
		return false, fmt.Errorf("sharedstate: lock %q: held: %w", m.name, err)
	}
	return resp.Found, nil
}

// Token returns the fencing token of the latest acquisition by this process.
func (m *Mutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

func (m *Mutex) setToken(t uint64) {
	m.mu.Lock()
	m.token = t
	m.mu.Unlock()
}

// abandon sends req, from abandonRequest, so that a Lock or TryLock that
// gave up before its answer came leaves the lock to others: the owner
// withdraws the request, or
// releases the lock if it granted it. It is a write of its own, retried
// across a takeover like any other, so a call returns within its context
// whatever the owner is doing, and the lock still comes back.
func (s *embedded) abandon(req *transport.Request) {
	ctx, cancel := context.WithTimeout(s.ctx, unlockTimeout)
	defer cancel()
	resp, err := s.Do(ctx, req)
	if err == nil {
		err = statusError(resp.Status, resp.Msg)
	}
	if err != nil && s.ctx.Err() == nil {
		s.cfg.logger.Warn("sharedstate: cannot give back a lock a caller gave up on", "state", s.name, "lock", req.Name, "err", err)
	}
}

// abandonRequest withdraws req, a Lock, TryLock or Compute, or gives back
// the lock or claim it got.
func abandonRequest(req *transport.Request) *transport.Request {
	name := req.Name
	if req.Op == transport.OpCompute {
		name = transport.ClaimName(req.Name, req.Key)
	}
	return &transport.Request{Op: transport.OpAbandon, Name: name, Version: req.ID}
}

// mayWait reports whether the owner may answer a request of op only later,
// once a lock or a claim is free: its answer is matched by id even in the
// owner's own process, and a caller that gives up withdraws it.
func mayWait(op transport.Op) bool { return op == transport.OpLock || op == transport.OpCompute }

// unlockTimeout bounds the Unlock that Wrap sends after the handler returns,
// when the request's own context may already be done.
const unlockTimeout = 5 * time.Second

// Wrap returns a handler that runs h while holding the lock, so that h runs
// in one worker process at a time. If the lock cannot be had before the
// request's context ends, the client gets 503 Service Unavailable.
func (m *Mutex) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.Lock(r.Context()); err != nil {
			http.Error(w, "lock unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), unlockTimeout)
			defer cancel()
			m.Unlock(ctx) // if this fails the owner is gone, and the lock with it
		}()
		h.ServeHTTP(w, r)
	})
}
