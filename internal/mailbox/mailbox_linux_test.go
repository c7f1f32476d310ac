package mailbox

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
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
// it says so, through channels standing for the socket: a test of the
// protocol's one promise, that every request gets exactly one answer, in
// the slot or on the socket.
type exchange struct {
	owner, client *Box
	wake, stop    chan struct{}
	socketReqs    chan uint64 // requests the client sent on the socket
	socketAnswers chan uint64 // answers the owner sent on the socket
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
		socketReqs: make(chan uint64), socketAnswers: make(chan uint64, 1),
		release:      func(uint64) bool { return false },
		ownerDelay:   func() time.Duration { return 0 },
		ownerBudget:  time.Millisecond,
		clientBudget: func() time.Duration { return time.Millisecond },
	}
	t.Cleanup(x.close)
	return x
}

func (x *exchange) start() {
	x.wg.Add(2)
	go func() { // the owner's socket reader
		defer x.wg.Done()
		for {
			select {
			case n := <-x.socketReqs:
				x.socketAnswers <- n
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
			req, ok := x.owner.Next(x.ownerBudget, x.wake, x.stop)
			if !ok {
				return
			}
			n := binary.BigEndian.Uint64(req)
			if d := x.ownerDelay(); d > 0 {
				time.Sleep(d)
			}
			if x.release(n) {
				x.owner.Release()
				x.socketAnswers <- n
				continue
			}
			binary.BigEndian.AppendUint64(x.owner.AnswerSlot(), n)
			if !x.owner.Answer() {
				x.socketAnswers <- n
				x.owner.Release()
			}
		}
	}()
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
	t.Helper()
	binary.BigEndian.AppendUint64(x.client.RequestSlot(), n)
	how := "socket"
	if x.client.Post() {
		if ans, ok := x.client.Await(x.clientBudget()); ok {
			got := binary.BigEndian.Uint64(ans)
			x.client.Done()
			if got != n {
				t.Fatalf("request %d: the slot holds the answer to %d", n, got)
			}
			return "slot"
		}
		how = "socket after post"
	} else {
		x.socketReqs <- n
	}
	select {
	case got := <-x.socketAnswers:
		if got != n {
			t.Fatalf("request %d (%s): the socket brought the answer to %d", n, how, got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("request %d (%s): no answer anywhere; the state is %d", n, how, x.client.hdr.state.Load())
	}
	return how
}

func TestEveryRequestGetsOneAnswer(t *testing.T) {
	x := newExchange(t)
	x.release = func(n uint64) bool { return n%7 == 0 }
	x.start()
	ways := map[string]int{}
	for n := range uint64(2000) {
		ways[x.call(t, n)]++
	}
	if ways["slot"] == 0 || ways["socket after post"] == 0 {
		t.Fatalf("answers came %v; want some in the slot and some released to the socket", ways)
	}
}

// With budgets near zero and an owner that sometimes takes longer than the
// client waits, both sides give up at every point of the protocol: still
// exactly one answer each.
func TestEveryRequestGetsOneAnswerWhenBothSidesGiveUp(t *testing.T) {
	x := newExchange(t)
	x.ownerBudget = time.Microsecond
	x.clientBudget = func() time.Duration { return time.Duration(rand.IntN(3)) * time.Microsecond }
	x.ownerDelay = func() time.Duration {
		if rand.IntN(8) == 0 {
			return time.Duration(rand.IntN(20)) * time.Microsecond
		}
		return 0
	}
	x.release = func(uint64) bool { return rand.IntN(16) == 0 }
	x.start()
	ways := map[string]int{}
	for n := range uint64(20000) {
		ways[x.call(t, n)]++
		if n%512 == 0 {
			time.Sleep(5 * time.Microsecond) // now and then, long enough for the owner to sleep
		}
	}
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
	if x.client.Post() {
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

	if req, ok := x.owner.Next(0, nil, closedChan()); ok || req != nil {
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
