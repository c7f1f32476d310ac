package sharedstate_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/mailbox"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// joinWithMailbox joins the owner at sock as a real client does, and maps
// the mailbox the owner hands over.
func joinWithMailbox(t *testing.T, sock string, client uint64) (*wire.Conn, *mailbox.Box) {
	t.Helper()
	nc, err := wire.Dial(testContext(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := wire.Connect(testContext(t), nc, wire.Config{UID: os.Getuid(), PID: os.Getpid(), ID: client, MaxFrame: wire.DefaultMaxFrame})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := conn.Attached()
	if f == nil {
		t.Fatal("the owner handed over no mailbox")
	}
	defer f.Close()
	box, err := mailbox.Attach(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(box.Close)
	return conn, box
}

// post writes frame into the mailbox. An owner that went asleep watches
// it again once a request comes on the socket, as a proxy's would.
func post(t *testing.T, conn *wire.Conn, box *mailbox.Box, frame []byte) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for id := uint64(1 << 40); ; id++ {
		if slot, free := box.RequestSlot(); free {
			if box.Post(append(slot, frame...)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the owner never watched the mailbox")
		}
		if err := conn.Send(&wire.Request{ID: id, Op: transport.OpGet, Name: "wake"}); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Recv(); err != nil {
			t.Fatal(err)
		}
	}
}

// A client's requests go through the mailbox, answered there; one that
// writes nonsense into it loses its connection, and nobody else notices.
func TestMailboxGarbage(t *testing.T) {
	ctx := testContext(t)
	h, ownerLog, _, sock := underAttack(t)

	conn, box := joinWithMailbox(t, sock, 0x5eed)
	req := &wire.Request{ID: 1, Op: transport.OpAdd, Name: "by-mailbox", Int: 5}
	post(t, conn, box, req.AppendFrame(nil))
	answer, ok := box.Await(hangGuard)
	if !ok {
		t.Fatal("the owner answered a mailbox request elsewhere")
	}
	var resp wire.Response
	if err := resp.Decode(wire.NewDecoder(answer).Frame()); err != nil || resp.ID != 1 || resp.Int != 5 {
		t.Fatalf("the mailbox's answer: %+v, %v", resp, err)
	}
	box.Done()
	if n, err := h.owner.Counter("by-mailbox").Load(ctx); err != nil || n != 5 {
		t.Fatalf("after an Add by mailbox, the owner reads %d, %v", n, err)
	}

	okRequest := req.AppendFrame(nil)
	tooLong := bytes.Clone(okRequest)
	binary.BigEndian.PutUint32(tooLong, mailbox.SlotSize)
	notARequest := (&wire.Response{ID: 1}).AppendFrame(nil)
	for i, garbage := range [][]byte{
		append([]byte{0, 0, 0, 40}, randomBytes(3, 40)...),
		tooLong,
		notARequest,
		append(okRequest, 0, 0, 0),
		{0, 0, 0, 0},
	} {
		conn, box := joinWithMailbox(t, sock, uint64(0x6000+i))
		post(t, conn, box, garbage)
		if _, err := conn.Recv(); err == nil {
			t.Fatalf("garbage %d: the owner answered on the socket", i)
		}
		waitLog(t, ownerLog, i+1, "closed a connection", "mailbox:")
		h.check(t, ctx, "mailbox garbage")
	}
}

// Many calls in flight through one proxy share its mailbox, several to an
// exchange: each gets its own answer, whether it came in the slot, on the
// socket because it did not fit (answers of 20 KiB, three to a slot), or
// later because it waited (a Lock the owner holds).
func TestMailboxCarriesManyCalls(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner, proxy := open(t, dir, "app"), open(t, dir, "app")
	held := owner.Mutex("m")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	locked := make(chan error, 1)
	go func() { locked <- proxy.Mutex("m").Lock(ctx) }()

	const adders, adds, swappers, swaps = 32, 100, 8, 20
	values := sharedstate.NewMap[[]byte](proxy, "values")
	errs := make(chan error, adders+swappers)
	for range adders {
		go func() {
			for range adds {
				if _, err := proxy.Counter("c").Add(ctx, 1); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := range swappers {
		go func() {
			key := fmt.Sprint("k", g)
			var last []byte
			for i := range swaps {
				v := bytes.Repeat([]byte{byte(g), byte(i)}, 10<<10)
				prev, _, err := values.Swap(ctx, key, v)
				if err == nil && !bytes.Equal(prev, last) {
					err = fmt.Errorf("swap %d of %s returned %d bytes, not the value stored before", i, key, len(prev))
				}
				if err != nil {
					errs <- err
					return
				}
				last = v
			}
			errs <- nil
		}()
	}
	for range adders + swappers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := owner.Counter("c").Load(ctx); err != nil || n != adders*adds {
		t.Fatalf("the counter reads %d, %v; want %d", n, err, adders*adds)
	}
	select {
	case err := <-locked:
		t.Fatalf("the proxy's Lock returned while the owner held it: %v", err)
	default:
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("the proxy's Lock, once the owner let go: %v", err)
	}
}
