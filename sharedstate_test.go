//go:build unix

package sharedstate_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

// The test binary doubles as the worker processes of the multi-process
// tests: run with SHAREDSTATE_WORKER set (startWorker does), it plays that
// role and exits. Every role registers in workerRoles, from the init of the
// test file that uses it.
func TestMain(m *testing.M) {
	if role := os.Getenv("SHAREDSTATE_WORKER"); role != "" {
		run := workerRoles[role]
		if run == nil {
			fmt.Fprintf(os.Stderr, "no worker role %q\n", role)
			os.Exit(2)
		}
		os.Exit(run())
	}
	os.Exit(m.Run())
}

// workerRoles maps a role name to the function a worker process runs, whose
// result is its exit code.
var workerRoles = map[string]func() int{}

func init() {
	for _, role := range []string{"add", "mutex", "hold", "wait", "own"} {
		workerRoles[role] = func() int { return runWorker(role) }
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// quietLogger keeps expected warnings (refused peers, lost owners) out of
// the test output, while letting a test read them.
func quietLogger(w io.Writer) sharedstate.Option {
	return sharedstate.WithLogger(slog.New(slog.NewTextHandler(w, nil)))
}

// open opens name in dir, failing the test on error, and closes it at cleanup.
func open(t testing.TB, dir, name string, opts ...sharedstate.Option) *sharedstate.State {
	t.Helper()
	opts = append([]sharedstate.Option{sharedstate.WithDir(dir), quietLogger(io.Discard)}, opts...)
	st, err := sharedstate.Open(testContext(t), name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestConformanceOwner(t *testing.T) {
	sharedstatetest.Run(t, func(t *testing.T) *sharedstate.State {
		st := open(t, t.TempDir(), "conformance")
		if !st.IsOwner() {
			t.Fatal("the only process is not the owner")
		}
		return st
	})
}

func TestConformanceProxy(t *testing.T) {
	sharedstatetest.Run(t, func(t *testing.T) *sharedstate.State {
		dir := t.TempDir()
		open(t, dir, "conformance")
		st := open(t, dir, "conformance")
		if st.IsOwner() {
			t.Fatal("a second State became owner while the first holds the lock")
		}
		return st
	})
}

// worker is a child process running this test binary in a worker role.
type worker struct {
	cmd   *exec.Cmd
	lines chan string // its standard output, line by line
	out   syncBuffer  // its standard error, readable while it runs
}

func startWorker(t *testing.T, role string, env ...string) *worker {
	t.Helper()
	return startWorkerCmd(t, exec.Command(os.Args[0]), role, env...)
}

func startWorkerCmd(t *testing.T, cmd *exec.Cmd, role string, env ...string) *worker {
	t.Helper()
	cmd.Env = append(os.Environ(), append(env, "SHAREDSTATE_WORKER="+role)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, lines: make(chan string, 100)}
	cmd.Stderr = &w.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// A table left by a killed owner is always adoptable: a
		// rebuild instead hides a defect behind a slow takeover.
		if out := w.out.String(); strings.Contains(out, "cannot adopt the table") {
			t.Errorf("a worker could not adopt the table; stderr:\n%s", out)
		}
	})
	return w
}

// expectLine waits for the worker to print a line starting with prefix and
// returns the rest of it.
func (w *worker) expectLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("worker exited before printing %q; stderr:\n%s", prefix, w.out.String())
			}
			if rest, found := strings.CutPrefix(line, prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-timeout:
			t.Fatalf("worker did not print %q within a minute", prefix)
		}
	}
}

func (w *worker) wait(t *testing.T) {
	t.Helper()
	for range w.lines {
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("worker: %v; stderr:\n%s", err, w.out.String())
	}
}

const (
	adders        = 4
	addGoroutines = 8
	addsEach      = 2000
	updatesEach   = 100
)

func TestProcessesAdd(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, "app")
	ctx := testContext(t)
	var workers []*worker
	for range adders {
		workers = append(workers, startWorker(t, "add", "SS_DIR="+dir))
	}
	for _, w := range workers {
		w.wait(t)
	}
	n, err := st.Counter("hits").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(adders * addGoroutines * addsEach); n != want {
		t.Errorf("counter = %d after %d Adds", n, want)
	}
	v, _, err := sharedstate.NewMap[int](st, "m").Load(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if want := adders * addGoroutines * updatesEach; v != want {
		t.Errorf("map value = %d after %d Updates", v, want)
	}
}

const (
	lockers     = 4
	locksEach   = 50
	overlapFile = "inside"
)

func TestProcessesMutex(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, "app")
	var workers []*worker
	for range lockers {
		workers = append(workers, startWorker(t, "mutex", "SS_DIR="+dir))
	}
	for _, w := range workers {
		w.wait(t)
	}
	// Each critical section did a non-atomic Load then Store: a lost
	// increment would show two processes inside at once.
	n, err := st.Counter("unsafe").Load(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(lockers * locksEach); n != want {
		t.Errorf("counter incremented under the lock = %d, want %d", n, want)
	}
}

