// Package mailbox lets two processes exchange one request and its answer at
// a time through memory they share, each waking the other with a futex: a
// round trip with no socket, no poller and no hand-off between goroutines,
// and, while both sides are busy, no system call at all.
//
// The owner of a state creates a mailbox for each client connection
// (Create) and hands its file to the client over the connection's socket
// (SCM_RIGHTS); the client maps it (Attach). The socket stays: it carries the
// handshake, whatever does not fit in a slot, and liveness (a socket that
// closes is how either side learns the other is gone, and what makes the
// client stop waiting in the mailbox).
//
// # Layout
//
// One header page, then the request slot, then the answer slot, each of
// SlotSize bytes. The header holds, each word on a cache line of its own:
//
//	request   the sequence number of the last request posted
//	answer    the sequence number of the last request answered
//	owner's bell, client's bell   futex words, bumped to wake a sleeper
//	owner's sleeping, client's sleeping   whether a side may be asleep
//
// # Protocol
//
// The client writes a request frame into the request slot and its length,
// then stores request = n, then rings the owner's bell. The owner, waiting
// for request to move, reads the frame, writes the answer frame into the
// answer slot and its length, stores answer = n, and rings the client's
// bell. A side that waits spins for a bounded time, then sleeps on its bell
// (FUTEX_WAIT), having said so in its sleeping word; ringing bumps the bell
// and calls FUTEX_WAKE only if the other side said it may sleep. A waiter
// reads its bell before its last look at the condition it waits for, and
// sleeps only if the bell has not moved since: a ring between the look and
// the sleep is never lost. The waiter's own process rings its bell too, to
// stop a wait early (a context ended, the connection closed).
//
// # Trust
//
// The owner never trusts the client's bytes: a request's length is bounded
// by the slot, the frame is decoded by a decoder that bounds every read
// (bytes the client changes meanwhile can only make it a malformed request,
// which ends the connection as on the socket), and the file is sealed
// against shrinking, so the client cannot truncate it under the owner's
// mapping.
package mailbox

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"
)

// SlotSize is the size of each slot: a frame larger than that goes over the
// socket instead.
const SlotSize = 64 << 10

const (
	pageSize = 4096
	size     = pageSize + 2*SlotSize
	magic    = 0x73736d62 // "ssmb"
	version  = 1
)

// ErrUnsupported is returned where the system has no futexes or sealed
// memory files: every exchange then goes over the socket.
var ErrUnsupported = fmt.Errorf("mailbox: %w", errors.ErrUnsupported)

// ErrInvalid reports a mailbox file that is not one this package made.
var ErrInvalid = errors.New("mailbox: not a valid mailbox")

// line keeps a word away from the others' cache lines: the two sides write
// different words, and sharing a line would make each write slow the other.
type line struct {
	v uint32
	_ [60]byte
}

func (l *line) load() uint32   { return atomic.LoadUint32(&l.v) }
func (l *line) store(v uint32) { atomic.StoreUint32(&l.v, v) }
func (l *line) add(d uint32)   { atomic.AddUint32(&l.v, d) }

type header struct {
	magic, version, slot uint32
	_                    [52]byte
	request, requestLen  line
	answer, answerLen    line
	ownerBell, ownerWait line
	clientBell, clientWt line
}

// answerOnSocket, as an answer's length, says the answer went over the
// socket: it did not fit in the slot.
const answerOnSocket = ^uint32(0)

// Box is one side's view of a mailbox.
type Box struct {
	mem  []byte
	hdr  *header
	reqs []byte // the request slot
	ans  []byte // the answer slot

	// Spin is how long a wait spins before it sleeps.
	Spin time.Duration

	last uint32 // owner: the last request taken; client: the last posted
}

func newBox(mem []byte) *Box {
	return &Box{
		mem:  mem,
		hdr:  (*header)(unsafe.Pointer(&mem[0])),
		reqs: mem[pageSize : pageSize+SlotSize : pageSize+SlotSize],
		ans:  mem[pageSize+SlotSize : size : size],
	}
}

func (b *Box) init() {
	b.hdr.magic, b.hdr.version, b.hdr.slot = magic, version, SlotSize
}

func (b *Box) valid() bool {
	return b.hdr.magic == magic && b.hdr.version == version && b.hdr.slot == SlotSize
}

// ring wakes the side that sleeps on bell, if it may be asleep.
func ring(bell, sleeping *line) {
	bell.add(1)
	if sleeping.load() != 0 {
		futexWake(&bell.v)
	}
}

