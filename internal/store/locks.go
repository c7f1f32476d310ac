package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/sharedstate/sharedstate/transport"
)

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
	sess    *Session
	id      uint64 // the parked Lock or Compute request
	compute bool   // a Compute: its grant is not an entry found
}

// lockEntry describes a lock for OpList: Version is its latest token, and
// if it is held Value holds the holder's Process id (0 if unknown) and
// since, as uvarint and varint.
func (s *Store) lockEntry(name string) transport.Entry {
	l := s.locks[name]
	e := transport.Entry{Key: name, Version: l.token}
	if l.holder != 0 {
		e.Value = binary.AppendUvarint(nil, uint64(s.procs[l.holder].pid))
		e.Value = binary.AppendVarint(e.Value, l.since)
	}
	return e
}

// applyLock performs the lock operations of apply, and Compute, whose
// lock is the claim of a missing entry; s.mu is held.
func (s *Store) applyLock(sess *Session, req *transport.Request, resp transport.Response, now int64) (transport.Response, bool) {
	name := req.Name
	if req.Op == transport.OpCompute {
		if e, ok := s.entry(req.Name, req.Key); ok {
			resp.Found, resp.Value, resp.Version, resp.TTL = true, bytes.Clone(e.value), e.version, e.left(now)
			return resp, false
		}
		name = transport.ClaimName(req.Name, req.Key)
		s.claims[name] = entryKey{req.Name, req.Key}
	}
	l := s.lockNamed(name)
	switch req.Op {
	case transport.OpLock, transport.OpTryLock, transport.OpCompute:
		// A Compute's grant is not an entry found: it claims the entry's
		// computation.
		granted := req.Op != transport.OpCompute
		if l.holder == sess.id && l.holderReq == req.ID && req.ID != 0 {
			// A retry, across a takeover, of the request that got the lock.
			resp.Found, resp.Version = granted, l.token
			return resp, false
		}
		if l.holder == 0 {
			resp.Found = granted
			resp.Version = s.grant(name, l, sess.id, req.ID)
		} else if req.Op != transport.OpTryLock {
			l.queue = append(l.queue, waiter{sess, req.ID, !granted})
			sess.parked[req.ID] = name
			return resp, true
		}
	case transport.OpLockHeld:
		resp.Found = l.holder == sess.id && l.token == req.Version
	case transport.OpAbandon:
		if _, parked := sess.parked[req.Version]; parked {
			delete(sess.parked, req.Version)
			l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess && w.id == req.Version })
		} else if l.holder == sess.id && l.holderReq == req.Version {
			s.release(name, l)
		}
	case transport.OpUnlock:
		if l.holder != sess.id || l.token != req.Version {
			resp, _ = fail(resp, transport.StatusNotLocked, fmt.Sprintf("%q is not held with token %d by pid %d", req.Name, req.Version, sess.pid))
		} else {
			s.release(name, l)
		}
	}
	s.dropClaim(name, l) // a claim asked about, or given up, by nobody who holds it
	return resp, false
}

// grant gives the lock to a client's request and returns the new token.
func (s *Store) grant(name string, l *lockState, client, req uint64) uint64 {
	l.token++
	l.holder, l.holderReq, l.graceEnd = client, req, 0
	l.since = s.tick(s.elapsed())
	s.journal(grantRecord(s.scratch[:0], l.since, client, req, name, l.token))
	s.keepLock(name, l)
	return l.token
}

// release frees a held lock and hands it to the first waiter, if any. The
// caller has journaled why (an Unlock, or a release record). The waiters
// of a claim whose entry is there now get the entry instead, all of them:
// it was computed.
func (s *Store) release(name string, l *lockState) {
	l.holder, l.holderReq, l.graceEnd = 0, 0, 0
	s.keepLock(name, l)
	if k, ok := s.claims[name]; ok && len(l.queue) > 0 {
		if e, ok := s.entry(k.mapName, k.key); ok {
			resp := transport.Response{Found: true, Value: bytes.Clone(e.value), Version: e.version, TTL: e.left(s.clock)}
			for _, w := range l.queue {
				delete(w.sess.parked, w.id)
				resp.ID = w.id
				w.sess.deliver(resp)
			}
			l.queue = nil
		}
	}
	if len(l.queue) == 0 {
		s.dropClaim(name, l)
		return
	}
	w := l.queue[0]
	l.queue = slices.Delete(l.queue, 0, 1)
	delete(w.sess.parked, w.id)
	token := s.grant(name, l, w.sess.id, w.id)
	w.sess.deliver(transport.Response{ID: w.id, Found: !w.compute, Version: token})
}

