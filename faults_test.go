//go:build unix

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
	"github.com/sharedstate/sharedstate/internal/wire"
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
	resp, err := c.do(&wire.Request{ID: 1, Op: transport.OpPublish, Name: "\x00watch/m", Value: []byte("\x00forged")})
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
		if refused, err := c.join(wire.Version); err != nil || refused != nil {
			t.Fatalf("join: %v, %v", refused, err)
		}
		joined = append(joined, c)
	}
	defer stalled.nc.Close()
	time.Sleep(time.Second) // the owner retries its accept meanwhile
	// The clients it has are still served.
	for i, c := range joined[:3] {
		resp, err := c.do(&wire.Request{ID: 1, Op: transport.OpAdd, Name: "c", Int: 1})
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
	if refused, err := stalled.join(wire.Version); err != nil || refused != nil {
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

// TestBadArgumentsKeepLocks: a write the owner cannot accept (a TTL that is
// not positive, a value over the owner's frame cap) is refused with an
// error, from the owner and from a proxy alike, and costs the proxy neither
// its connection nor its lock.
func TestBadArgumentsKeepLocks(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	var proxyLog syncBuffer
	// A proxy whose own cap is above the owner's: the owner's rules.
	proxy := open(t, dir, "app", quietLogger(&proxyLog), sharedstate.WithMaxFrame(16<<20))
	other := open(t, dir, "app")
	mu := proxy.Mutex("held")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	for side, st := range map[string]*sharedstate.State{"owner": owner, "proxy": proxy} {
		m := sharedstate.NewMap[[]byte](st, "m")
		bad := map[string]struct {
			err  error
			call func() error
		}{
			"negative TTL": {sharedstate.ErrInvalidArgument, func() error { return m.Store(ctx, "k", nil, sharedstate.WithTTL(-time.Second)) }},
			"TTL of a past instant": {sharedstate.ErrInvalidArgument, func() error {
				return m.Store(ctx, "k", nil, sharedstate.WithTTL(time.Until(time.Now().Add(-time.Hour))))
			}},
			"zero TTL":    {sharedstate.ErrInvalidArgument, func() error { return m.Store(ctx, "k", nil, sharedstate.WithTTL(0)) }},
			"5 MiB value": {sharedstate.ErrTooLarge, func() error { return m.Store(ctx, "k", make([]byte, 5<<20)) }},
			"Update to 5 MiB": {sharedstate.ErrTooLarge, func() error {
				_, err := m.Update(ctx, "k", func([]byte, bool) ([]byte, error) { return make([]byte, 5<<20), nil })
				return err
			}},
		}
		for what, b := range bad {
			if err := b.call(); !errors.Is(err, b.err) {
				t.Errorf("%s: %s: %v; want %v", side, what, err, b.err)
			}
			if ok, err := other.Mutex("held").TryLock(ctx); err != nil || ok {
				t.Fatalf("%s: after %s, another process took the proxy's lock: %v, %v", side, what, ok, err)
			}
		}
		if n, err := m.Len(ctx); err != nil || n != 0 {
			t.Errorf("%s: %d entries after refused writes, %v", side, n, err)
		}
	}
	if held, err := mu.Held(ctx); err != nil || !held {
		t.Errorf("the proxy's lock: Held = %v, %v", held, err)
	}
	if strings.Contains(proxyLog.String(), "owner lost") {
		t.Errorf("the proxy lost its connection to the owner:\n%s", proxyLog.String())
	}
	// A TTL beyond what a clock can count means no expiry soon, not at once.
	m := sharedstate.NewMap[int](proxy, "m")
	if err := m.Store(ctx, "centuries", 1, sharedstate.WithTTL(280*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past a sweep
	if _, ok, err := m.Load(ctx, "centuries"); err != nil || !ok {
		t.Errorf("an entry with a TTL of 280 years: Load = %v, %v", ok, err)
	}
}

// TestDroppedConnectionKeepsLocks: when the owner drops the connection of a
// process that is still alive, that process keeps its locks for the grace
// of a takeover, through a new connection too; if it never reconnects,
// they are released when the grace ends.
func TestDroppedConnectionKeepsLocks(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	open(t, dir, "app", sharedstate.WithLockGrace(500*time.Millisecond))
	other := open(t, dir, "app")
	sock := dir + "/app.sock"
	lockAs := func(client uint64, name string) (*rawConn, uint64) {
		t.Helper()
		c, err := dialJoinedAs(sock, client)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.do(&wire.Request{ID: 1, Op: transport.OpLock, Name: name})
		if err != nil || resp.Status != transport.StatusOK {
			t.Fatalf("Lock: %+v, %v", resp, err)
		}
		return c, resp.Version
	}
	dropped := func(c *rawConn) {
		t.Helper()
		if err := c.sendAndDrain(frame(0x42)); err != nil {
			t.Fatal(err)
		}
	}
	held := func(name string) bool {
		t.Helper()
		ok, err := other.Mutex(name).TryLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			other.Mutex(name).Unlock(ctx)
		}
		return !ok
	}

	// Dropped, then back: the lock is kept past the grace.
	c, token := lockAs(77, "kept")
	dropped(c)
	if !held("kept") {
		t.Fatal("the lock of a live process was released when the owner dropped its connection")
	}
	back, err := dialJoinedAs(sock, 77)
	if err != nil {
		t.Fatal(err)
	}
	defer back.nc.Close()
	time.Sleep(time.Second)
	if !held("kept") {
		t.Fatal("a lock claimed back on a new connection was released when the grace ended")
	}
	if resp, err := back.do(&wire.Request{ID: 2, Op: transport.OpUnlock, Name: "kept", Version: token}); err != nil || resp.Status != transport.StatusOK {
		t.Fatalf("Unlock on the new connection: %+v, %v", resp, err)
	}

	// Dropped for good: released once the grace is over.
	c, _ = lockAs(78, "abandoned")
	dropped(c)
	deadline := time.Now().Add(time.Minute)
	for held("abandoned") {
		if time.Now().After(deadline) {
			t.Fatal("the lock of a process that never came back was not released after the grace")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestResentAtMostOnce: a request after which the owner drops the
// connection is sent again once, to the same owner, then fails: no storm of
// reconnections.
func TestResentAtMostOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	// An owner by hand, that drops every connection on its first request.
	defer holdLock(t, dir)()
	ln, err := wire.Listen(dir + "/app.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan transport.Op, 100)
	go func() {
		for {
			nc, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go func() {
				conn, _, err := wire.Accept(nc, wire.Config{UID: os.Getuid(), PID: os.Getpid(), MaxFrame: wire.DefaultMaxFrame})
				if err != nil {
					return
				}
				defer conn.Close()
				body, err := conn.Recv()
				if err != nil {
					return
				}
				var req wire.Request
				req.Decode(body)
				received <- req.Op
			}()
		}
	}()
	st := open(t, dir, "app")
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = st.Counter("c").Add(callCtx, 1)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add through an owner that drops it: %v; want an error before the context ends", err)
	}
	if !errors.Is(err, sharedstate.ErrUnavailable) || !strings.Contains(err.Error(), "may or may not have been applied") {
		t.Errorf("error %q: want ErrUnavailable, saying the outcome is unknown", err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(received); n != 2 {
		t.Errorf("the request was sent %d times; want 2", n)
	}
}

// TestCallsEndWithinContextOwnerFrozen: with the owner stopped (SIGSTOP),
// every call returns within its context, Lock too; a lock the frozen owner
// grants once it runs again to a Lock that gave up is given back.
func TestCallsEndWithinContextOwnerFrozen(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := startWorker(t, "ownlocked", "SS_DIR="+dir)
	owner.expectLine(t, "owner")
	st := open(t, dir, "app")
	other := open(t, dir, "app")
	stop(t, owner.cmd.Process.Pid)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			owner.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	const timeout = 100 * time.Millisecond
	const bound = 2 * time.Second // the context plus a small constant, generously
	calls := map[string]func(context.Context) error{
		"Lock of a held lock": func(ctx context.Context) error { return st.Mutex("owners").Lock(ctx) },
		"Lock of a free lock": func(ctx context.Context) error { return st.Mutex("free").Lock(ctx) },
		"TryLock":             func(ctx context.Context) error { _, err := st.Mutex("free2").TryLock(ctx); return err },
		"Counter.Add":         func(ctx context.Context) error { _, err := st.Counter("c").Add(ctx, 1); return err },
		"Stats":               func(ctx context.Context) error { _, err := st.Stats(ctx); return err },
	}
	for what, call := range calls {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		err := call(callCtx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with the owner stopped: %v; want context.DeadlineExceeded", what, err)
		}
		if took > bound {
			t.Errorf("%s with a %v context returned after %v", what, timeout, took)
		}
	}
	// Reads the owner's table answers need no owner that runs: what it
	// acknowledged before it stopped is there.
	if _, found, err := sharedstate.NewMap[int](st, "m").Load(ctx, "k"); err != nil || found {
		t.Errorf("Map.Load with the owner stopped: found %v, %v; want an answer from its table", found, err)
	}
	resume()
	// The stopped owner now reads the Locks that gave up, and may grant the
	// free ones: each must be given back.
	for _, name := range []string{"free", "free2"} {
		deadline := time.Now().Add(time.Minute)
		for {
			ok, err := other.Mutex(name).TryLock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lock %q, granted to a Lock that had given up, was never given back", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stop sends SIGSTOP to a process and waits until it has stopped: the
// signal is delivered a moment after kill returns.
func stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for {
		_, state, err := procStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if state == 'T' {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLargeAnswersDoNotWedge: many large answers at once through one proxy
// never stop the connection (the owner used to wait for a backlog that no
// write was draining), and a client that dies in the middle of them costs
// the owner nothing once it is gone.
func TestLargeAnswersDoNotWedge(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	m := sharedstate.NewMap[[]byte](owner, "big")
	for _, load := range []struct{ callers, size int }{{16, 1 << 20}, {128, 100 << 10}, {200, 64 << 10}} {
		key := strconv.Itoa(load.size)
		if err := m.Store(ctx, key, make([]byte, load.size)); err != nil {
			t.Fatal(err)
		}
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		errs := make(chan error, load.callers)
		for range load.callers {
			go func() {
				v, ok, err := sharedstate.NewMap[[]byte](proxy, "big").Load(callCtx, key)
				if err == nil && (!ok || len(v) != load.size) {
					err = fmt.Errorf("Load = %d bytes, %v", len(v), ok)
				}
				errs <- err
			}()
		}
		for range load.callers {
			if err := <-errs; err != nil {
				t.Fatalf("%d concurrent Loads of %d bytes: %v", load.callers, load.size, err)
			}
		}
		cancel()
	}
	if _, err := proxy.Counter("c").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// A client killed while its answers pile up.
	loader := startWorker(t, "bigloads", "SS_DIR="+dir)
	loader.expectLine(t, "loading")
	time.Sleep(100 * time.Millisecond)
	loader.cmd.Process.Kill()
	loader.cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := owner.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Clients == 1 { // the proxy above
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner still has %d clients a minute after the loader died", st.Clients)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func init() {
	// bigloads: Load a 64 KiB value from 200 goroutines until killed.
	workerRoles["bigloads"] = func() int {
		ctx := context.Background()
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		m := sharedstate.NewMap[[]byte](st, "big")
		for range 200 {
			go func() {
				for {
					m.Load(ctx, strconv.Itoa(64<<10))
				}
			}()
		}
		fmt.Println("loading")
		select {}
	}
}

// TestSavedAnswersStayBounded: the answers an owner saves for retries are
// bounded by the clients alive. A proxy killed with writes in flight loses
// its saved answers once its death is seen, and owners that take over from
// one another do not pile up each other's own writes as saved answers.
func TestSavedAnswersStayBounded(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	// Owners handing over to one another, with proxies coming and going.
	for cycle := range 12 {
		a := open(t, dir, "app")
		b := open(t, dir, "app")
		for range 500 {
			a.Counter("c").Add(ctx, 1)
			b.Counter("c").Add(ctx, 1)
		}
		a.Close() // b takes over
		for range 500 {
			b.Counter("c").Add(ctx, 1)
		}
		b.Close()
		st := open(t, dir, "app")
		if n, err := st.Counter("c").Load(ctx); err != nil || n != int64(1500*(cycle+1)) {
			t.Fatalf("cycle %d: counter %d, %v", cycle, n, err)
		}
		savedAnswersWithin(t, st, 0, fmt.Sprintf("cycle %d", cycle))
		st.Close()
	}

	// A proxy killed in the middle of its writes.
	st := open(t, dir, "app")
	for range 3 {
		w := startWorker(t, "add", "SS_DIR="+dir)
		time.Sleep(100 * time.Millisecond)
		w.cmd.Process.Kill()
		w.cmd.Wait()
	}
	savedAnswersWithin(t, st, 0, "after three proxies were killed")
}

// savedAnswersWithin waits until st's owner keeps at most max saved answers.
func savedAnswersWithin(t *testing.T, st *sharedstate.State, max int, when string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		stats, err := st.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if stats.SavedAnswers <= max {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the owner keeps %d saved answers; want at most %d", when, stats.SavedAnswers, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClockAheadAcrossOwners: after an owner whose clock ran an hour ahead,
// a new owner with the right time still expires entries and ends lock
// graces in real time; a clock step between owners shifts the store's time
// once, instead of freezing it until the wall clock catches up (a 1 s TTL
// outlived 5 s before).
func TestClockAheadAcrossOwners(t *testing.T) {
	for _, d := range []sharedstate.Durability{sharedstate.DurabilityProcess, sharedstate.DurabilityMemory} {
		t.Run(d.String(), func(t *testing.T) {
			dir := t.TempDir()
			ctx := testContext(t)
			const grace = 300 * time.Millisecond
			opts := []sharedstate.Option{sharedstate.WithLockGrace(grace), sharedstate.WithDurability(d)}
			ahead := open(t, dir, "app", append(opts, sharedstate.WithClockShift(time.Hour))...)
			// A client holding a lock that stays through the handover and
			// never connects to the next owner.
			c, err := dialJoinedAs(dir+"/app.sock", 99)
			if err != nil {
				t.Fatal(err)
			}
			defer c.nc.Close()
			if resp, err := c.do(&wire.Request{ID: 1, Op: transport.OpLock, Name: "l"}); err != nil || resp.Status != transport.StatusOK {
				t.Fatalf("Lock: %+v, %v", resp, err)
			}
			m := sharedstate.NewMap[int](ahead, "m")
			if err := m.Store(ctx, "later", 1, sharedstate.WithTTL(time.Hour)); err != nil {
				t.Fatal(err)
			}
			ahead.Close()

			st := open(t, dir, "app", opts...)
			m = sharedstate.NewMap[int](st, "m")
			if err := m.Store(ctx, "soon", 1, sharedstate.WithTTL(time.Second)); err != nil {
				t.Fatal(err)
			}
			within(t, 5*time.Second, "an entry with a TTL of 1s expires", func() bool {
				_, ok, err := m.Load(ctx, "soon")
				return err == nil && !ok
			})
			within(t, 5*time.Second, "the lock of a holder that did not come back is released", func() bool {
				ok, err := st.Mutex("l").TryLock(ctx)
				return err == nil && ok
			})
			if d == sharedstate.DurabilityProcess {
				if _, ok, err := m.Load(ctx, "later"); err != nil || !ok {
					t.Errorf("an entry with an hour to live written by the owner ahead: Load = %v, %v", ok, err)
				}
			}
		})
	}
}

// TestHotKeyAcrossProcesses: 4 worker processes, 200 goroutines each,
// update one key with Map.Update and add to another with Map.Add: both end
// exact, with no call failing.
func TestHotKeyAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, "app") // the owner; the workers are proxies
	var workers []*worker
	for range 4 {
		workers = append(workers, startWorker(t, "hotkey", "SS_DIR="+dir))
	}
	for _, w := range workers {
		w.wait(t)
	}
	ctx := testContext(t)
	m := sharedstate.NewMap[int](st, "hot")
	for _, key := range []string{"updated", "added"} {
		if n, _, err := m.Load(ctx, key); err != nil || n != 4*hotGoroutines*hotEach {
			t.Errorf("%s: %d, %v; want %d", key, n, err, 4*hotGoroutines*hotEach)
		}
	}
}

const hotGoroutines, hotEach = 200, 25

func init() {
	// hotkey: Update one key and Add to another from 200 goroutines.
	workerRoles["hotkey"] = func() int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer st.Close()
		m := sharedstate.NewMap[int](st, "hot")
		errs := make(chan error, hotGoroutines)
		for range hotGoroutines {
			go func() {
				for range hotEach {
					if _, err := m.Update(ctx, "updated", func(n int, _ bool) (int, error) { return n + 1, nil }); err != nil {
						errs <- err
						return
					}
					if _, err := m.Add(ctx, "added", 1); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range hotGoroutines {
			if err := <-errs; err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return 0
	}
}
