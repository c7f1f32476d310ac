package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair makes a mailbox and attaches a second mapping of it, as a client in
// another process would.
func pair(t *testing.T) (owner, client *Box) {
	t.Helper()
	owner, f, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	client, err = Attach(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close(); client.Close() })
	return owner, client
}

// exchange is a client and an owner that talk through a mailbox and, when
// it says so, through a stand-in for the socket: a test of the protocol's
// one promise, that every request gets exactly one answer, in the slot or
// on the socket. Like a proxy, the client may have several calls in
// flight, one of them in the mailbox.
type exchange struct {
	owner, client *Box
	clientMu      sync.Mutex // held by the call using the mailbox
	wake, stop    chan struct{}
	socketReqs    chan uint64 // requests the client sent on the socket

	mu      sync.Mutex
	pending map[uint64]chan struct{} // calls waiting for an answer on the socket
	wrong   []string                 // answers to nobody, or given twice

	// release says whether the owner frees the box and answers on the
	// socket instead, as it does for a Lock that waits.
	release func(uint64) bool
	// ownerDelay and clientBudget make the two sides race.
	ownerDelay   func() time.Duration
	ownerBudget  time.Duration
	clientBudget func() time.Duration
	wg           sync.WaitGroup
}

func newExchange(t *testing.T) *exchange {
	owner, client := pair(t)
	x := &exchange{
		owner: owner, client: client,
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
		socketReqs:   make(chan uint64),
		pending:      make(map[uint64]chan struct{}),
		release:      func(uint64) bool { return false },
		ownerDelay:   func() time.Duration { return 0 },
		ownerBudget:  time.Millisecond,
		clientBudget: func() time.Duration { return time.Millisecond },
	}
	t.Cleanup(x.close)
	return x
}

// answerOnSocket delivers the answer to request n on the socket.
func (x *exchange) answerOnSocket(n uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ch, ok := x.pending[n]
	if !ok {
		x.wrong = append(x.wrong, fmt.Sprintf("the socket brought an answer to %d, which waits for none", n))
		return
	}
	delete(x.pending, n)
	close(ch)
}

func (x *exchange) start() {
	x.wg.Add(2)
	go func() { // the owner's socket reader
		defer x.wg.Done()
		for {
			select {
			case n := <-x.socketReqs:
				x.answerOnSocket(n)
				select {
				case x.wake <- struct{}{}:
				default:
				}
			case <-x.stop:
				return
			}
		}
	}()
	go func() { // the owner's mailbox
		defer x.wg.Done()
		for {
			req, ok := next(x.owner, x.ownerBudget, x.wake, x.stop)
			if !ok {
				return
			}
			if d := x.ownerDelay(); d > 0 {
				time.Sleep(d) // before the request is read: it must not change meanwhile
			}
			n, ok := copies(req)
			if !ok {
				x.mu.Lock()
				x.wrong = append(x.wrong, fmt.Sprintf("the owner read a request of %d bytes: % x", len(req), req))
				x.mu.Unlock()
			}
			if x.release(n) {
				x.owner.Release()
				x.answerOnSocket(n)
				continue
			}
			if !x.owner.Answer(appendCopies(x.owner.AnswerSlot(), n)) {
				x.answerOnSocket(n)
				x.owner.Release()
			}
		}
	}()
}

// next waits for the next request as the library's owner does: it polls
// the box for up to budget, then marks it asleep until wake receives.
func next(b *Box, budget time.Duration, wake, stop <-chan struct{}) ([]byte, bool) {
	var req []byte
	poll := func() (ok bool) { req, ok = b.Poll(); return ok }
	for {
		select {
		case <-stop:
			return nil, false
		default:
		}
		if spin(budget, poll) {
			return req, true
		}
		if !b.Sleep() {
			continue
		}
		select {
		case <-wake:
			b.Wake()
		case <-stop:
			return nil, false
		}
	}
}

