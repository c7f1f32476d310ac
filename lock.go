package sharedstate

import (
	"context"
	"encoding/binary"
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

// abandonRequest withdraws req, a Lock or TryLock, or gives back the lock it
// got.
func abandonRequest(req *transport.Request) *transport.Request {
	return &transport.Request{Op: transport.OpAbandon, Name: req.Name, Version: req.ID}
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

// lockState is a lock as the owner keeps it. The holder is a client id, not
// a connection, so that a holder keeps its lock across a takeover.
type lockState struct {
	holder    uint64   // client id; 0 when free
	holderReq uint64   // the holder's Lock request, to recognise its retry
	token     uint64   // the latest fencing token given out
	since     int64    // when the holder got it (store time, unix nanoseconds)
	queue     []waiter // first come, first served
	// graceEnd, if not 0, is when a holder that has not reconnected to a
	// new owner loses the lock (unix nanoseconds).
	graceEnd int64
}

type waiter struct {
	sess *session
	id   uint64 // the parked Lock request
}

// lockEntry describes a lock for OpList: Version is its latest token, and
// if it is held Value holds the holder's process id (0 if unknown) and
// since, as uvarint and varint.
func (s *store) lockEntry(name string) transport.Entry {
	l := s.locks[name]
	e := transport.Entry{Key: name, Version: l.token}
	if l.holder != 0 {
		e.Value = binary.AppendUvarint(nil, uint64(s.procs[l.holder].pid))
		e.Value = binary.AppendVarint(e.Value, l.since)
	}
	return e
}

// applyLock performs the lock operations of apply; s.mu is held.
func (s *store) applyLock(sess *session, req *transport.Request, resp transport.Response) (transport.Response, bool) {
	l := s.lockNamed(req.Name)
	switch req.Op {
	case transport.OpLock, transport.OpTryLock:
		if l.holder == sess.id && l.holderReq == req.ID && req.ID != 0 {
			// A retry, across a takeover, of the request that got the lock.
			resp.Found, resp.Version = true, l.token
			return resp, false
		}
		if l.holder == 0 {
			resp.Found = true
			resp.Version = s.grant(req.Name, l, sess.id, req.ID)
		} else if req.Op == transport.OpLock {
			l.queue = append(l.queue, waiter{sess, req.ID})
			sess.parked[req.ID] = req.Name
			return resp, true
		}
	case transport.OpLockHeld:
		resp.Found = l.holder == sess.id && l.token == req.Version
	case transport.OpAbandon:
		if _, parked := sess.parked[req.Version]; parked {
			delete(sess.parked, req.Version)
			l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess && w.id == req.Version })
		} else if l.holder == sess.id && l.holderReq == req.Version {
			s.release(req.Name, l)
		}
	case transport.OpUnlock:
		if l.holder != sess.id || l.token != req.Version {
			return fail(resp, transport.StatusNotLocked, fmt.Sprintf("%q is not held with token %d by pid %d", req.Name, req.Version, sess.pid))
		}
		s.release(req.Name, l)
	}
	return resp, false
}

// grant gives the lock to a client's request and returns the new token.
func (s *store) grant(name string, l *lockState, client, req uint64) uint64 {
	l.token++
	l.holder, l.holderReq, l.graceEnd = client, req, 0
	l.since = s.tick(s.elapsed())
	s.journal(grantRecord(s.scratch[:0], l.since, client, req, name, l.token))
	return l.token
}

// release frees a held lock and hands it to the first waiter, if any. The
// caller has journaled why (an Unlock, or a release record).
func (s *store) release(name string, l *lockState) {
	l.holder, l.holderReq, l.graceEnd = 0, 0, 0
	if len(l.queue) == 0 {
		return
	}
	w := l.queue[0]
	l.queue = slices.Delete(l.queue, 0, 1)
	delete(w.sess.parked, w.id)
	token := s.grant(name, l, w.sess.id, w.id)
	w.sess.deliver(transport.Response{ID: w.id, Found: true, Version: token})
}

