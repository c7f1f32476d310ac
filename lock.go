package sharedstate

import (
	"context"
	"fmt"
	"net/http"
	"slices"
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
// the order they asked. When the holding process dies, the owner releases
// the lock at once.
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
	resp, err := m.st.do(ctx, &transport.Request{Op: transport.OpLock, Name: m.name})
	if err != nil {
		return fmt.Errorf("sharedstate: lock %q: %w", m.name, err)
	}
	m.setToken(resp.Version)
	return nil
}

// TryLock takes the lock if it is free, without waiting for it.
func (m *Mutex) TryLock(ctx context.Context) (bool, error) {
	resp, err := m.st.do(ctx, &transport.Request{Op: transport.OpTryLock, Name: m.name})
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
	if _, err := m.st.do(ctx, &transport.Request{Op: transport.OpUnlock, Name: m.name, Version: token}); err != nil {
		return fmt.Errorf("sharedstate: unlock %q: %w", m.name, err)
	}
	return nil
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

// lockState is a lock as the owner keeps it.
type lockState struct {
	holder *session // nil when free
	token  uint64   // the latest fencing token given out
	queue  []waiter // first come, first served
}

type waiter struct {
	sess *session
	id   uint64 // the parked Lock request
}

// applyLock performs the lock operations of apply; s.mu is held.
func (s *store) applyLock(sess *session, req *transport.Request, resp transport.Response) (transport.Response, bool) {
	l := s.locks[req.Name]
	if l == nil {
		l = &lockState{}
		s.locks[req.Name] = l
	}
	switch req.Op {
	case transport.OpLock:
		if l.holder != nil {
			l.queue = append(l.queue, waiter{sess, req.ID})
			sess.parked[req.ID] = req.Name
			return resp, true
		}
		resp.Version = s.grant(req.Name, l, sess)
	case transport.OpTryLock:
		if l.holder == nil {
			resp.Found = true
			resp.Version = s.grant(req.Name, l, sess)
		}
	case transport.OpUnlock:
		if l.holder != sess || l.token != req.Version {
			return fail(resp, transport.StatusNotLocked, fmt.Sprintf("%q is not held with token %d by pid %d", req.Name, req.Version, sess.pid))
		}
		s.release(req.Name, l)
	}
	return resp, false
}

func (s *store) grant(name string, l *lockState, sess *session) uint64 {
	l.token++
	l.holder = sess
	sess.held[name] = struct{}{}
	return l.token
}

// release frees a held lock and hands it to the first waiter, if any.
func (s *store) release(name string, l *lockState) {
	delete(l.holder.held, name)
	l.holder = nil
	if len(l.queue) == 0 {
		return
	}
	w := l.queue[0]
	l.queue = slices.Delete(l.queue, 0, 1)
	delete(w.sess.parked, w.id)
	token := s.grant(name, l, w.sess)
	w.sess.deliver(transport.Response{ID: w.id, Version: token})
}

// cancel withdraws a parked Lock. It reports false if the request is not
// parked: already granted (and delivered), or unknown.
func (s *store) cancel(sess *session, id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := sess.parked[id]
	if !ok {
		return false
	}
	delete(sess.parked, id)
	l := s.locks[name]
	l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess && w.id == id })
	return true
}

// refuseWaiters answers every parked Lock with StatusShuttingDown, for an
// owner that is closing.
func (s *store) refuseWaiters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.locks {
		for _, w := range l.queue {
			delete(w.sess.parked, w.id)
			w.sess.deliver(transport.Response{ID: w.id, Status: transport.StatusShuttingDown, Msg: "the owner is closing"})
		}
		l.queue = nil
	}
}

// drop forgets a session whose process is gone: its locks are released and
// its waiting requests withdrawn.
func (s *store) drop(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range sess.parked {
		l := s.locks[sess.parked[id]]
		l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess })
	}
	clear(sess.parked)
	for name := range sess.held {
		s.release(name, s.locks[name])
	}
}