// locks returns what State.Locks reports, by name.
func locks(t *testing.T, st *sharedstate.State) map[string]sharedstate.LockInfo {
	t.Helper()
	out := map[string]sharedstate.LockInfo{}
	err := st.Locks(testContext(t), func(l sharedstate.LockInfo) bool {
		out[l.Name] = l
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLockReleasedWhenHolderKilled(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, "app")
	ctx := testContext(t)
	before := time.Now()
	holder := startWorker(t, "hold", "SS_DIR="+dir)
	token, _ := strconv.ParseUint(holder.expectLine(t, "locked"), 10, 64)
	free := st.Mutex("free")
	if err := free.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := free.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Locks shows the holder, from the owner and from a proxy.
	for _, view := range []*sharedstate.State{st, open(t, dir, "app")} {
		got := locks(t, view)
		held := got["held"]
		if !held.Held || held.PID != holder.cmd.Process.Pid || held.Token != token ||
			held.Since.Before(before.Add(-time.Second)) || held.Since.After(time.Now().Add(time.Second)) {
			t.Errorf("Locks: held = %+v; want held by pid %d with token %d since %v", held, holder.cmd.Process.Pid, token, before)
		}
		if f := got["free"]; f.Held || f.PID != 0 || f.Token != 1 || len(got) != 2 {
			t.Errorf("Locks = %+v; want also free, with token 1", got)
		}
	}
	mu := st.Mutex("held")
	if ok, err := mu.TryLock(ctx); err != nil || ok {
		t.Fatalf("TryLock of a lock held by another process = %v, %v", ok, err)
	}
	waiter := startWorker(t, "wait", "SS_DIR="+dir)
	waiter.expectLine(t, "waiting")
	holder.cmd.Process.Signal(syscall.SIGKILL)
	got, _ := strconv.ParseUint(waiter.expectLine(t, "locked"), 10, 64)
	if got <= token {
		t.Errorf("fencing token %d after the killed holder's %d", got, token)
	}
	waiter.wait(t)
	if held := locks(t, st)["held"]; held.Held || held.Token != got {
		t.Errorf("Locks after the waiter exited: %+v; want free, latest token %d", held, got)
	}
}

func TestStaleFilesAfterKill(t *testing.T) {
	dir := t.TempDir()
	owner := startWorker(t, "own", "SS_DIR="+dir)
	owner.expectLine(t, "owner")
	owner.cmd.Process.Signal(syscall.SIGKILL)
	owner.cmd.Wait()
	for _, f := range []string{"app.sock", "app.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the killed owner left no %s: %v", f, err)
		}
	}
	st := open(t, dir, "app")
	if !st.IsOwner() {
		t.Fatal("did not become owner over a killed owner's files")
	}
	ctx := testContext(t)
	if _, err := st.Counter("c").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// And a second process joins it through the replaced socket.
	proxy := open(t, dir, "app")
	if n, err := proxy.Counter("c").Load(ctx); err != nil || n != 1 {
		t.Fatalf("proxy Load = %d, %v", n, err)
	}
}

func TestOwnerCloseHandsOver(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	// The proxy becomes the owner and serves again.
	if _, err := proxy.Counter("c").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if !proxy.IsOwner() {
		t.Error("the last process is not the owner after the owner closed")
	}
}

func TestInvalidNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "../../etc", "..", ".", ".hidden", "a/b", "a\\b", "a b", "a\x00b", strings.Repeat("a", 65)} {
		st, err := sharedstate.Open(testContext(t), name, sharedstate.WithDir(dir))
		if !errors.Is(err, sharedstate.ErrInvalidName) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidName", name, err)
		}
		if st != nil {
			st.Close()
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("invalid names created files: %v", entries)
	}
}

func TestUnsafeDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := sharedstate.Open(testContext(t), "app", sharedstate.WithDir(dir))
	if !errors.Is(err, sharedstate.ErrUnauthorized) {
		t.Errorf("Open in a world-writable directory: err = %v, want ErrUnauthorized", err)
	}
}