func (x *exchange) close() {
	select {
	case <-x.stop:
	default:
		close(x.stop)
	}
	x.wg.Wait()
}

// call sends request n and reports how its answer came: "slot", "socket
// after post" or "socket".
func (x *exchange) call(t *testing.T, n uint64) string {
	ch := make(chan struct{})
	x.mu.Lock()
	x.pending[n] = ch
	x.mu.Unlock()
	how := "socket"
	if x.clientMu.TryLock() {
		if slot, free := x.client.RequestSlot(); free && post(x.client, slot, n) {
			how = "socket after post"
			if ans, ok := x.client.Await(x.clientBudget()); ok {
				how = "slot"
				got, ok := copies(ans)
				x.client.Done()
				if got != n || !ok {
					x.clientMu.Unlock()
					t.Errorf("request %d: the slot holds %d bytes, the answer to %d", n, len(ans), got)
					return how
				}
			}
		}
		x.clientMu.Unlock()
	}
	switch how {
	case "slot":
		x.mu.Lock()
		delete(x.pending, n) // an answer on the socket too is an error
		x.mu.Unlock()
		return how
	case "socket":
		x.socketReqs <- n
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Errorf("request %d (%s): no answer anywhere; the state is %d", n, how, x.client.hdr.state.Load())
	}
	return how
}

// run makes calls numbered from 0 to n-1 from g goroutines, and returns
// how many answers came each way.
func (x *exchange) run(t *testing.T, g int, n uint64, pause func(uint64)) map[string]int {
	var next atomic.Uint64
	var mu sync.Mutex
	ways := map[string]int{}
	var wg sync.WaitGroup
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < n && !t.Failed(); i = next.Add(1) - 1 {
				how := x.call(t, i)
				mu.Lock()
				ways[how]++
				mu.Unlock()
				pause(i)
			}
		}()
	}
	wg.Wait()
	x.close()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, w := range x.wrong {
		t.Error(w)
	}
	return ways
}

func post(b *Box, slot []byte, n uint64) bool {
	return b.Post(appendCopies(slot, n))
}

// appendCopies appends n%4+1 copies of n: requests and answers of several
// lengths, as batches of calls make them.
func appendCopies(b []byte, n uint64) []byte {
	for range n%4 + 1 {
		b = binary.BigEndian.AppendUint64(b, n)
	}
	return b
}

// copies reads what appendCopies wrote, and reports whether it is that.
func copies(b []byte) (uint64, bool) {
	if len(b) < 8 {
		return 0, false
	}
	n := binary.BigEndian.Uint64(b)
	return n, string(b) == string(appendCopies(nil, n))
}

func TestEveryRequestGetsOneAnswer(t *testing.T) {
	x := newExchange(t)
	x.release = func(n uint64) bool { return n%7 == 0 }
	x.start()
	ways := x.run(t, 1, 2000, func(uint64) {})
	if ways["slot"] == 0 || ways["socket after post"] == 0 {
		t.Fatalf("answers came %v; want some in the slot and some released to the socket", ways)
	}
}

// With budgets near zero, an owner that sometimes takes longer than the
// client waits, and several calls in flight, both sides give up at every
// point of the protocol: still exactly one answer each.
func TestEveryRequestGetsOneAnswerWhenBothSidesGiveUp(t *testing.T) {
	x := newExchange(t)
	x.ownerBudget = time.Microsecond
	x.clientBudget = func() time.Duration {
		if rand.IntN(16) == 0 { // so that some answers come in the slot on a loaded machine too
			return time.Millisecond
		}
		return time.Duration(rand.IntN(3)) * time.Microsecond
	}
	x.ownerDelay = func() time.Duration {
		if rand.IntN(8) == 0 {
			return time.Duration(rand.IntN(20)) * time.Microsecond
		}
		return 0
	}
	x.release = func(uint64) bool { return rand.IntN(16) == 0 }
	x.start()
	ways := x.run(t, 4, 20000, func(i uint64) {
		if i%512 == 0 {
			time.Sleep(5 * time.Microsecond) // now and then, long enough for the owner to sleep
		}
	})
	t.Logf("answers came %v", ways)
	for _, how := range []string{"slot", "socket after post", "socket"} {
		if ways[how] == 0 {
			t.Errorf("no answer came by %q: the race is not exercised", how)
		}
	}
}

