// Package mailbox lets a client process and the owner of a state exchange
// one request and its answer at a time through memory they share: while
// both sides are busy, a round trip takes no system call, no poller wake-up
// and no hand-off between goroutines.
//
// The owner creates a mailbox for each client connection (Create) and
// hands its file to the client with the handshake's last frame
// (SCM_RIGHTS); the client checks and maps it (Attach). The socket stays,
// and is never bypassed for anything that must wait: a side that would
// otherwise wait long for the other stops watching the mailbox and falls
// back on the socket, where Go's poller parks it at no cost. So an idle
// state spins nowhere, a client never waits on an owner that stopped
// (kill -STOP) for longer than its spin, and the socket's closing still
// tells either side that the other is gone.
//
// # Layout
//
// One header page, then the request slot, then the answer slot, each of
// SlotSize bytes. What a slot holds is the caller's business (the library
// puts frames there as the socket would carry them, several at a time);
// the mailbox carries its length. The header's first cache line names the
// format; the second holds the state word, the only word both sides write,
// and the two lengths, each written by one side before it moves the state.
//
// # Protocol
//
// The state word moves between six values:
//
//	asleep          the owner is not watching: requests go on the socket
//	idle            the owner is watching and the slots are free
//	posted          the client wrote a request and waits for its answer
//	answered        the owner wrote the answer
//	abandoned       the client stopped waiting: the answer goes on the socket
//	answeredAsleep  answered, and the owner went asleep since
//
// The client posts with idle→posted and, once it has read the answer,
// frees the box with answered→idle. The owner answers with posted→answered,
// or frees the box with posted→idle when the answer is not ready at once (a
// Lock that waits, a write that waits for the disk) or does not fit: then it
// goes on the socket, as does the answer to an abandoned request. A client
// that spins for its budget without an answer gives up with
// posted→abandoned. An owner that stops watching marks the box asleep
// (Sleep): idle→asleep, or answered→answeredAsleep, which keeps an answer
// not yet read apart from a box released to the socket; when the next
// request arrives on the socket it watches again (Wake). Every transition
// is a compare-and-swap, so of two sides acting at once exactly one wins,
// and the other takes the socket: no answer is both in the slot and on the
// socket, and none is in neither.
//
// # Trust
//
// The owner never trusts the client's bytes: a request's length is bounded
// by its slot, and the frame is decoded by a decoder that bounds every read
// (bytes the client changes meanwhile can only make it a malformed request,
// which ends the connection as it would on the socket). A client that
// writes nonsense into the state word only sends its own answers to the
// socket. The file is sealed against shrinking, so the client cannot
// truncate it under the owner's mapping; the client, in turn, maps only a
// sealed memory file of the right size and format.
package mailbox

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// SlotSize is the size of each slot: a frame larger than that goes on the
// socket instead.
const SlotSize = 64 << 10

const (
	pageSize = 4096
	size     = pageSize + 2*SlotSize
	magic    = 0x73736d62 // "ssmb"
	version  = 3
)

// The values of the state word.
const (
	asleep uint32 = iota
	idle
	posted
	answered
	abandoned
	answeredAsleep // answered, and the owner went asleep before the client read it
)

// ErrUnsupported is returned where the system has no sealed memory files:
// every exchange then goes on the socket.
var ErrUnsupported = fmt.Errorf("mailbox: %w", errors.ErrUnsupported)

// ErrInvalid reports a mailbox file that is not one this package made.
var ErrInvalid = errors.New("mailbox: not a valid mailbox")

type header struct {
	magic, version, slot uint32
	_                    [52]byte
	// state has a cache line of its own, so that the two sides' writes
	// to it contend with nothing else.
	state atomic.Uint32
	// reqLen is written by the client before it posts, ansLen by the
	// owner before it answers; the reader bounds either by the slot.
	reqLen, ansLen atomic.Uint32
	_              [52]byte
}

// Box is one side's view of a mailbox. A Box is used by one goroutine at a
// time on each side.
type Box struct {
	mem  []byte
	hdr  *header
	reqs []byte // the request slot
	ans  []byte // the answer slot
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
	b.hdr.state.Store(idle)
}

func (b *Box) valid() bool {
	return b.hdr.magic == magic && b.hdr.version == version && b.hdr.slot == SlotSize
}

