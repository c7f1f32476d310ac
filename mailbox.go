package sharedstate

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/internal/mailbox"
	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// A proxy's calls go through its connection's mailbox (internal/mailbox):
// a round trip of shared memory, with no system call. A call that finds
// the mailbox free carries its own request; calls that come while an
// exchange is in flight wait in the proxy's outbox, and the next exchange
// carries all of them (as many frames as the slot holds), as a socket's
// writer sends many frames in one write. The owner answers each in the
// answer slot, or on the socket if its answer must wait (a Lock, a write
// that waits for the disk) or does not fit; the proxy matches answers to
// callers by request id, wherever they come from. Both sides spin on the
// mailbox for a bounded time, then fall back on the socket, so a state with
// no traffic uses no CPU. The owner has one goroutine for all the
// mailboxes, so however many clients it has, one of its threads spins.
const (
	// ownerWatch is how long the owner's watcher polls the mailboxes with
	// no request in any before it marks them asleep: long enough to span
	// a caller's work between two calls.
	ownerWatch = 50 * time.Microsecond
	// proxyWait is how long a proxy spins for an answer before it waits
	// on the socket instead: far above an answer's usual 1–2 µs, well
	// under a scheduler's time slice.
	proxyWait = 50 * time.Microsecond
)

// watcher is the owner's one goroutine that watches the mailboxes of
// every connection: one spinner however many clients, asleep only once all
// of them are quiet.
type watcher struct {
	mu    sync.Mutex
	boxes atomic.Pointer[[]*watched] // replaced whole when one comes or goes
	wake  chan struct{}              // a request came on a socket
}

// watched is one connection's mailbox; mu is held while the watcher serves
// it, and by the connection's end to take it away.
type watched struct {
	mu   sync.Mutex
	gone bool
	sess *store.Session
	slotAnswers
	send func(wire.Message) error // add, made once rather than per request
}

func (w *watcher) add(e *watched) {
	e.send = e.add
	w.mu.Lock()
	defer w.mu.Unlock()
	boxes := append(slices.Clip(w.list()), e) // a new array: the watcher may be reading the old
	w.boxes.Store(&boxes)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// remove takes e away; once it returns, the watcher no longer touches it.
func (w *watcher) remove(e *watched) {
	e.mu.Lock()
	e.gone = true
	e.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	boxes := slices.DeleteFunc(slices.Clone(w.list()), func(o *watched) bool { return o == e })
	w.boxes.Store(&boxes)
}

func (w *watcher) list() []*watched {
	if p := w.boxes.Load(); p != nil {
		return *p
	}
	return nil
}

// watchMailboxes serves every connection's mailbox until the owner quits.
func (m *manager) watchMailboxes() {
	defer m.wg.Done()
	w := &m.watcher
	var req transport.Request
	var resp transport.Response
	last := time.Now()
	worked := false
	for i := 1; ; i++ {
		for _, e := range w.list() {
			worked = m.serveMailbox(e, &req, &resp) || worked
		}
		if i%64 != 0 {
			continue
		}
		if worked {
			last, worked = time.Now(), false
		}
		select {
		case <-m.quit:
			return
		case <-w.wake:
			w.each((*mailbox.Box).Wake)
		default:
		}
		if time.Since(last) > ownerWatch && w.sleep() {
			select {
			case <-w.wake:
			case <-m.quit:
				return
			}
			w.each((*mailbox.Box).Wake)
			last = time.Now()
		}
		runtime.Gosched()
	}
}

// sleep marks every mailbox asleep, and reports whether all are: one with
// a request waiting is not.
func (w *watcher) sleep() bool {
	all := true
	w.each(func(b *mailbox.Box) { all = b.Sleep() && all })
	return all
}

// each calls fn with every mailbox still there.
func (w *watcher) each(fn func(*mailbox.Box)) {
	for _, e := range w.list() {
		e.mu.Lock()
		if !e.gone {
			fn(e.box)
		}
		e.mu.Unlock()
	}
}

// serveMailbox answers the requests waiting in e's mailbox, and reports
// whether there were any. A request it cannot decode ends the connection,
// as on the socket.
func (m *manager) serveMailbox(e *watched, req *transport.Request, resp *transport.Response) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone {
		return false
	}
	reqs, ok := e.box.Poll()
	if !ok {
		return false
	}
	e.slot = e.box.AnswerSlot()
	for len(reqs) > 0 {
		body, rest, err := wire.NextFrame(reqs)
		if err == nil {
			err = decodeRequest(body, req)
		}
		if err != nil {
			m.st.cfg.logger.Warn("sharedstate: closed a connection", "state", m.st.name, "reason", "mailbox: "+err.Error())
			e.box.Release()
			e.conn.Close()
			e.gone = true
			return true
		}
		reqs = rest
		m.serveRequest(e.send, e.conn, e.sess, req, resp)
	}
	e.hand()
	return true
}