func TestAnOwnerWithNothingToDoSleeps(t *testing.T) {
	x := newExchange(t)
	x.start()
	x.call(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for st := x.client.hdr.state.Load(); st != asleep && st != answeredAsleep; st = x.client.hdr.state.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the owner still watches a mailbox nobody used for 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if x.client.Post(nil) {
		t.Fatal("a request was posted to an owner asleep")
	}
	if how := x.call(t, 2); how != "socket" {
		t.Fatalf("a request to an owner asleep went by %q", how)
	}
	// The request on the socket woke the owner: the next uses the slot.
	deadline = time.Now().Add(5 * time.Second)
	for x.call(t, 3) != "slot" {
		if time.Now().After(deadline) {
			t.Fatal("the owner never watched the mailbox again after a request on the socket")
		}
	}
}

// A client can write anything into the mailbox: the owner reads within
// its slot, and goes to sleep rather than spin on a state it does not know.
func TestTheOwnerSurvivesWhatTheClientWrites(t *testing.T) {
	x := newExchange(t)
	x.ownerBudget = 100 * time.Microsecond
	x.client.hdr.state.Store(99)
	x.start()
	deadline := time.Now().Add(5 * time.Second)
	for st := x.client.hdr.state.Load(); st != asleep && st != answeredAsleep; st = x.client.hdr.state.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the owner spins on state %d", x.client.hdr.state.Load())
		}
		time.Sleep(time.Millisecond)
	}
	x.close()

	if req, ok := next(x.owner, 0, nil, closedChan()); ok || req != nil {
		t.Fatal("Next returned a request after stop")
	}
	if len(x.owner.reqs) != SlotSize || cap(x.owner.reqs) != SlotSize {
		t.Fatalf("the request slot spans %d bytes, capacity %d; want %d", len(x.owner.reqs), cap(x.owner.reqs), SlotSize)
	}
	if InSlot(append(x.owner.AnswerSlot(), make([]byte, SlotSize+1)...), x.owner.AnswerSlot()) {
		t.Fatal("a frame larger than the slot counts as in it")
	}
	if !InSlot(append(x.owner.AnswerSlot(), make([]byte, SlotSize)...), x.owner.AnswerSlot()) {
		t.Fatal("a frame that fills the slot does not count as in it")
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func TestAttachRefusesWhatTheOwnerDidNotMake(t *testing.T) {
	memfd := func(t *testing.T, n int64) *os.File {
		fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "test")
		t.Cleanup(func() { f.Close() })
		if err := unix.Ftruncate(fd, n); err != nil {
			t.Fatal(err)
		}
		return f
	}
	seal := func(t *testing.T, f *os.File) *os.File {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
		return f
	}
	plain, err := os.CreateTemp(t.TempDir(), "mailbox")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Truncate(size)
	for name, f := range map[string]*os.File{
		"an unsealed memory file":       memfd(t, size),
		"a sealed file of another size": seal(t, memfd(t, size-pageSize)),
		"a sealed file with no header":  seal(t, memfd(t, size)),
		"a regular file":                plain,
	} {
		if b, err := Attach(f); !errors.Is(err, ErrInvalid) {
			if b != nil {
				b.Close()
			}
			t.Errorf("Attach(%s) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestTheFileCannotBeResized(t *testing.T) {
	b, f, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer f.Close()
	for _, n := range []int64{0, size * 2} {
		if err := f.Truncate(n); err == nil {
			t.Errorf("the mailbox file was resized to %d bytes", n)
		}
	}
}