// spin calls done until it reports true or budget has passed, and reports
// whether it did. It yields the processor now and then: on a machine with
// few cores the side it waits for may need it.
func spin(budget time.Duration, done func() bool) bool {
	start := time.Now()
	for i := 1; ; i++ {
		if done() {
			return true
		}
		if i%64 == 0 {
			if time.Since(start) > budget {
				return false
			}
			runtime.Gosched()
		}
	}
}

// InSlot reports whether frame was appended within slot's capacity, so it
// is the slot's memory: append copies whatever outgrows it elsewhere.
func InSlot(frame, slot []byte) bool {
	return len(frame) > 0 && cap(slot) > 0 && unsafe.SliceData(frame) == unsafe.SliceData(slot[:1])
}

// Client side.

// RequestSlot returns the slot a request is appended to, for Post, or
// false if the mailbox is not free: the owner may still be reading the
// last request, which must not change under it. Append within the slot's
// capacity (InSlot tells).
func (b *Box) RequestSlot() ([]byte, bool) { return b.reqs[:0], b.hdr.state.Load() == idle }

// Post sends req, appended to RequestSlot within its capacity. It reports
// false if the owner stopped watching the mailbox since: send the request
// on the socket instead.
func (b *Box) Post(req []byte) bool {
	b.hdr.reqLen.Store(uint32(len(req)))
	return b.hdr.state.CompareAndSwap(idle, posted)
}

// Await waits for the answer to the request posted, for at most budget. It
// returns the answer, in the answer slot, and true; call Done once it is
// read. It returns false if the answer is to come on the
// socket: the owner said so, or Await gave up waiting.
func (b *Box) Await(budget time.Duration) ([]byte, bool) {
	// What is decided is decided by one look at the state: an owner may
	// go asleep from answered at any time, leaving the answer in the slot.
	var v uint32
	moved := func() bool { v = b.hdr.state.Load(); return v != posted }
	if !spin(budget, moved) {
		for v == posted {
			if b.hdr.state.CompareAndSwap(posted, abandoned) {
				return nil, false
			}
			v = b.hdr.state.Load()
		}
	}
	if v != answered && v != answeredAsleep {
		return nil, false
	}
	return b.ans[:min(b.hdr.ansLen.Load(), SlotSize)], true
}

// Done frees the box once the answer Await returned is read.
func (b *Box) Done() {
	if !b.hdr.state.CompareAndSwap(answered, idle) {
		b.hdr.state.CompareAndSwap(answeredAsleep, asleep)
	}
}

// Owner side.

// Poll returns the request waiting in the box, if there is one: Answer or
// Release it before the next call.
func (b *Box) Poll() ([]byte, bool) {
	if !waiting(b.hdr.state.Load()) {
		return nil, false
	}
	return b.reqs[:min(b.hdr.reqLen.Load(), SlotSize)], true
}

// Wake marks a box asleep as watched again.
func (b *Box) Wake() {
	if !b.hdr.state.CompareAndSwap(asleep, idle) {
		b.hdr.state.CompareAndSwap(answeredAsleep, answered)
	}
}

// waiting reports whether the state holds a request for the owner: one
// posted, or one the client gave up waiting for before the owner took it,
// whose answer goes on the socket.
func waiting(state uint32) bool { return state == posted || state == abandoned }

// Sleep marks the box asleep, so that its client sends on the socket,
// from whatever state it is in but waiting (idle, answered, or whatever a
// client wrote), and reports whether it did: it does not if a request is
// waiting.
func (b *Box) Sleep() bool {
	for {
		v := b.hdr.state.Load()
		if waiting(v) {
			return false
		}
		to := asleep
		if v == answered || v == answeredAsleep {
			to = answeredAsleep
		}
		if b.hdr.state.CompareAndSwap(v, to) {
			return true
		}
	}
}

// AnswerSlot returns the slot an answer is appended to, for Answer.
func (b *Box) AnswerSlot() []byte { return b.ans[:0] }

// Answer hands the client ans, appended to AnswerSlot within its capacity.
// It reports false if the client stopped waiting: send the answer on the
// socket, and Release the box.
func (b *Box) Answer(ans []byte) bool {
	b.hdr.ansLen.Store(uint32(len(ans)))
	return b.hdr.state.CompareAndSwap(posted, answered)
}

// Release frees the box without an answer in it: the answer to the request
// Next returned goes on the socket.
func (b *Box) Release() {
	if !b.hdr.state.CompareAndSwap(posted, idle) {
		b.hdr.state.CompareAndSwap(abandoned, idle)
	}
}
