package sharedstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sharedstate/sharedstate/internal/mailbox"
	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// maxBacklog bounds the answers queued for one client. A client that sends
// requests without reading the answers is not read from past it.
const maxBacklog = 8 << 20

// flushAt is the size of the answers held back for one write beyond which
// they are written even with more requests at hand: batching pays for small
// answers, while a large one only waits.
const flushAt = 256 << 10

// leaveTimeout bounds how long a closing owner waits for its clients to
// collect the answers to requests they sent before they learnt it is leaving.
const leaveTimeout = time.Second

// collectEvery is how many sweeps pass between two looks for the clients
// whose processes have exited (store.collect), which reads /proc.
const collectEvery = 4

// starvedLogInterval spaces the logs of an owner out of descriptors, which
// may fail to accept many times a second.
const starvedLogInterval = time.Minute

// sweepInterval is how often the owner removes expired entries when no
// operation does it first.
const sweepInterval = 250 * time.Millisecond

// manager is the owner's side of a state: it holds the election lock, keeps
// the store, serves the other processes on the socket, and serves its own
// process directly.
type manager struct {
	st     *embedded
	since  time.Time // when this process became the owner
	store  *store.Store
	lock   *statedir.Lock   // replaced by guard if the lock file is
	beacon *statedir.Beacon // nil where there is none
	local  *store.Session

	waitMu sync.Mutex
	waits  map[uint64]chan transport.Response // parked Locks of this process

	mu      sync.Mutex
	conns   map[*net.UnixConn]*wire.Conn // open client connections; nil until joined
	closing atomic.Bool                  // set under mu; requests now get StatusShuttingDown
	ln      *net.UnixListener            // replaced by guard if the socket is
	sockID  statedir.FileID              // the socket file ln is bound to

	channels store.Channels // pub/sub subscriptions
	watcher  watcher        // the connections' mailboxes

	quit     chan struct{}
	lostC    chan struct{} // closed if the listener or the journal fails
	loseOnce sync.Once
	wg       sync.WaitGroup
	serving  sync.WaitGroup // the serve goroutines
}

// startManager makes this process the owner: it binds the socket, opens
// the state (store.Recover), and starts its term. The caller
// holds lf and b (nil where there is no beacon).
func startManager(st *embedded, lf *statedir.Lock, b *statedir.Beacon) (*manager, error) {
	start := time.Now()
	m := &manager{
		st:     st,
		since:  start,
		lock:   lf,
		beacon: b,
		waits:  make(map[uint64]chan transport.Response),
		conns:  make(map[*net.UnixConn]*wire.Conn),
		quit:   make(chan struct{}),
		lostC:  make(chan struct{}),
	}
	// Bound first: clients connect while the state is replayed, and their
	// handshakes complete as soon as it is ready, instead of retrying.
	if err := m.listen(); err != nil {
		return nil, err
	}
	s, replayed, err := store.Recover(st.dir, st.name, st.cfg.storeOptions(), func(err error) {
		st.cfg.logger.Error("sharedstate: journal failed; giving up ownership", "state", st.name, "err", err)
		m.lose()
	})
	if err != nil {
		m.ln.Close()
		return nil, err
	}
	m.store = s
	s.BeginTerm(st.clientID, store.ProcessOf(os.Getpid()), st.cfg.lockGrace)
	s.Changed = m.channels.PublishChange // after replay: replayed writes are old news
	m.local = s.NewOwnSession(st.clientID, os.Getpid(), m.deliverLocal)
	m.watcher.wake = make(chan struct{}, 1)
	m.wg.Add(4)
	go m.watchMailboxes()
	go m.acceptLoop(m.ln)
	go m.sweepLoop()
	go m.guardLoop()
	table := "rebuilt"
	if s.Adopted() {
		table = "adopted"
	}
	st.cfg.logger.Info("sharedstate: became owner", "state", st.name, "pid", os.Getpid(),
		"table", table, "replayed", replayed, "took", time.Since(start), "durability", st.cfg.durability)
	return m, nil
}

func (m *manager) lost() <-chan struct{} { return m.lostC }

// lose gives up ownership: the supervisor closes the manager and elects anew.
func (m *manager) lose() { m.loseOnce.Do(func() { close(m.lostC) }) }

