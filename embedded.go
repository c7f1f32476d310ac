package sharedstate

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// embedded is the engine of Open: the state lives in the memory of one of
// the processes using it, its owner, and the others reach it over a Unix
// socket. It elects an owner, follows takeovers, and resends what a dead
// owner left unanswered.
type embedded struct {
	name     string
	cfg      config
	dir      *statedir.Dir // holds name.lock, name.sock, name.journal, name.snapshot
	sockPath string
	clientID uint64 // this process, as the owner knows it
	acks     ackTracker
	subs     subscriptions
	subMu    sync.Mutex // orders changes to subs with what the owner is told
	touches  touches    // reads of bounded maps from the table, for the owner

	role    atomic.Pointer[role] // nil while no owner is reachable
	mu      sync.Mutex
	ready   chan struct{} // closed when role is set again, or on Close
	lastErr error         // why the latest election failed
	closed  bool

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the supervisor has stopped
}

// role is how this process reaches the state: as its owner or as a proxy.
type role struct{ backend }

type backend interface {
	// do performs req. It returns errOwnerLost if the backend stopped
	// serving before it answered.
	do(ctx context.Context, req *transport.Request) (transport.Response, error)
	// lost is closed when the backend can no longer serve.
	lost() <-chan struct{}
	close()
}

// Errors between embedded.Do and its backends.
var (
	// errOwnerLost: the connection to the owner broke before it answered.
	errOwnerLost = errors.New("connection to the owner lost")
	// errNotSent: the request was not sent, as the connection is ending.
	errNotSent = errors.New("connection to the owner ending")
)

// openEmbedded joins the state called name in the directory of cfg, as its
// owner or as a proxy.
func openEmbedded(ctx context.Context, name string, cfg config) (*embedded, error) {
	dir, err := openStateDir(cfg)
	if err != nil {
		return nil, err
	}
	s := &embedded{
		name:     name,
		cfg:      cfg,
		dir:      dir,
		sockPath: dir.Join(name + ".sock"), // what Dial and Listen take
		clientID: randomID(),
		acks:     ackTracker{done: make(map[uint64]struct{})},
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	if len(s.sockPath) >= 108 {
		dir.Close()
		return nil, fmt.Errorf("sharedstate: socket path %s is longer than a Unix socket allows; choose a shorter directory", s.sockPath)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	b, err := s.elect(ctx)
	if err != nil {
		s.cancel()
		dir.Close()
		return nil, err
	}
	s.setRole(b)
	go s.supervise(b)
	return s, nil
}

func randomID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1 // never 0
}

// Close leaves the state. If this process is the owner, another process takes
// over.
func (s *embedded) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.role.Load() == nil { // else ready is already closed
		close(s.ready)
	}
	s.mu.Unlock()
	s.cancel()
	s.closeTouches()
	<-s.done
	return s.dir.Close()
}

// lockName and sockName are the names of the state's lock file and socket.
func (s *embedded) lockName() string { return s.name + ".lock" }
func (s *embedded) sockName() string { return s.name + ".sock" }

// readTable answers req from the owner's table, if this process is a proxy
// that can.
func (s *embedded) readTable(req *transport.Request) (transport.Response, bool) {
	r := s.role.Load()
	if r == nil {
		return transport.Response{}, false
	}
	p, ok := r.backend.(*proxy)
	if !ok {
		return transport.Response{}, false
	}
	return p.readTable(req)
}

// isOwner reports whether this process currently owns the state.
func (s *embedded) isOwner() bool {
	r := s.role.Load()
	if r == nil {
		return false
	}
	_, ok := r.backend.(*manager)
	return ok
}

func (s *embedded) setRole(b backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b == nil {
		s.role.Store(nil)
		if !s.closed {
			s.ready = make(chan struct{})
		}
		return
	}
	s.role.Store(&role{b})
	s.lastErr = nil
	if !s.closed {
		close(s.ready)
	}
}

// supervise replaces the backend whenever it is lost, until Close.
func (s *embedded) supervise(b backend) {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			s.setRole(nil)
			if p, ok := b.(*proxy); ok {
				p.leave()
			}
			b.close()
			return
		case <-b.lost():
		}
		s.setRole(nil)
		b.close()
		s.cfg.logger.Info("sharedstate: owner lost; electing a new one", "state", s.name)
		start := time.Now()
		for {
			var err error
			if b, err = s.elect(s.ctx); err == nil {
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.lastErr = err
			s.mu.Unlock()
			s.cfg.logger.Warn("sharedstate: cannot reach an owner", "state", s.name, "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
		}
		// Published role first: a Subscribe waiting for an owner holds
		// subMu, which resubscribe takes.
		s.setRole(b)
		s.resubscribe()
		if _, owner := b.(*manager); owner {
			s.cfg.logger.Info("sharedstate: took over as owner", "state", s.name, "pid", os.Getpid(), "after", time.Since(start))
		}
	}
}

// elect becomes the owner if the lock file is free, else connects to the
// owner, retrying while an owner is starting or dying. It returns early only
// for errors that retrying cannot fix.
func (s *embedded) elect(ctx context.Context) (backend, error) {
	backoff := 500 * time.Microsecond
	for {
		m, err := s.own()
		if m != nil || err != nil {
			return m, err
		}
		p, err := dialProxy(ctx, s)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrVersionMismatch) {
			return nil, err
		}
		// No socket yet, or a dead owner's: the holder is starting, or
		// exiting and its lock will be free in a moment.
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w (last attempt: %v)", ErrUnavailable, ctx.Err(), err)
		}
		// Capped low: a takeover is over in milliseconds, and every
		// survivor should notice at once (an attempt costs a few system
		// calls).
		backoff = min(2*backoff, time.Millisecond)
	}
}

