//go:build unix

package redisstate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/sharedstatetest"
	"github.com/vmihailenco/msgpack/v5"
)

// A test binary started with REDISSTATE_WORKER set is a worker process of
// a test, not a test run: see worker.
func TestMain(m *testing.M) {
	if role := os.Getenv("REDISSTATE_WORKER"); role != "" {
		if err := worker(role); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openState opens the state name on srv, with a lease of lease, closed when
// the test ends.
func openState(t *testing.T, srv *server, name string, lease time.Duration) *sharedstate.State {
	t.Helper()
	st, err := open(testContext(t), srv.options(), name, []sharedstate.Option{sharedstate.WithLockLease(lease)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int32
	sharedstatetest.Run(t, func(t *testing.T) *sharedstate.State {
		st, err := OpenURL(testContext(t), "unix://"+srv.addr(), fmt.Sprintf("conformance%d", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// TestUnsupported: what the Redis engine does not keep (the owner's
// statistics, the names of a state's objects, the changes to a map) fails
// with ErrUnsupported, which matches errors.ErrUnsupported, and nothing else
// breaks.
func TestUnsupported(t *testing.T) {
	st := openState(t, startServer(t), "unsupported", defaultLease)
	ctx := testContext(t)
	_, statsErr := st.Stats(ctx)
	namesErr := st.Names(ctx, sharedstate.KindMap, func(string, int64) bool { return true })
	_, watchErr := sharedstate.NewMap[int](st, "m").Watch(ctx)
	for what, err := range map[string]error{"Stats": statsErr, "Names": namesErr, "Watch": watchErr} {
		if !errors.Is(err, sharedstate.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", what, err)
		}
	}
	if _, err := st.Counter("c").Add(ctx, 1); err != nil {
		t.Errorf("Add after them: %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, &redis.Options{Network: "unix", Addr: "/nonexistent/redis.sock"}, "app")
	if !errors.Is(err, sharedstate.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open of an unreachable Redis: err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open took %v after its context ended", d)
	}
	if _, err := Open(ctx, &redis.Options{}, "../app"); !errors.Is(err, sharedstate.ErrInvalidName) {
		t.Errorf("Open with a bad name: err = %v, want ErrInvalidName", err)
	}
}

// Redis is killed and restarted: calls fail with ErrUnavailable while it is
// down, when their context ends, and work again once it is back.
func TestRedisRestart(t *testing.T) {
	srv := startServer(t)
	st := openState(t, srv, "restart", defaultLease)
	ctx := testContext(t)
	c := st.Counter("c")
	if _, err := c.Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mu := st.Mutex("m")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	before := mu.Token()
	news, err := st.Subscribe(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}

	srv.kill()
	for _, call := range []struct {
		what string
		fn   func(context.Context) error
	}{
		{"Add", func(ctx context.Context) error { _, err := c.Add(ctx, 1); return err }},
		{"Load", func(ctx context.Context) error { _, err := c.Load(ctx); return err }},
		{"Map.Store", func(ctx context.Context) error {
			return sharedstate.NewMap[int](st, "m").Store(ctx, "k", 1)
		}},
		{"Held", func(ctx context.Context) error { _, err := mu.Held(ctx); return err }},
	} {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		start := time.Now()
		err := call.fn(short)
		cancel()
		if !errors.Is(err, sharedstate.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s while Redis is down: err = %v, want ErrUnavailable and DeadlineExceeded", call.what, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v with a context of 200ms", call.what, d)
		}
	}

	// A call made while Redis is down waits for it, within its context.
	done := make(chan error)
	go func() {
		_, err := c.Add(ctx, 10)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	srv.start()
	if err := <-done; err != nil {
		t.Fatalf("Add across the restart: %v", err)
	}
	// The server has no persistence: the state restarted empty.
	if n, err := c.Load(ctx); err != nil || n != 10 {
		t.Errorf("Load after the restart = %d, %v; want 10", n, err)
	}
	if held, err := mu.Held(ctx); err != nil || held {
		t.Errorf("Held of a lock Redis lost = %v, %v; want false", held, err)
	}
	if err := mu.Unlock(ctx); !errors.Is(err, sharedstate.ErrNotLocked) {
		t.Errorf("Unlock of a lock Redis lost: err = %v, want ErrNotLocked", err)
	}
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if mu.Token() <= before {
		t.Errorf("token %d after %d: not increasing across a loss of data", mu.Token(), before)
	}
	// The subscription is renewed on a new connection, in a moment.
	for n := 0; n == 0; {
		if n, err = st.Publish(ctx, "news", []byte("back")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case msg := <-news:
		if string(msg) != "back" {
			t.Errorf("message after the restart: %q", msg)
		}
	case <-ctx.Done():
		t.Error("no message after the restart")
	}
}

// With persistence, data survives a restart, but a lock whose lease ran out
// while Redis was away is lost: its holder learns it from Held and Unlock.
func TestLeaseLapsedWhileAway(t *testing.T) {
	srv := startServer(t, "--appendonly", "yes", "--appendfsync", "always")
	const lease = 300 * time.Millisecond
	st := openState(t, srv, "lapse", lease)
	ctx := testContext(t)
	if _, err := st.Counter("c").Add(ctx, 5); err != nil {
		t.Fatal(err)
	}
	mu := st.Mutex("m")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	time.Sleep(2 * lease)
	srv.start()
	if n, err := st.Counter("c").Load(ctx); err != nil || n != 5 {
		t.Fatalf("counter after a restart with persistence = %d, %v; want 5", n, err)
	}
	if held, err := mu.Held(ctx); err != nil || held {
		t.Errorf("Held after the lease ran out = %v, %v; want false", held, err)
	}
	if err := mu.Unlock(ctx); !errors.Is(err, sharedstate.ErrNotLocked) {
		t.Errorf("Unlock after the lease ran out: err = %v, want ErrNotLocked", err)
	}
	other := openState(t, srv, "lapse", lease).Mutex("m")
	if ok, err := other.TryLock(ctx); err != nil || !ok {
		t.Fatalf("TryLock of a lapsed lock = %v, %v; want true", ok, err)
	}
	if other.Token() <= mu.Token() {
		t.Errorf("token %d after %d: not increasing", other.Token(), mu.Token())
	}
}

// A holder paused (SIGSTOP) for longer than its lease loses the lock to
// another process, and learns it when it resumes.
func TestPausedHolder(t *testing.T) {
	srv := startServer(t)
	const lease = 300 * time.Millisecond
	w := startWorker(t, srv, "hold", "paused", lease)
	line := w.readLine()
	theirs, err := strconv.ParseUint(strings.TrimPrefix(line, "locked "), 10, 64)
	if err != nil {
		t.Fatalf("worker: %q", line)
	}
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	mu := openState(t, srv, "paused", lease).Mutex("m")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if mu.Token() <= theirs {
		t.Errorf("token %d after the paused holder's %d", mu.Token(), theirs)
	}
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w.stdin, "check")
	if got := w.readLine(); got != "held false" {
		t.Errorf("paused holder: %q, want \"held false\"", got)
	}
	if got := w.readLine(); got != "unlock: not locked" {
		t.Errorf("paused holder: %q, want \"unlock: not locked\"", got)
	}
	if held, err := mu.Held(ctx); err != nil || !held {
		t.Errorf("the new holder: Held = %v, %v; want true", held, err)
	}
	w.wait()
}

// Two States of one name, as two processes would have, share counters and
// locks.
func TestTwoStates(t *testing.T) {
	srv := startServer(t)
	ctx := testContext(t)
	states := []*sharedstate.State{openState(t, srv, "two", defaultLease), openState(t, srv, "two", defaultLease)}
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for i := range 4 {
		st := states[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu, hits, unsafe := st.Mutex("m"), st.Counter("hits"), st.Counter("unsafe")
			for range 50 {
				if _, err := hits.Add(ctx, 1); err != nil {
					t.Error(err)
					return
				}
				if err := mu.Lock(ctx); err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				// A read-modify-write that only the lock makes safe.
				n, err := unsafe.Load(ctx)
				if err == nil {
					err = unsafe.Store(ctx, n+1)
				}
				inside.Add(-1)
				if err == nil {
					err = mu.Unlock(ctx)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, st := range states {
		for _, name := range []string{"hits", "unsafe"} {
			if n, err := st.Counter(name).Load(ctx); err != nil || n != 200 {
				t.Errorf("state %d: %s = %d, %v; want 200", i, name, n, err)
			}
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlaps under the lock", n)
	}
}

// Worker processes share a counter and a lock: no increment is lost, and
// none of the read-modify-writes under the lock overlaps another.
func TestWorkerProcesses(t *testing.T) {
	srv := startServer(t)
	const workers, rounds = 3, 40
	var ws []*workerProcess
	for range workers {
		ws = append(ws, startWorker(t, srv, "work", "workers", defaultLease))
	}
	for _, w := range ws {
		w.wait()
	}
	ctx := testContext(t)
	st := openState(t, srv, "workers", defaultLease)
	for _, name := range []string{"hits", "unsafe"} {
		if n, err := st.Counter(name).Load(ctx); err != nil || n != workers*rounds {
			t.Errorf("%s = %d, %v; want %d", name, n, err, workers*rounds)
		}
	}
}

// workerProcess is this test binary run again as a worker.
type workerProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *bufio.Reader
	stderr strings.Builder
}

func startWorker(t *testing.T, srv *server, role, name string, lease time.Duration) *workerProcess {
	t.Helper()
	w := &workerProcess{t: t, cmd: exec.Command(os.Args[0])}
	w.cmd.Env = append(os.Environ(),
		"REDISSTATE_WORKER="+role,
		"REDISSTATE_SOCK="+srv.addr(),
		"REDISSTATE_NAME="+name,
		"REDISSTATE_LEASE="+lease.String())
	w.cmd.Stderr = &w.stderr
	stdin, err := w.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.stdin = stdin.(*os.File)
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.stdout = bufio.NewReader(stdout)
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	return w
}

func (w *workerProcess) readLine() string {
	w.t.Helper()
	line, err := w.stdout.ReadString('\n')
	if err != nil {
		w.t.Fatalf("worker: %v; its stderr:\n%s", err, &w.stderr)
	}
	return strings.TrimSuffix(line, "\n")
}

func (w *workerProcess) wait() {
	w.t.Helper()
	w.stdin.Close()
	if err := w.cmd.Wait(); err != nil {
		w.t.Errorf("worker: %v; its stderr:\n%s", err, &w.stderr)
	}
}

// worker runs in a worker process: "hold" takes a lock and, once told,
// reports whether it still holds it; "work" does the rounds of
// TestWorkerProcesses.
func worker(role string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := time.ParseDuration(os.Getenv("REDISSTATE_LEASE"))
	if err != nil {
		return err
	}
	opts := &redis.Options{Network: "unix", Addr: os.Getenv("REDISSTATE_SOCK")}
	st, err := open(ctx, opts, os.Getenv("REDISSTATE_NAME"), []sharedstate.Option{sharedstate.WithLockLease(lease)})
	if err != nil {
		return err
	}
	defer st.Close()
	mu := st.Mutex("m")
	switch role {
	case "hold":
		if err := mu.Lock(ctx); err != nil {
			return err
		}
		fmt.Printf("locked %d\n", mu.Token())
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		held, err := mu.Held(ctx)
		if err != nil {
			return err
		}
		fmt.Printf("held %v\n", held)
		if err := mu.Unlock(ctx); errors.Is(err, sharedstate.ErrNotLocked) {
			fmt.Println("unlock: not locked")
		} else {
			fmt.Printf("unlock: %v\n", err)
		}
	case "work":
		hits, unsafe := st.Counter("hits"), st.Counter("unsafe")
		for range 40 {
			if err := mu.Lock(ctx); err != nil {
				return err
			}
			n, err := unsafe.Load(ctx)
			if err != nil {
				return err
			}
			if err := unsafe.Store(ctx, n+1); err != nil {
				return err
			}
			if err := mu.Unlock(ctx); err != nil {
				return err
			}
			if _, err := hits.Add(ctx, 1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

// A write sent twice with one request id, as after a lost answer, applies
// once; its result key goes once the next write acknowledges it.
func TestExactlyOnce(t *testing.T) {
	srv := startServer(t)
	ctx := testContext(t)
	e := newEngine(redis.NewClient(srv.options()), true, "once", nil)
	if err := e.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	counter, done := e.keys.counter("c"), e.keys.result(e.client, 1)
	for range 2 {
		v, err := scriptAdd.Run(ctx, e.rdb, []string{counter, done}, 5, resultTTL.Milliseconds(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		if r, err := parseResult(v); err != nil || r.n != 5 {
			t.Errorf("Add(5), sent again: %+v, %v; want 5", r, err)
		}
	}
	rdb := srv.client()
	if n, err := rdb.Get(ctx, counter).Int64(); err != nil || n != 5 {
		t.Errorf("counter = %d, %v; want 5", n, err)
	}
	if _, err := scriptAdd.Run(ctx, e.rdb, []string{counter, e.keys.result(e.client, 2), done}, 1, resultTTL.Milliseconds(), 1).Result(); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, done).Val(); n != 0 {
		t.Errorf("the acknowledged result is still kept")
	}
}

// A write whose answer is lost is sent again, and applied once.
func TestLostReply(t *testing.T) {
	srv := startServer(t)
	proxy := startLossyProxy(t, srv)
	ctx := testContext(t)
	st, err := Open(ctx, &redis.Options{Network: "unix", Addr: proxy.sock}, "lost")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c := st.Counter("c")
	m := sharedstate.NewMap[int](st, "m")
	for i := range 3 {
		proxy.arm.Store(true)
		if n, err := c.Add(ctx, 1); err != nil || n != int64(i+1) {
			t.Errorf("Add(1) whose answer was lost = %d, %v; want %d", n, err, i+1)
		}
		if proxy.arm.Load() {
			t.Fatal("no answer was lost")
		}
		proxy.arm.Store(true)
		if _, loaded, err := m.LoadOrStore(ctx, strconv.Itoa(i), i); err != nil || loaded {
			t.Errorf("LoadOrStore whose answer was lost: loaded = %v, %v; want false", loaded, err)
		}
	}
	if n, err := c.Load(ctx); err != nil || n != 3 {
		t.Errorf("counter = %d, %v; want 3", n, err)
	}
}

// Map values are stored as the msgpack that Map encodes, readable by any
// msgpack decoder; expired entries leave no trace in the map's indexes.
func TestStoredBytes(t *testing.T) {
	type session struct {
		User  string
		Roles []string
	}
	srv := startServer(t)
	ctx := testContext(t)
	st := openState(t, srv, "bytes", defaultLease)
	m := sharedstate.NewMap[session](st, "sessions")
	want := session{User: "ada", Roles: []string{"admin"}}
	if err := m.Store(ctx, "s1", want); err != nil {
		t.Fatal(err)
	}
	rdb := srv.client()
	k := keys{prefix: "sharedstate:{bytes}:"}
	raw, err := rdb.HGet(ctx, k.entry("sessions", "s1"), "v").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var got session
	if err := msgpack.Unmarshal(raw, &got); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored bytes decode to %v, %v; want %v", got, err, want)
	}

	if err := m.Store(ctx, "s2", want, sharedstate.WithTTL(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := m.Len(ctx); err != nil || n != 1 {
		t.Errorf("Len = %d, %v; want 1", n, err)
	}
	for _, key := range []string{k.index("sessions"), k.expiries("sessions")} {
		members, err := rdb.ZRange(ctx, key, 0, -1).Result()
		if err != nil || strings.Contains(fmt.Sprint(members), "s2") {
			t.Errorf("%s = %v, %v: lists the expired entry", key, members, err)
		}
	}
}

// Close ends every goroutine the engine started, and releases its locks at
// once.
func TestCloseEndsGoroutines(t *testing.T) {
	srv := startServer(t)
	ctx := testContext(t)
	before := runtime.NumGoroutine()

	st, err := Open(ctx, srv.options(), "goroutines")
	if err != nil {
		t.Fatal(err)
	}
	mu := st.Mutex("m")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := st.Mutex("m").Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock of a held lock: err = %v, want DeadlineExceeded", err)
	}
	cancel()
	if _, err := st.Subscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	other, err := Open(ctx, srv.options(), "goroutines")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := other.Mutex("m").TryLock(ctx); err != nil || !ok {
		t.Errorf("TryLock after the holder closed = %v, %v; want true at once", ok, err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Open, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLockLeaseOption: WithLockLease reaches the engine through Open.
func TestLockLeaseOption(t *testing.T) {
	srv := startServer(t)
	ctx := testContext(t)
	st, err := Open(ctx, srv.options(), "leaseopt", sharedstate.WithLockLease(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mu := st.Mutex("m")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if ttl := srv.client().PTTL(ctx, "sharedstate:{leaseopt}:lock:m").Val(); ttl <= 0 || ttl > 250*time.Millisecond {
		t.Errorf("lock key TTL %v, want the 250ms lease", ttl)
	}
}