// close stops serving and releases the election lock for the next owner.
// Each client is told the owner is leaving (a response with id 0 and
// StatusShuttingDown); requests it sent before it learnt that are answered,
// applied or with StatusShuttingDown (not applied), so that no client is left
// unsure whether a write happened. Clients close their end once answered.
func (m *manager) close() {
	m.closing.Store(true) // before the listener closes: acceptLoop reads it
	m.mu.Lock()
	m.ln.Close()
	for _, conn := range m.conns {
		if conn != nil {
			conn.Queue(&wire.Response{Status: transport.StatusShuttingDown})
		}
	}
	m.mu.Unlock()
	m.store.RefuseWaiters()
	if !waitTimeout(&m.serving, leaveTimeout) {
		m.st.cfg.logger.Warn("sharedstate: clients slow to leave; closing their connections", "state", m.st.name)
	}
	m.mu.Lock()
	for nc := range m.conns {
		nc.Close()
	}
	m.mu.Unlock()
	close(m.quit)
	m.wg.Wait()
	m.store.Disconnect(m.local)
	m.store.ReleaseLocks(m.local.ID())
	release := m.store.Retire()
	if m.beacon != nil {
		m.beacon.Release()
	}
	m.lock.Release()
	release() // the next owner need not wait for the files to be unmapped
}

// waitTimeout waits for wg for at most d, and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// do serves this process's own requests without a socket.
func (m *manager) do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	if store.IsMessageOp(req.Op) {
		return m.channels.Serve(m.local, req, m.pushLocal), nil
	}
	if !mayWait(req.Op) {
		resp, _ := m.store.Apply(m.local, req)
		m.addStats(req, &resp)
		return resp, m.durable(ctx, req)
	}
	ch := make(chan transport.Response, 1)
	m.waitMu.Lock()
	m.waits[req.ID] = ch
	m.waitMu.Unlock()
	resp, parked := m.store.Apply(m.local, req)
	if !parked {
		m.forgetWait(req.ID)
		return resp, m.durable(ctx, req)
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		// Withdrawn, or given back if granted as ctx ended.
		m.forgetWait(req.ID)
		m.store.Apply(m.local, abandonRequest(req))
		return transport.Response{}, ctx.Err()
	case <-m.quit:
		m.forgetWait(req.ID)
		return transport.Response{}, ErrClosed
	}
}