// wait returns once done reports true, spinning for spin first; deadline,
// if not zero, bounds it, and wait reports whether done did.
func wait(bell, sleeping *line, spin time.Duration, deadline time.Time, done func() bool) bool {
	if done() {
		return true
	}
	if spin > 0 {
		start := time.Now()
		for i := 1; ; i++ {
			if done() {
				return true
			}
			if i%64 == 0 && time.Since(start) > spin {
				break
			}
		}
	}
	for {
		seen := bell.load()
		sleeping.store(1)
		if done() {
			sleeping.store(0)
			return true
		}
		var timeout time.Duration
		if !deadline.IsZero() {
			if timeout = time.Until(deadline); timeout <= 0 {
				sleeping.store(0)
				return false
			}
		}
		futexWait(&bell.v, seen, timeout)
		sleeping.store(0)
		if done() {
			return true
		}
	}
}

// Client side.

// RequestSlot returns the slot a request frame is appended to: append
// within its capacity, and Post the result.
func (b *Box) RequestSlot() []byte { return b.reqs[:0] }

// Post sends the request frame in frame, which must be RequestSlot's
// memory, and returns its sequence number for Await.
func (b *Box) Post(frame []byte) uint32 {
	b.hdr.requestLen.store(uint32(len(frame)))
	b.last++
	b.hdr.request.store(b.last)
	ring(&b.hdr.ownerBell, &b.hdr.ownerWait)
	return b.last
}

// Answered reports whether the request seq was answered.
func (b *Box) Answered(seq uint32) bool { return b.hdr.answer.load() == seq }

// Idle reports whether the last request posted was answered: the box may
// take another.
func (b *Box) Idle() bool { return b.Answered(b.last) }

// Await waits until the request seq is answered, stop reports true, or the
// deadline (if not zero) passes. It returns the answer frame (valid until
// the next Post) and true, or nil and true if the answer went over the
// socket; or false if it stopped waiting first. Interrupt wakes it to look
// at stop again.
func (b *Box) Await(seq uint32, deadline time.Time, stop func() bool) ([]byte, bool) {
	answered := func() bool { return b.Answered(seq) || stop() }
	if !wait(&b.hdr.clientBell, &b.hdr.clientWt, b.Spin, deadline, answered) || !b.Answered(seq) {
		return nil, false
	}
	n := b.hdr.answerLen.load()
	if n == answerOnSocket {
		return nil, true
	}
	return b.ans[:min(int(n), len(b.ans))], true
}

// Interrupt wakes a client's Await, to look at its stop function again.
func (b *Box) Interrupt() { ring(&b.hdr.clientBell, &b.hdr.clientWt) }

// Owner side.

// Next waits for a request until stop reports true, and returns its frame,
// valid until the next Answer, or false if stopped. Bytes may still change
// under the caller: the client can write to them.
func (b *Box) Next(stop func() bool) ([]byte, bool) {
	posted := func() bool { return b.hdr.request.load() != b.last || stop() }
	wait(&b.hdr.ownerBell, &b.hdr.ownerWait, b.Spin, time.Time{}, posted)
	if stop() {
		return nil, false
	}
	b.last = b.hdr.request.load()
	n := b.hdr.requestLen.load()
	return b.reqs[:min(int(n), len(b.reqs))], true
}

// AnswerSlot returns the slot an answer frame is appended to.
func (b *Box) AnswerSlot() []byte { return b.ans[:0] }

// Answer sends frame, which must be AnswerSlot's memory, as the answer to
// the last request Next returned; nil says the answer went over the socket.
func (b *Box) Answer(frame []byte) {
	n := uint32(len(frame))
	if frame == nil {
		n = answerOnSocket
	}
	b.hdr.answerLen.store(n)
	b.hdr.answer.store(b.last)
	ring(&b.hdr.clientBell, &b.hdr.clientWt)
}

// Wake wakes the owner's Next, to look at its stop function again.
func (b *Box) Wake() { ring(&b.hdr.ownerBell, &b.hdr.ownerWait) }

// InSlot reports whether frame was appended within slot's capacity, so it
// is the slot's memory: append copies whatever outgrows it elsewhere.
func InSlot(frame, slot []byte) bool {
	return len(frame) > 0 && cap(slot) > 0 && unsafe.SliceData(frame) == unsafe.SliceData(slot[:1])
}