// slotAnswers gathers the answers to one exchange's requests in the answer
// slot, and sends on the socket those that do not fit.
type slotAnswers struct {
	box  *mailbox.Box
	conn *wire.Conn
	slot []byte
}

func (a *slotAnswers) add(msg wire.Message) error {
	if frame := msg.AppendFrame(a.slot); mailbox.InSlot(frame, a.slot) && a.conn.Fits(frame[len(a.slot):]) {
		a.slot = frame
		return nil
	}
	return a.conn.Append(msg)
}

// hand gives the client the answers in the slot, or sends them on the
// socket if it stopped waiting, and writes those appended to the socket.
func (a *slotAnswers) hand() {
	if len(a.slot) == 0 || !a.box.Answer(a.slot) {
		a.conn.AppendFrames(a.slot)
		a.box.Release()
	}
	a.conn.Flush()
}

// outbox holds the request frames of calls that wait for the mailbox while
// an exchange is in flight; whoever carries the exchange carries them next.
type outbox struct {
	mu     sync.Mutex
	frames []byte
	busy   bool          // a carrier is at work: it takes frames until none are left
	more   chan struct{} // wakes the carrier goroutine (carryLoop); nil without a mailbox
	done   chan struct{} // closed when carryLoop has returned
}

// mailboxed sends req through the mailbox unless it does not fit in a slot
// or is a pub/sub call (whose answers must stay in order with the socket's
// events). It reports whether req was sent that way, and whether resp is
// its answer; if sent but not answered, the answer comes on the socket or
// through the carrier goroutine.
func (p *proxy) mailboxed(req *transport.Request) (resp transport.Response, sent, answered bool) {
	if p.out.more == nil || store.IsMessageOp(req.Op) {
		return resp, false, false
	}
	o := &p.out
	o.mu.Lock()
	start := len(o.frames)
	o.frames = (*wire.Request)(req).AppendFrame(o.frames)
	if frame := o.frames[start:]; len(frame) > mailbox.SlotSize || !p.conn.Fits(frame) {
		o.frames = o.frames[:start]
		o.mu.Unlock()
		return resp, false, false
	}
	carry := !o.busy
	o.busy = true
	o.mu.Unlock()
	if carry {
		resp, answered = p.carry(req.ID)
		if p.waiting() {
			select {
			case o.more <- struct{}{}:
			default:
			}
		}
	}
	return resp, true, answered
}

// waiting reports whether calls wait in the outbox; if none do, the next
// call carries its own request.
func (p *proxy) waiting() bool {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	p.out.busy = len(p.out.frames) > 0
	return p.out.busy
}

// carryLoop carries the calls left waiting when a caller's own exchange
// ended, until the connection is lost.
func (p *proxy) carryLoop() {
	defer close(p.out.done)
	for {
		select {
		case <-p.out.more:
		case <-p.lostC:
			return
		}
		for p.waiting() {
			p.carry(0) // no request of its own: ids start at 1
		}
	}
}

// carry makes one exchange of the frames waiting in the outbox, or sends
// them on the socket if the mailbox is not free. It delivers their answers
// to their callers, except the answer to request own, which it returns.
func (p *proxy) carry(own uint64) (resp transport.Response, answered bool) {
	p.boxMu.Lock()
	defer p.boxMu.Unlock()
	var slot []byte
	free := p.box != nil
	if free {
		if slot, free = p.box.RequestSlot(); !free {
			slot = nil // the owner may be reading it still
		}
	}
	p.out.mu.Lock()
	n := wire.FramesWithin(p.out.frames, mailbox.SlotSize)
	reqs := append(slot, p.out.frames[:n]...)
	p.out.frames = p.out.frames[:copy(p.out.frames, p.out.frames[n:])]
	p.out.mu.Unlock()
	if !free || !p.box.Post(reqs) {
		if p.conn.AppendFrames(reqs) == nil {
			p.conn.Flush()
		}
		return resp, false
	}
	answers, ok := p.box.Await(proxyWait)
	if !ok {
		return resp, false
	}
	resp, answered = p.deliver(answers, own)
	p.box.Done()
	return resp, answered
}

// deliver hands the answers in the slot to their callers, and returns the
// one to request own.
func (p *proxy) deliver(answers []byte, own uint64) (resp transport.Response, answered bool) {
	var r transport.Response
	for len(answers) > 0 {
		body, rest, err := wire.NextFrame(answers)
		if err == nil {
			err = (*wire.Response)(&r).Decode(body)
		}
		if err != nil {
			// The owner wrote nonsense: drop it, as a malformed frame on
			// the socket would be; the callers see the owner lost.
			p.st.cfg.logger.Warn("sharedstate: connection to owner ended", "state", p.st.name, "owner", p.ownerPID, "err", "mailbox: "+err.Error())
			p.conn.Close()
			return resp, false
		}
		answers = rest
		if r.ID == own {
			resp, answered = r, true
			continue
		}
		if ch, _ := p.settle(r.ID, false); ch != nil {
			ch <- r // buffered: never blocks
		}
	}
	return resp, answered
}
