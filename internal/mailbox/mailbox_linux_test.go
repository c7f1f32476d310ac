package mailbox

import (
	"bytes"
	"errors"
	"os"
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

func TestRoundTrips(t *testing.T) {
	for _, spin := range []time.Duration{0, 20 * time.Microsecond} {
		owner, client := pair(t)
		owner.Spin, client.Spin = spin, spin
		var stopped atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				req, ok := owner.Next(stopped.Load)
				if !ok {
					return
				}
				if bytes.Equal(req, []byte("big")) {
					owner.Answer(nil)
					continue
				}
				owner.Answer(append(append(owner.AnswerSlot(), "re: "...), req...))
			}
		}()
		for i := range 2000 {
			want := []byte{byte(i), byte(i >> 8)}
			seq := client.Post(append(client.RequestSlot(), want...))
			got, ok := client.Await(seq, time.Time{}, func() bool { return false })
			if !ok || !bytes.Equal(got, append([]byte("re: "), want...)) {
				t.Fatalf("spin %v, request %d: answer %q, %v", spin, i, got, ok)
			}
		}
		seq := client.Post(append(client.RequestSlot(), "big"...))
		if got, ok := client.Await(seq, time.Time{}, func() bool { return false }); !ok || got != nil {
			t.Fatalf("an answer on the socket came back as %q, %v", got, ok)
		}
		stopped.Store(true)
		owner.Wake()
		<-done
	}
}

func TestAwaitEndsAtItsDeadlineOrStop(t *testing.T) {
	_, client := pair(t)
	seq := client.Post(append(client.RequestSlot(), "nobody answers"...))
	start := time.Now()
	if _, ok := client.Await(seq, start.Add(20*time.Millisecond), func() bool { return false }); ok {
		t.Fatal("Await reported an answer nobody gave")
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Fatalf("Await gave up after %v, before its deadline", waited)
	}
	if client.Idle() {
		t.Fatal("a box with an unanswered request is idle")
	}

	var stop atomic.Bool
	interrupted := make(chan struct{})
	go func() {
		defer close(interrupted)
		time.Sleep(10 * time.Millisecond)
		stop.Store(true)
		client.Interrupt()
	}()
	if _, ok := client.Await(seq, time.Time{}, stop.Load); ok {
		t.Fatal("an interrupted Await reported an answer")
	}
	<-interrupted
}

// The client can write anything into the header and the slots: the owner
// still reads within its slot.
func TestOwnerBoundsWhatTheClientWrote(t *testing.T) {
	owner, client := pair(t)
	client.hdr.requestLen.store(^uint32(0) - 5)
	client.hdr.request.store(7)
	client.Wake()
	req, ok := owner.Next(func() bool { return false })
	if !ok || len(req) != SlotSize {
		t.Fatalf("Next returned %d bytes, %v; want the slot's %d", len(req), ok, SlotSize)
	}
	if InSlot(append(owner.AnswerSlot(), make([]byte, SlotSize+1)...), owner.AnswerSlot()) {
		t.Fatal("a frame larger than the slot counts as in it")
	}
	if !InSlot(append(owner.AnswerSlot(), make([]byte, SlotSize)...), owner.AnswerSlot()) {
		t.Fatal("a frame that fills the slot does not count as in it")
	}
}

func TestAttachRefusesWhatTheOwnerDidNotMake(t *testing.T) {
	memfd := func(t *testing.T, n int64, flags int) *os.File {
		fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|flags)
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
	seal := func(t *testing.T, f *os.File) {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
	}
	unsealed := memfd(t, size, unix.MFD_ALLOW_SEALING)
	small := memfd(t, size-pageSize, unix.MFD_ALLOW_SEALING)
	seal(t, small)
	blank := memfd(t, size, unix.MFD_ALLOW_SEALING)
	seal(t, blank)
	plain, err := os.CreateTemp(t.TempDir(), "mailbox")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Truncate(size)
	for name, f := range map[string]*os.File{
		"an unsealed memory file":       unsealed,
		"a sealed file of another size": small,
		"a sealed file with no header":  blank,
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
