package sharedstate

import (
	"time"

	"github.com/sharedstate/sharedstate/internal/mailbox"
	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// A proxy's call goes through its connection's mailbox (internal/mailbox)
// when the mailbox is free, and on the socket otherwise: one call at a time
// per process takes a round trip of shared memory, with no system call,
// while the others, and any call whose answer must wait, share the socket
// as before. Both sides spin on the mailbox for a bounded time, then fall
// back on the socket, so a state with no traffic uses no CPU.
const (
	// ownerWatch is how long the owner watches an idle mailbox for the
	// next request before it goes asleep: long enough to span a caller's
	// work between two calls.
	ownerWatch = 50 * time.Microsecond
	// proxyWait is how long a proxy spins for an answer before it waits
	// on the socket instead: far above an answer's usual 1–2 µs, well
	// under a scheduler's time slice.
	proxyWait = 50 * time.Microsecond
)

// serveMailbox answers the requests a client posts to its mailbox until
// stop is closed. A request it cannot decode ends the connection, as on
// the socket.
func (m *manager) serveMailbox(box *mailbox.Box, conn *wire.Conn, sess *store.Session, wake, stop <-chan struct{}) {
	var req transport.Request
	slot := slotReply{box: box, conn: conn}
	send := slot.send
	for {
		frame, ok := box.Next(ownerWatch, wake, stop)
		if !ok {
			return
		}
		if err := decodeRequest(wire.NewDecoder(frame).Frame(), &req); err != nil {
			m.st.cfg.logger.Warn("sharedstate: closed a connection", "state", m.st.name, "reason", "mailbox: "+err.Error())
			box.Release()
			conn.Close()
			return
		}
		slot.sent = false
		m.serveRequest(send, conn, sess, &req)
		if !slot.sent { // the answer comes later, on the socket
			box.Release()
		}
	}
}

// slotReply sends the answer to a mailbox's request: in the answer slot,
// or on the socket if it does not fit or the client stopped waiting.
type slotReply struct {
	box  *mailbox.Box
	conn *wire.Conn
	sent bool
}

func (r *slotReply) send(msg wire.Message) error {
	if r.sent { // a second answer (TooLarge in place of the first): the box is freed already
		return r.conn.Queue(msg)
	}
	r.sent = true
	slot := r.box.AnswerSlot()
	frame := msg.AppendFrame(slot)
	if mailbox.InSlot(frame, slot) && r.conn.Fits(frame) && r.box.Answer() {
		return nil
	}
	err := r.conn.Queue(msg)
	r.box.Release()
	return err
}

// mailboxed sends req through the mailbox if it is free, req fits in it
// and is not a pub/sub call (whose answers must stay in order with the
// socket's events). It reports whether req was sent, and whether resp is
// its answer; if sent but not answered, the answer comes on the socket.
func (p *proxy) mailboxed(req *transport.Request) (resp transport.Response, sent, answered bool) {
	if store.IsMessageOp(req.Op) || !p.boxMu.TryLock() {
		return resp, false, false
	}
	defer p.boxMu.Unlock()
	if p.box == nil {
		return resp, false, false
	}
	slot, free := p.box.RequestSlot()
	if !free {
		return resp, false, false
	}
	frame := (*wire.Request)(req).AppendFrame(slot)
	if !mailbox.InSlot(frame, slot) || !p.conn.Fits(frame) || !p.box.Post() {
		return resp, false, false
	}
	answer, ok := p.box.Await(proxyWait)
	if !ok {
		return resp, true, false
	}
	err := (*wire.Response)(&resp).Decode(wire.NewDecoder(answer).Frame())
	p.box.Done()
	if err != nil || resp.ID != req.ID {
		// The owner wrote nonsense: drop it, as a malformed frame on
		// the socket would be; the caller sees the owner lost.
		p.st.cfg.logger.Warn("sharedstate: connection to owner ended", "state", p.st.name, "owner", p.ownerPID, "err", "mailbox: malformed answer")
		p.conn.Close()
		return resp, true, false
	}
	return resp, true, true
}