// endClaim releases the claim of the entry req stored, if sess holds it
// with the token req.Version: the Store that ends a Compute, whose waiters
// get the entry at once. A memory-only state journals the release as a
// lock's, since it journals no Store.
func (s *Store) endClaim(sess *Session, req *transport.Request, now int64) {
	name := transport.ClaimName(req.Name, req.Key)
	l := s.locks[name]
	if l == nil || l.holder != sess.id || l.token != req.Version {
		return // taken back already (the holder's grace ran out): the Store stands
	}
	if s.persist.locksOnly {
		s.journal(releaseRecord(s.scratch[:0], now, name))
	}
	s.release(name, l)
}

// dropClaim forgets a claim that nobody holds or waits for: unlike a
// lock's, its name is not the user's, and a claim is made for every entry
// computed. A claim made again later starts its tokens from the store's
// clock, so that no token is given twice.
func (s *Store) dropClaim(name string, l *lockState) {
	if !strings.HasPrefix(name, transport.ClaimPrefix) || l.holder != 0 || len(l.queue) > 0 {
		return
	}
	delete(s.locks, name)
	delete(s.claims, name)
	s.lockNames.Delete(name)
	s.unkeep(keptLockPrefix + name)
}

// forceRelease frees a lock whose holder is gone, journaling that. Its
// record is an operation of its own, published at once as replay does:
// a holder gone may leave many locks, more than one transaction holds.
func (s *Store) forceRelease(name string, l *lockState) {
	s.journal(releaseRecord(s.scratch[:0], s.clock, name))
	s.release(name, l)
	s.finish()
}

// refuseWaiters answers every parked Lock with StatusShuttingDown, for an
// owner that is closing.
func (s *Store) RefuseWaiters() {
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

// disconnect ends a Session: its waiting Locks are withdrawn. Its locks
// stay, for the caller to release or give grace to, depending on what
// became of its process.
func (s *Store) Disconnect(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.withdraw(sess)
	if s.connected[sess.id]--; s.connected[sess.id] <= 0 {
		delete(s.connected, sess.id)
	}
}

// withdraw takes a Session's waiting Locks out of their queues; s.mu is
// held.
func (s *Store) withdraw(sess *Session) {
	for id, name := range sess.parked {
		l := s.locks[name]
		l.queue = slices.DeleteFunc(l.queue, func(w waiter) bool { return w.sess == sess })
		delete(sess.parked, id)
	}
}

// connect records a new Session of a client, from Process p: the locks it
// holds are its own again, whatever grace a takeover or a dropped
// connection gave them.
func (s *Store) Connect(client uint64, p Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.finish()
	s.connected[client]++
	s.identify(client, p)
	for _, l := range s.locks {
		if l.holder == client {
			l.graceEnd = 0
		}
	}
}

// identify records that client runs in Process p; s.mu is held.
func (s *Store) identify(client uint64, p Process) {
	if known, ok := s.procs[client]; !ok || known != p {
		s.journal(clientRecord(s.scratch[:0], client, p))
		s.setProc(client, p)
	}
}

// isConnected reports whether a client has a Session.
func (s *Store) IsConnected(client uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected[client] > 0
}

// releaseLocks releases at once the locks of a client with no Session: its
// Process is gone, or its State closed.
func (s *Store) ReleaseLocks(client uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.finish()
	if s.connected[client] == 0 {
		s.releaseHeld(client)
	}
}

// releaseHeld releases the locks a client holds; s.mu is held.
func (s *Store) releaseHeld(client uint64) {
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
func (s *Store) Collect() {
	s.mu.Lock()
	var idle []uint64 // clients with no Session, but locks or answers
	for id := range s.procs {
		switch {
		case s.connected[id] > 0 || id == s.owner:
		case s.clients[id] == nil && !s.holds(id):
			s.dropProc(id) // nothing to keep for it
		default:
			idle = append(idle, id)
		}
	}
	procs := make([]Process, len(idle))
	for i, id := range idle {
		procs[i] = s.procs[id]
	}
	s.finish()
	s.mu.Unlock()
	// Read /proc without the store's lock.
	var gone []uint64
	for i, p := range procs {
		if p.Exited() {
			gone = append(gone, idle[i])
		}
	}
	if len(gone) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.finish()
	for _, id := range gone {
		if s.connected[id] == 0 {
			s.releaseHeld(id)
			s.forget(id)
		}
	}
}

// holds reports whether a client holds a lock; s.mu is held.
func (s *Store) holds(client uint64) bool {
	for _, l := range s.locks {
		if l.holder == client {
			return true
		}
	}
	return false
}

// graceLocks gives the locks of a client with no Session the grace of a
// takeover, to be claimed by the client connecting again: a live Process
// whose connection dropped keeps its locks.
func (s *Store) GraceLocks(client uint64) {
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

// startGrace gives every lock held by another Process than the new owner
// grace to be claimed by its holder reconnecting; the previous owner's locks
// are released at once, as that Process is gone. s.mu is held.
func (s *Store) startGrace(prevOwner, newOwner uint64) {
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
func (s *Store) expireGrace(now int64) {
	for name, l := range s.locks {
		if l.graceEnd != 0 && l.graceEnd <= now {
			s.forceRelease(name, l)
		}
	}
}
