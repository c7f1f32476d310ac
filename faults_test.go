package sharedstate_test

// Faults around the state and bad arguments from its users: what may happen
// to a state's files, its clock, its callers' contexts and its owner's
// resources, with real processes and real files. None of it may break a
// guarantee: one owner, nothing acknowledged lost, nothing applied twice,
// no lock lost, every call back within its context.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/transport"
)

// TestCanceledContextChangesNothing: a call whose context has already ended
// returns the context's error and leaves the state as it was, whether the
// caller is the owner or a proxy (database/sql checks the same way).
func TestCanceledContextChangesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for side, st := range map[string]*sharedstate.State{"owner": owner, "proxy": proxy} {
		m := sharedstate.NewMap[int](st, "m")
		calls := map[string]error{}
		_, calls["Counter.Add"] = st.Counter("c").Add(canceled, 1)
		calls["Counter.Store"] = st.Counter("c").Store(canceled, 5)
		calls["Map.Store"] = m.Store(canceled, "k", 1)
		_, _, calls["Map.LoadOrStore"] = m.LoadOrStore(canceled, "k", 1)
		_, calls["Map.Update"] = m.Update(canceled, "k", func(int, bool) (int, error) { return 1, nil })
		calls["Mutex.Lock"] = st.Mutex("l").Lock(canceled)
		_, calls["Mutex.TryLock"] = st.Mutex("l").TryLock(canceled)
		_, calls["Publish"] = st.Publish(canceled, "ch", []byte("x"))
		for call, err := range calls {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s %s with a canceled context: %v; want context.Canceled", side, call, err)
			}
		}
	}
	if n, err := owner.Counter("c").Load(ctx); err != nil || n != 0 {
		t.Errorf("counter = %d, %v; want 0: a canceled call was applied", n, err)
	}
	if n, err := sharedstate.NewMap[int](owner, "m").Len(ctx); err != nil || n != 0 {
		t.Errorf("map has %d entries, %v; want 0: a canceled call was applied", n, err)
	}
	if ok, err := owner.Mutex("l").TryLock(ctx); err != nil || !ok {
		t.Errorf("TryLock = %v, %v: a canceled Lock took the lock", ok, err)
	}
}

// TestNilLogger: WithLogger(nil) discards the logs instead of panicking.
func TestNilLogger(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	for range 2 { // the owner logs that it took over; the proxy that it lost one
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), sharedstate.WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.Counter("c").Add(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReservedChannels: the channels that carry Map.Watch are the owner's
// alone; no process may publish on them and forge a change.
func TestReservedChannels(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	changes, err := sharedstate.NewMap[int](owner, "m").Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for side, st := range map[string]*sharedstate.State{"owner": owner, "proxy": proxy} {
		if _, err := st.Publish(ctx, "\x00watch/m", []byte("\x00forged")); !errors.Is(err, sharedstate.ErrInvalidName) {
			t.Errorf("%s Publish on a watch channel: %v; want ErrInvalidName", side, err)
		}
		if _, err := st.Subscribe(ctx, "\x00watch/m"); !errors.Is(err, sharedstate.ErrInvalidName) {
			t.Errorf("%s Subscribe to a watch channel: %v; want ErrInvalidName", side, err)
		}
	}
	// By hand, past the API's check: the owner refuses it too.
	c, err := dialJoined(dir + "/app.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.nc.Close()
	resp, err := c.do(&transport.Request{ID: 1, Op: transport.OpPublish, Name: "\x00watch/m", Value: []byte("\x00forged")})
	if err != nil || resp.Status != transport.StatusBadRequest {
		t.Errorf("raw Publish on a watch channel: %+v, %v; want StatusBadRequest", resp, err)
	}
	sharedstate.NewMap[int](proxy, "m").Store(ctx, "real", 1)
	select {
	case ch := <-changes:
		if ch.Key != "real" {
			t.Errorf("the watcher saw %+v; want only the real change", ch)
		}
	case <-time.After(time.Minute):
		t.Fatal("the real change did not arrive")
	}
}

// TestOwnerOutOfDescriptors: an owner that cannot accept more connections
// says so once, keeps serving the clients it has, and lets new ones join
// once descriptors are free again.
func TestOwnerOutOfDescriptors(t *testing.T) {
	dir := t.TempDir()
	owner := startWorker(t, "fdlimited", "SS_DIR="+dir)
	owner.expectLine(t, "owner")
	sock := dir + "/app.sock"
	// Fill the owner's descriptor table with joined connections, until one
	// gets no Hello: the owner could not accept it.
	var joined []*rawConn
	defer func() {
		for _, c := range joined {
			c.nc.Close()
		}
	}()
	var stalled *rawConn
	for stalled == nil {
		if len(joined) > 1000 {
			t.Fatal("1000 connections accepted under a limit of 64 descriptors")
		}
		c, err := dialRaw(sock)
		if err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.hello(); err != nil {
			stalled = c
			break
		}
		c.nc.SetDeadline(time.Now().Add(hangGuard))
		if refused, err := c.join(transport.Version); err != nil || refused != nil {
			t.Fatalf("join: %v, %v", refused, err)
		}
		joined = append(joined, c)
	}
	defer stalled.nc.Close()
	time.Sleep(time.Second) // the owner retries its accept meanwhile
	// The clients it has are still served.
	for i, c := range joined[:3] {
		resp, err := c.do(&transport.Request{ID: 1, Op: transport.OpAdd, Name: "c", Int: 1})
		if err != nil || resp.Status != transport.StatusOK || resp.Int != int64(i+1) {
			t.Fatalf("Add on a joined connection: %+v, %v", resp, err)
		}
	}
	if n := strings.Count(owner.out.String(), "out of file descriptors"); n != 1 {
		t.Errorf("the owner logged running out of descriptors %d times; want once. Its log:\n%s", n, owner.out.String())
	}
	// Descriptors freed: the stalled client is accepted and joins.
	for _, c := range joined[:5] {
		c.nc.Close()
	}
	joined = joined[5:]
	stalled.nc.SetDeadline(time.Now().Add(hangGuard))
	if _, err := stalled.hello(); err != nil {
		t.Fatalf("the stalled client was not accepted once descriptors were free: %v", err)
	}
	if refused, err := stalled.join(transport.Version); err != nil || refused != nil {
		t.Fatalf("join: %v, %v", refused, err)
	}
}

func init() {
	// fdlimited: become the owner with at most 64 descriptors, and serve.
	workerRoles["fdlimited"] = func() int {
		st, err := sharedstate.Open(context.Background(), "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil || !st.IsOwner() {
			fmt.Fprintln(os.Stderr, "not the owner:", err)
			return 1
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 64, Max: 64}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("owner", strconv.Itoa(os.Getpid()))
		select {}
	}
}