func TestTooLarge(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app", sharedstate.WithMaxFrame(64<<10))
	proxy := open(t, dir, "app", sharedstate.WithMaxFrame(64<<10))
	big := strings.Repeat("x", 100<<10)
	for _, st := range []*sharedstate.State{owner, proxy} {
		m := sharedstate.NewMap[string](st, "m")
		if err := m.Store(ctx, "k", big); !errors.Is(err, sharedstate.ErrTooLarge) {
			t.Errorf("Store of 100 KiB with a 64 KiB cap: err = %v, want ErrTooLarge", err)
		}
		if err := m.Store(ctx, "k", "small"); err != nil {
			t.Errorf("Store after a refused one: %v", err)
		}
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	open(t, dir, "app", sharedstate.WithSecret([]byte("s3cret")))
	friend := open(t, dir, "app", sharedstate.WithSecret([]byte("s3cret")))
	if _, err := friend.Counter("c").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]sharedstate.Option{nil, {sharedstate.WithSecret([]byte("guess"))}} {
		opts = append(opts, sharedstate.WithDir(dir), quietLogger(io.Discard))
		if _, err := sharedstate.Open(ctx, "app", opts...); !errors.Is(err, sharedstate.ErrUnauthorized) {
			t.Errorf("Open without the secret: err = %v, want ErrUnauthorized", err)
		}
	}
}

func TestNoGoroutinesLeftAfterClose(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	ctx := testContext(t)
	func() {
		owner := open(t, dir, "app")
		proxy := open(t, dir, "app")
		for _, st := range []*sharedstate.State{owner, proxy} {
			if _, err := st.Counter("c").Add(ctx, 1); err != nil {
				t.Fatal(err)
			}
			// A subscription left open, ended by Close.
			if _, err := st.Subscribe(ctx, "news"); err != nil {
				t.Fatal(err)
			}
		}
		// Leave a Lock parked at the owner from each side when closing.
		if err := owner.Mutex("m").Lock(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, st := range []*sharedstate.State{owner, proxy} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.Mutex("m").Lock(ctx)
			}()
		}
		time.Sleep(50 * time.Millisecond)
		proxy.Close()
		owner.Close()
		wg.Wait()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// runWorker plays one of the roles that open the state called app in SS_DIR
// first, in a child process; its exit code reports success.
func runWorker(role string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	dir := os.Getenv("SS_DIR")
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), quietLogger(os.Stderr))
	if err != nil {
		return fail(err)
	}
	defer st.Close()
	switch role {
	case "add":
		c := st.Counter("hits")
		m := sharedstate.NewMap[int](st, "m")
		var wg sync.WaitGroup
		errs := make(chan error, addGoroutines)
		for range addGoroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range addsEach {
					if _, err := c.Add(ctx, 1); err != nil {
						errs <- err
						return
					}
					if i < updatesEach {
						if _, err := m.Update(ctx, "k", func(old int, _ bool) (int, error) { return old + 1, nil }); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fail(err)
		}
	case "mutex":
		mu := st.Mutex("critical")
		c := st.Counter("unsafe")
		marker := filepath.Join(dir, overlapFile)
		for range locksEach {
			if err := mu.Lock(ctx); err != nil {
				return fail(err)
			}
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fail(fmt.Errorf("another process is inside the critical section: %w", err))
			}
			f.Close()
			n, err := c.Load(ctx)
			if err != nil {
				return fail(err)
			}
			time.Sleep(100 * time.Microsecond)
			if err := c.Store(ctx, n+1); err != nil {
				return fail(err)
			}
			os.Remove(marker)
			if err := mu.Unlock(ctx); err != nil {
				return fail(err)
			}
		}
	case "hold":
		mu := st.Mutex("held")
		if err := mu.Lock(ctx); err != nil {
			return fail(err)
		}
		fmt.Println("locked", mu.Token())
		<-ctx.Done()
	case "wait":
		mu := st.Mutex("held")
		if ok, err := mu.TryLock(ctx); err != nil || ok {
			return fail(fmt.Errorf("TryLock = %v, %v; want the lock held elsewhere", ok, err))
		}
		fmt.Println("waiting")
		if err := mu.Lock(ctx); err != nil {
			return fail(err)
		}
		fmt.Println("locked", mu.Token())
	case "own":
		if !st.IsOwner() {
			return fail(errors.New("not the owner"))
		}
		fmt.Println("owner")
		<-ctx.Done()
	default:
		return fail(errors.New("unknown role"))
	}
	return 0
}

// TestTakeoverKeepsStateAndLocks kills the owner under a proxy that holds a
// lock: the proxy becomes the owner with every acknowledged write, keeps
// its lock, and the next token is larger; a lock the dead owner held is free.
// A memory-only state loses its counters, and keeps its locks all the same.
func TestTakeoverKeepsStateAndLocks(t *testing.T) {
	for _, d := range []sharedstate.Durability{sharedstate.DurabilityProcess, sharedstate.DurabilityMemory} {
		t.Run(d.String(), func(t *testing.T) { testTakeoverKeepsStateAndLocks(t, d) })
	}
}