// own makes this process the owner if no other process is, and returns
// nil if one is. An owner holds the lock file and the beacon (where the
// system has one): the lock file alone cannot tell a process whose lock
// file was deleted under it from no owner at all. An observer that finds
// no owner reads the state from its files instead.
func (s *embedded) own() (backend, error) {
	// The directory the lock file is in may have been deleted and made
	// again since this process opened it.
	if _, err := stateDir(s.cfg.dir); err != nil {
		return nil, err
	}
	if _, err := s.dir.Reopen(); err != nil {
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	lf, err := s.dir.TryLock(s.lockName())
	if err != nil || lf == nil {
		return nil, err
	}
	b, err := statedir.ClaimBeacon(s.dir.Path(), s.name)
	switch {
	case errors.Is(err, statedir.ErrOwned):
		lf.Release()
		return nil, nil
	case errors.Is(err, statedir.ErrBeaconTaken):
		s.cfg.logger.Error("sharedstate: another user holds this state's beacon: the lock file alone tells owners apart, and deleting it under a running owner would let a second one start",
			"state", s.name, "err", err)
	case err != nil:
		lf.Release()
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	if s.cfg.observer {
		// No owner: read the state as its files hold it, holding the lock
		// meanwhile so that no owner starts changing them.
		if b != nil {
			b.Release()
		}
		o, err := openOffline(s)
		lf.Release()
		if err != nil {
			return nil, err
		}
		return o, nil
	}
	m, err := startManager(s, lf, b)
	if err != nil {
		if b != nil {
			b.Release()
		}
		lf.Release()
		return nil, fmt.Errorf("sharedstate: becoming owner: %w", err)
	}
	return m, nil
}

// do performs one operation through the current backend, waiting for one
// while none is reachable.
//
// A request whose owner went away unanswered is sent again, with the same
// id, to the next owner, which answers a write it has already applied from
// the result it saved: each write is applied exactly once.
func (s *embedded) Do(ctx context.Context, req *transport.Request) (_ transport.Response, err error) {
	if store.IsDeduplicated(req) {
		req.ID = s.acks.begin()
		defer s.acks.finish(req.ID)
	}
	// dropped is the owner that lost the connection with req in flight:
	// req is sent to it once more, as the loss may have nothing to do with
	// req, but not again, lest a request the owner drops connections for
	// be sent in a loop.
	var dropped *proxy
	sent := false // to another process: only an answer says what became of it
	defer func() {
		if err != nil && sent && (mayWait(req.Op) || req.Op == transport.OpTryLock) {
			go s.abandon(abandonRequest(req)) // built now: req goes back to its pool
		}
	}()
	for {
		r := s.role.Load()
		if r == nil {
			var err error
			if r, err = s.waitRole(ctx); err != nil {
				return transport.Response{}, s.unresolved(req, err)
			}
		}
		if req.ID == 0 {
			// Only a proxy's answers and the owner's parked Locks and
			// Computes are matched by id: the owner's other calls need
			// none.
			if _, local := r.backend.(*manager); !local || mayWait(req.Op) {
				req.ID = s.acks.next()
			}
		}
		p, remote := r.backend.(*proxy)
		sent = sent || remote
		resp, err := r.do(ctx, req)
		if err == nil && resp.Status != transport.StatusShuttingDown {
			return resp, nil
		}
		if remote && errors.Is(err, errOwnerLost) {
			if dropped != nil && dropped.owner == p.owner {
				return resp, s.unresolved(req, fmt.Errorf("%w: the owner (pid %d) closed the connection twice with this request in flight",
					ErrUnavailable, p.ownerPID))
			}
			dropped = p
		}
		if errors.Is(err, errNotSent) || errors.Is(err, errOwnerLost) || err == nil {
			s.awaitChange(ctx, r)
			if ctx.Err() != nil {
				return transport.Response{}, s.unresolved(req, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err()))
			}
			continue
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return resp, s.unresolved(req, err)
		}
		return resp, err
	}
}

// unresolved explains an error for a request that may have been applied.
func (s *embedded) unresolved(req *transport.Request, err error) error {
	if !req.Op.Mutates() {
		return err
	}
	return fmt.Errorf("%w; the %v may or may not have been applied", err, req.Op)
}

// awaitChange waits until r is no longer the current role, or ctx ends or
// the State closes (the next waitRole reports those).
func (s *embedded) awaitChange(ctx context.Context, r *role) {
	select {
	case <-r.lost():
	case <-ctx.Done():
		return
	case <-s.ctx.Done():
		return
	}
	// The supervisor replaces r a moment after it is lost.
	for s.role.Load() == r && ctx.Err() == nil {
		time.Sleep(100 * time.Microsecond)
	}
}

func (s *embedded) waitRole(ctx context.Context) (*role, error) {
	for {
		s.mu.Lock()
		r, ready, closed, lastErr := s.role.Load(), s.ready, s.closed, s.lastErr
		s.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case r != nil:
			return r, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("%w: %w (last attempt: %v)", ErrUnavailable, ctx.Err(), lastErr)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
}

func (s *embedded) transportConfig() wire.Config {
	return wire.Config{
		UID:      os.Getuid(),
		PID:      os.Getpid(),
		ID:       s.clientID,
		Secret:   s.cfg.secret,
		MaxFrame: s.cfg.maxFrame,
	}
}