// forceRelease frees a lock whose holder is gone, journaling that.
func (s *store) forceRelease(name string, l *lockState) {
	s.journal(releaseRecord(s.scratch[:0], s.clock, name))
	s.release(name, l)
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

// disconnect ends a session: its waiting Locks are withdrawn. Its locks
// stay, for the caller to release or give grace to, depending on what
// became of its process.
func (s *store) disconnect(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdraw(sess)
	if s.connected[sess.id]--; s.connected[sess.id] <= 0 {
		delete(s.connected, sess.id)
	}
}

// withdraw takes a session's waiting Locks out of their queues; s.mu is
// held.
func (s *store) withdraw(sess *session) {
	for id, name := range sess.parked {
		l := s.locks[name]
		l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess })
		delete(sess.parked, id)
	}
}

// connect records a new session of a client, from process p: the locks it
// holds are its own again, whatever grace a takeover or a dropped
// connection gave them.
func (s *store) connect(client uint64, p process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected[client]++
	s.identify(client, p)
	for _, l := range s.locks {
		if l.holder == client {
			l.graceEnd = 0
		}
	}
}

// identify records that client runs in process p; s.mu is held.
func (s *store) identify(client uint64, p process) {
	if known, ok := s.procs[client]; !ok || known != p {
		s.procs[client] = p
		s.journal(clientRecord(s.scratch[:0], client, p))
	}
}

// isConnected reports whether a client has a session.
func (s *store) isConnected(client uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected[client] > 0
}

// releaseLocks releases at once the locks of a client with no session: its
// process is gone, or its State closed.
func (s *store) releaseLocks(client uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected[client] == 0 {
		s.releaseHeld(client)
	}
}

// releaseHeld releases the locks a client holds; s.mu is held.
func (s *store) releaseHeld(client uint64) {
	if s.broken != nil {
		return
	}
	s.tick(s.elapsed())
	for name, l := range s.locks {
		if l.holder == client {
			s.forceRelease(name, l)
		}
	}
}

// collect drops what the owner keeps for clients whose processes have
// exited without its noticing (it was another owner then, or it missed the
// exit): their locks, their saved answers and their process. So what the
// owner keeps is bounded by the processes alive.
func (s *store) collect() {
	s.mu.Lock()
	var idle []uint64 // clients with no session, but locks or answers
	for id := range s.procs {
		switch {
		case s.connected[id] > 0 || id == s.owner:
		case s.clients[id] == nil && !s.holds(id):
			delete(s.procs, id) // nothing to keep for it
		default:
			idle = append(idle, id)
		}
	}
	procs := make([]process, len(idle))
	for i, id := range idle {
		procs[i] = s.procs[id]
	}
	s.mu.Unlock()
	// Read /proc without the store's lock.
	var gone []uint64
	for i, p := range procs {
		if p.exited() {
			gone = append(gone, idle[i])
		}
	}
	if len(gone) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range gone {
		if s.connected[id] == 0 {
			s.releaseHeld(id)
			s.forget(id)
		}
	}
}

// holds reports whether a client holds a lock; s.mu is held.
func (s *store) holds(client uint64) bool {
	for _, l := range s.locks {
		if l.holder == client {
			return true
		}
	}
	return false
}

// graceLocks gives the locks of a client with no session the grace of a
// takeover, to be claimed by the client connecting again: a live process
// whose connection dropped keeps its locks.
func (s *store) graceLocks(client uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected[client] > 0 {
		return
	}
	end := s.tick(s.elapsed()) + int64(s.grace)
	for _, l := range s.locks {
		if l.holder == client && l.graceEnd == 0 {
			l.graceEnd = end
		}
	}
}

// startGrace gives every lock held by another process than the new owner
// grace to be claimed by its holder reconnecting; the previous owner's locks
// are released at once, as that process is gone. s.mu is held.
func (s *store) startGrace(prevOwner, newOwner uint64) {
	for name, l := range s.locks {
		switch l.holder {
		case 0, newOwner:
		case prevOwner:
			s.forceRelease(name, l)
		default:
			l.graceEnd = s.clock + int64(s.grace)
		}
	}
}

// expireGrace releases the locks whose holders did not come back in time.
// s.mu is held.
func (s *store) expireGrace(now int64) {
	for name, l := range s.locks {
		if l.graceEnd != 0 && l.graceEnd <= now {
			s.forceRelease(name, l)
		}
	}
}