// durable waits until the journal holds a write on disk, with
// DurabilityDisk; at once otherwise.
func (m *manager) durable(ctx context.Context, req *transport.Request) error {
	if !m.store.Syncs() || !req.Op.Mutates() {
		return nil
	}
	done := make(chan struct{})
	m.store.WhenDurable(func() { close(done) })
	select {
	case <-done:
		return nil
	case <-m.lostC:
		return errOwnerLost // the sync failed: retry with the next owner
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *manager) forgetWait(id uint64) {
	m.waitMu.Lock()
	delete(m.waits, id)
	m.waitMu.Unlock()
}

// addStats adds what the owner knows beyond the store to a Stats answer.
func (m *manager) addStats(req *transport.Request, resp *transport.Response) {
	if req.Op != transport.OpStats || resp.Stats == nil {
		return
	}
	m.mu.Lock()
	resp.Stats.Clients = int64(len(m.conns))
	m.mu.Unlock()
	resp.Stats.OwnerPID = int64(os.Getpid())
	resp.Stats.OwnerSince = m.since.UnixNano()
	resp.Stats.Durability = int64(m.st.cfg.durability)
}

// pushLocal hands a published message to this process's subscribers.
func (m *manager) pushLocal(ev *wire.Event) { m.st.subs.deliver(ev.Channel, ev.Data) }

// deliverLocal answers a parked Lock of this process.
func (m *manager) deliverLocal(resp transport.Response) {
	m.waitMu.Lock()
	ch := m.waits[resp.ID]
	delete(m.waits, resp.ID)
	m.waitMu.Unlock()
	if ch != nil {
		ch <- resp
	}
}

// listen binds the state's socket, in place of whatever is at its path.
func (m *manager) listen() error {
	ln, err := wire.Listen(m.st.sockPath)
	if err != nil {
		return err
	}
	id, err := m.st.dir.Stat(m.st.sockName())
	if err != nil {
		ln.Close()
		return err
	}
	m.mu.Lock()
	if m.closing.Load() {
		m.mu.Unlock()
		ln.Close()
		return errors.New("the owner is closing")
	}
	old := m.ln
	m.ln, m.sockID = ln, id
	m.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (m *manager) listener() *net.UnixListener {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ln
}

// acceptLoop accepts the connections to ln until it closes.
func (m *manager) acceptLoop(ln *net.UnixListener) {
	defer m.wg.Done()
	var starved time.Time // when accept last failed for want of descriptors, logged
	for {
		nc, err := ln.AcceptUnix()
		if err != nil {
			if m.closing.Load() || m.listener() != ln { // closed, or replaced by guard
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if isTemporary(err) { // out of descriptors: wait for some to close
				if time.Since(starved) > starvedLogInterval {
					starved = time.Now()
					m.st.cfg.logger.Error("sharedstate: out of file descriptors: no process can join the state until this one closes some",
						"state", m.st.name, "err", err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			m.st.cfg.logger.Error("sharedstate: listener failed; giving up ownership", "err", err)
			m.lose()
			return
		}
		// Counted under m.mu, which close takes after it sets closing:
		// either close waits for this connection, or it is refused here,
		// never added while close waits.
		m.mu.Lock()
		if m.closing.Load() {
			m.mu.Unlock()
			nc.Close()
			continue // the closed listener ends the loop
		}
		m.wg.Add(1)
		m.serving.Add(1)
		m.mu.Unlock()
		go m.serve(nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (m *manager) sweepLoop() {
	defer m.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-t.C:
			m.store.Sweep()
			if i%collectEvery == 0 {
				m.store.Collect()
			}
		case <-m.quit:
			return
		}
	}
}

// serve runs one client connection until it ends. Whatever goes wrong with
// it (a refused peer, a malformed frame) ends this connection alone.
func (m *manager) serve(nc *net.UnixConn) {
	defer m.wg.Done()
	defer m.serving.Done()
	// Registered before the handshake, so that close does not wait for a
	// peer that is slow to complete it.
	m.mu.Lock()
	if m.closing.Load() {
		m.mu.Unlock()
		nc.Close()
		return
	}
	m.conns[nc] = nil
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.conns, nc)
		m.mu.Unlock()
	}()

	log := m.st.cfg.logger
	cfg := m.st.transportConfig()
	box, boxFile, err := mailbox.Create()
	if err != nil && !errors.Is(err, mailbox.ErrUnsupported) {
		log.Debug("sharedstate: no mailbox for a connection; it uses the socket alone", "state", m.st.name, "err", err)
	}
	if boxFile != nil {
		cfg.Attach = boxFile
	}
	conn, join, err := wire.Accept(nc, cfg)
	if boxFile != nil {
		boxFile.Close() // the client has its own descriptor now
	}
	if err != nil {
		if box != nil {
			box.Close()
		}
		log.Warn("sharedstate: refused a connection", "state", m.st.name, "reason", err)
		return
	}

	m.mu.Lock()
	if m.closing.Load() {
		conn.Queue(&wire.Response{Status: transport.StatusShuttingDown})
	}
	m.conns[nc] = conn
	m.mu.Unlock()

	proc := store.ProcessOf(int(join.PID))
	sess := m.store.NewSession(join.ClientID, int(join.PID), func(resp transport.Response) {
		// With the store locked: queue, never block on a slow reader.
		m.store.WhenDurable(func() { conn.Queue((*wire.Response)(&resp)) })
	})
	m.store.Connect(join.ClientID, proc)
	var wake chan struct{}
	if box != nil {
		wake = m.watcher.wake
		e := &watched{sess: sess, slotAnswers: slotAnswers{box: box, conn: conn}}
		m.watcher.add(e)
		defer func() {
			m.watcher.remove(e)
			box.Close()
		}()
	}
	err = m.serveRequests(conn, sess, wake)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, syscall.ECONNRESET) {
		log.Warn("sharedstate: closed a connection", "state", m.st.name, "pid", join.PID, "reason", err)
	}
	m.channels.Drop(sess)
	m.store.Disconnect(sess)
	conn.Close()
	if !m.closing.Load() { // else its clients keep their locks for the next owner
		m.store.GraceLocks(join.ClientID)
		m.releaseOnExit(proc, join.ClientID)
	}
}

// releaseOnExit releases a disconnected client's locks as soon as its
// process exits, if that is within the grace and the client has not
// connected again meanwhile. A connection ends a moment before its process
// is seen to exit, and it may also end with the process alive: the owner
// dropped it, and the process will connect again.
func (m *manager) releaseOnExit(proc store.Process, client uint64) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		deadline := time.Now().Add(m.st.cfg.lockGrace)
		wait := 100 * time.Microsecond
		for !proc.Exited() {
			if time.Now().After(deadline) || m.store.IsConnected(client) {
				return
			}
			select {
			case <-time.After(wait):
			case <-m.quit:
				return
			}
			wait = min(2*wait, 50*time.Millisecond)
		}
		m.store.ReleaseLocks(client)
	}()
}

// serveRequests answers a client's requests until its connection ends.
// Answers are appended as requests are handled and written when no more
// requests are at hand: a client with many calls in flight gets many answers
// in one write, and a lone call gets its answer at once. Each request wakes
// the connection's mailbox, if it has one that went asleep.
func (m *manager) serveRequests(conn *wire.Conn, sess *store.Session, wakeMailbox chan<- struct{}) error {
	var req transport.Request
	var resp transport.Response
	for {
		body, err := conn.Recv()
		if err != nil {
			return err
		}
		if err := decodeRequest(body, &req); err != nil {
			return err
		}
		if wakeMailbox != nil {
			select {
			case wakeMailbox <- struct{}{}:
			default:
			}
		}
		m.serveRequest(conn.Append, conn, sess, &req, &resp)
		if !conn.RecvBuffered() || conn.Buffered() >= flushAt {
			conn.Flush()
		}
		conn.WaitDrained(maxBacklog)
	}
}

// serveRequest answers req, with send if the answer is ready at once, and
// on the socket later if it is not (a Lock that waits, a write that waits
// for the disk). resp is the caller's to reuse, as req is: an answer passed
// to send (a function value, so the compiler cannot see that it does not
// keep it) would otherwise be allocated for every request.
func (m *manager) serveRequest(send func(wire.Message) error, conn *wire.Conn, sess *store.Session, req *transport.Request, resp *transport.Response) {
	switch {
	case m.closing.Load():
		*resp = transport.Response{ID: req.ID, Status: transport.StatusShuttingDown, Msg: "the owner is closing"}
		m.reply(send, resp)
	case store.IsMessageOp(req.Op):
		*resp = m.channels.Serve(sess, req, func(ev *wire.Event) {
			if conn.Buffered() < maxBacklog { // else the client is not reading: drop
				conn.Queue(ev)
			}
		})
		m.reply(send, resp)
	default:
		if req.Op == transport.OpLeave {
			// A closed State subscribes to nothing from its answer on,
			// not only once its connection is seen to end.
			m.channels.Drop(sess)
		}
		var parked bool
		*resp, parked = m.store.Apply(sess, req)
		m.addStats(req, resp)
		switch {
		case parked:
		case m.store.Syncs() && req.Op.Mutates():
			durable := *resp // resp is reused before the disk answers
			m.store.WhenDurable(func() { m.reply(conn.Queue, &durable) })
		default:
			m.reply(send, resp)
		}
	}
	*resp = transport.Response{} // keeps no answer's values or entries alive until the next request
}

// decodeRequest decodes a request frame's body.
func decodeRequest(body []byte, req *transport.Request) error {
	if k := wire.KindOf(body); k != wire.KindRequest {
		return fmt.Errorf("%w: unexpected message kind %d", wire.ErrMalformed, k)
	}
	return (*wire.Request)(req).Decode(body)
}

// reply sends resp. An answer too large for a frame (a Range page or value
// near the cap) is replaced by an error, so the client is not left waiting.
// Any other failure means the connection has stopped, which the loop reading
// from it sees.
func (m *manager) reply(send func(wire.Message) error, resp *transport.Response) {
	if err := send((*wire.Response)(resp)); errors.Is(err, wire.ErrFrameTooLarge) {
		send(&wire.Response{ID: resp.ID, Status: transport.StatusTooLarge, Msg: err.Error()})
	}
}