func testTakeoverKeepsStateAndLocks(t *testing.T, d sharedstate.Durability) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := startWorker(t, "ownlocked", "SS_DIR="+dir, "SS_DURABILITY="+strconv.Itoa(int(d)))
	deadToken, _ := strconv.ParseUint(owner.expectLine(t, "owner"), 10, 64)
	st := open(t, dir, "app", sharedstate.WithDurability(d))
	other := open(t, dir, "app", sharedstate.WithDurability(d))
	c := st.Counter("c")
	for range 5 {
		if _, err := c.Add(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	mu := st.Mutex("kept")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := mu.Token()

	owner.cmd.Process.Signal(syscall.SIGKILL)
	owner.cmd.Wait()

	want := int64(6)
	if d == sharedstate.DurabilityMemory {
		want = 1
	}
	if n, err := c.Add(ctx, 1); err != nil || n != want {
		t.Fatalf("Add after takeover = %d, %v; want %d", n, err, want)
	}
	if ok, err := other.Mutex("kept").TryLock(ctx); err != nil || ok {
		t.Fatalf("another process took a lock held through the takeover: %v, %v", ok, err)
	}
	if held, err := mu.Held(ctx); err != nil || !held {
		t.Fatalf("Held after takeover = %v, %v", held, err)
	}
	if err := mu.Unlock(ctx); err != nil {
		t.Fatalf("Unlock of a lock held through the takeover: %v", err)
	}
	if err := mu.Lock(ctx); err != nil || mu.Token() <= token {
		t.Fatalf("Lock after takeover: token %d (before %d), %v", mu.Token(), token, err)
	}
	dead := st.Mutex("owners")
	if ok, err := dead.TryLock(ctx); err != nil || !ok || dead.Token() <= deadToken {
		t.Fatalf("the dead owner's lock: TryLock = %v, %v, token %d (dead owner's %d)", ok, err, dead.Token(), deadToken)
	}
}

func init() {
	// ownlocked: become the owner, take a lock, and wait to be killed.
	workerRoles["ownlocked"] = func() int {
		ctx := context.Background()
		d, _ := strconv.Atoi(os.Getenv("SS_DURABILITY"))
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr),
			sharedstate.WithDurability(sharedstate.Durability(d)))
		if err != nil || !st.IsOwner() {
			fmt.Fprintln(os.Stderr, "not the owner:", err)
			return 1
		}
		mu := st.Mutex("owners")
		if err := mu.Lock(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("owner", mu.Token())
		select {}
	}
}

// TestPubSubAcrossTakeover: a subscription keeps receiving after the owner
// it subscribed through has gone.
func TestPubSubAcrossTakeover(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	sub := open(t, dir, "app")
	pub := open(t, dir, "app")
	msgs, err := sub.Subscribe(ctx, "cache")
	if err != nil {
		t.Fatal(err)
	}
	receive := func(want string) {
		t.Helper()
		select {
		case got := <-msgs:
			if string(got) != want {
				t.Fatalf("received %q, want %q", got, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%q not received", want)
		}
	}
	if n, err := pub.Publish(ctx, "cache", []byte("one")); err != nil || n != 1 {
		t.Fatalf("Publish = %d, %v; want 1 subscriber", n, err)
	}
	receive("one")
	owner.Close()
	// The publisher's retry may reach the new owner before the subscriber
	// has told it of its subscription: publish until it has.
	for {
		n, err := pub.Publish(ctx, "cache", []byte("two"))
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	receive("two")
}

// TestMapWatch: a proxy's watcher sees writes, deletes and expiries made by
// any process, and nothing of other maps.
func TestMapWatch(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	changes, err := sharedstate.NewMap[int](proxy, "m").Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := sharedstate.NewMap[int](owner, "m")
	m.Store(ctx, "a", 1)
	sharedstate.NewMap[int](owner, "other").Store(ctx, "x", 1)
	m.Update(ctx, "a", func(n int, _ bool) (int, error) { return n + 1, nil })
	m.Delete(ctx, "a")
	m.Store(ctx, "b", 1, sharedstate.WithTTL(time.Millisecond))
	want := []sharedstate.Change{{Key: "a"}, {Key: "a"}, {Key: "a", Deleted: true}, {Key: "b"}, {Key: "b", Deleted: true}}
	for i, w := range want {
		select {
		case got := <-changes:
			if got != w {
				t.Fatalf("change %d = %+v, want %+v", i, got, w)
			}
		case <-time.After(time.Minute):
			t.Fatalf("change %d (%+v) not received", i, w)
		}
	}
}

// TestOwnerClosesWhileProcessesJoin closes owners while other States are
// connecting to them: under the race detector, a connection accepted as
// the owner began to close once added to what close waits for while it
// waited.
func TestOwnerClosesWhileProcessesJoin(t *testing.T) {
	for range 20 {
		dir := t.TempDir()
		owner := open(t, dir, "app")
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), sharedstate.WithLogger(nil)); err == nil {
					st.Close()
				}
			}()
		}
		owner.Close()
		wg.Wait()
	}
}
