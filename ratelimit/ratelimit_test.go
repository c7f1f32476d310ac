package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

func open(t *testing.T, dir string) *sharedstate.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, "ratelimit-test", sharedstate.WithDir(dir),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// clock is a fake clock for a Limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(l *Limiter, c *clock) *Limiter {
	l.now = c.now
	return l
}

// expect calls Allow and checks its result.
func expect(t *testing.T, l *Limiter, key string, want Result) {
	t.Helper()
	got, err := l.Allow(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Allow(%q) = %+v, want %+v", key, got, want)
	}
}

func TestFixedWindow(t *testing.T) {
	// 10 s into a minute-long window.
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 10, 0, time.UTC)}
	l := withClock(FixedWindow(open(t, t.TempDir()), "fixed", 3, time.Minute), c)

	left := 50 * time.Second
	expect(t, l, "a", Result{Allowed: true, Remaining: 2, Reset: left})
	expect(t, l, "a", Result{Allowed: true, Remaining: 1, Reset: left})
	expect(t, l, "b", Result{Allowed: true, Remaining: 2, Reset: left}) // keys count apart
	expect(t, l, "a", Result{Allowed: true, Remaining: 0, Reset: left})
	expect(t, l, "a", Result{RetryAfter: left, Reset: left})
	c.advance(49 * time.Second)
	expect(t, l, "a", Result{RetryAfter: time.Second, Reset: time.Second})
	c.advance(time.Second) // a new window
	expect(t, l, "a", Result{Allowed: true, Remaining: 2, Reset: time.Minute})
}

func TestSlidingWindow(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 10, 0, time.UTC)}
	l := withClock(SlidingWindow(open(t, t.TempDir()), "sliding", 3, 10*time.Second), c)

	s := time.Second
	expect(t, l, "a", Result{Allowed: true, Remaining: 2, Reset: 10 * s}) // at 0 s
	c.advance(2 * s)
	expect(t, l, "a", Result{Allowed: true, Remaining: 1, Reset: 10 * s}) // at 2 s
	c.advance(2 * s)
	expect(t, l, "a", Result{Allowed: true, Remaining: 0, Reset: 10 * s}) // at 4 s
	expect(t, l, "b", Result{Allowed: true, Remaining: 2, Reset: 10 * s})
	c.advance(2 * s)
	expect(t, l, "a", Result{RetryAfter: 4 * s, Reset: 8 * s}) // at 6 s: the event at 0 s leaves at 10 s
	c.advance(4 * s)
	expect(t, l, "a", Result{Allowed: true, Remaining: 0, Reset: 10 * s}) // at 10 s
	// Unlike a fixed window, crossing any boundary frees no more than
	// the events that left the last 10 seconds.
	c.advance(s)
	expect(t, l, "a", Result{RetryAfter: s, Reset: 9 * s}) // at 11 s: the event at 2 s leaves at 12 s
}

// TestTokenBucket: a full bucket allows a burst of its size, then one event
// per interval, on the owner's clock.
func TestTokenBucket(t *testing.T) {
	l := TokenBucket(open(t, t.TempDir()), "bucket", 20, 3) // a token every 50 ms
	for i := range 3 {
		res, err := l.Allow(t.Context(), "a")
		if err != nil || !res.Allowed || res.Remaining != 2-i {
			t.Fatalf("event %d of a burst of 3: %+v, %v", i+1, res, err)
		}
	}
	res, err := l.Allow(t.Context(), "a")
	if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond || res.Reset > 150*time.Millisecond {
		t.Fatalf("past the burst: %+v, %v", res, err)
	}
	if res, _ := l.Allow(t.Context(), "b"); !res.Allowed {
		t.Fatal("another key's bucket is not full")
	}
	time.Sleep(res.RetryAfter)
	if res, err := l.Allow(t.Context(), "a"); err != nil || !res.Allowed {
		t.Fatalf("after waiting RetryAfter: %+v, %v", res, err)
	}
}

// TestSharedBetweenProcesses: 4 worker processes, each from 8 goroutines,
// hit one key of each kind of Limiter; between them exactly the limit is
// allowed: the counting is atomic across processes.
func TestSharedBetweenProcesses(t *testing.T) {
	dir := t.TempDir()
	open(t, dir) // the owner, here: every worker is a proxy
	const workers = 4
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+dir)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	allowed := map[string]int{}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
		for line := range strings.Lines(outs[i].String()) {
			var kind string
			var n int
			if _, err := fmt.Sscanf(line, "allowed %s %d", &kind, &n); err == nil {
				allowed[kind] += n
			}
		}
	}
	for kind, want := range map[string]int{"fixed": 25, "sliding": 25, "bucket": 25} {
		if allowed[kind] != want {
			t.Errorf("%s: %d of %d events allowed, want exactly %d", kind, allowed[kind], workers*8*10, want)
		}
	}
}

// workerEnv, set to a state's directory, makes the test binary a worker of
// TestSharedBetweenProcesses.
const workerEnv = "RATELIMIT_TEST_WORKER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(workerEnv); dir != "" {
		os.Exit(runWorker(dir))
	}
	os.Exit(m.Run())
}

// runWorker hits one key of each kind of Limiter from 8 goroutines, 10
// times each, and prints how many events were allowed.
func runWorker(dir string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := sharedstate.Open(ctx, "ratelimit-test", sharedstate.WithDir(dir), sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer st.Close()
	for kind, l := range map[string]*Limiter{
		"fixed":   FixedWindow(st, "fixed", 25, 24*time.Hour), // ends during a 1 s test once in 86,400 runs
		"sliding": SlidingWindow(st, "sliding", 25, time.Hour),
		"bucket":  TokenBucket(st, "bucket", 1.0/3600, 25), // a token an hour
	} {
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					res, err := l.Allow(ctx, "k")
					if err != nil {
						fmt.Println(err)
						os.Exit(1)
					}
					if res.Allowed {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		fmt.Println("allowed", kind, allowed.Load())
	}
	return 0
}

func TestEntriesExpire(t *testing.T) {
	st := open(t, t.TempDir())
	fixed := FixedWindow(st, "fixed", 5, 50*time.Millisecond)
	sliding := SlidingWindow(st, "sliding", 5, 50*time.Millisecond)
	bucket := TokenBucket(st, "bucket", 100, 5) // full again 10 ms after a token is taken
	for _, l := range []*Limiter{fixed, sliding, bucket} {
		if _, err := l.Allow(t.Context(), "gone"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	for name, n := range map[string]func(context.Context) (int, error){
		"fixed":   fixed.counts.Len,
		"sliding": sliding.times.Len,
		"bucket":  sharedstate.NewMap[int64](st, "bucket").Len,
	} {
		if got, err := n(t.Context()); err != nil || got != 0 {
			t.Errorf("%s: %d entries, %v; want none, expired", name, got, err)
		}
	}
}

func TestHandler(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 300*int(time.Millisecond), time.UTC)}
	l := withClock(FixedWindow(open(t, t.TempDir()), "fixed", 2, time.Minute), c)
	h := l.Handler(ByIP, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	serve := func(remoteAddr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remoteAddr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i, want := range []struct {
		addr, remaining string
		code            int
		retryAfter      string
	}{
		{"10.0.0.1:1000", "1", http.StatusOK, ""},
		{"10.0.0.1:1001", "0", http.StatusOK, ""},                // another port, the same client
		{"10.0.0.1:1002", "0", http.StatusTooManyRequests, "60"}, // 59.7 s, rounded up
		{"10.0.0.2:1000", "1", http.StatusOK, ""},
	} {
		w := serve(want.addr)
		if w.Code != want.code || w.Header().Get("Retry-After") != want.retryAfter || w.Header().Get("RateLimit-Reset") != "60" ||
			w.Header().Get("RateLimit-Remaining") != want.remaining || w.Header().Get("RateLimit-Limit") != "2" {
			t.Errorf("request %d: %d, headers %v; want %d, Retry-After %q, remaining %s",
				i, w.Code, w.Header(), want.code, want.retryAfter, want.remaining)
		}
	}
}

func TestHandlerFailsClosed(t *testing.T) {
	st := open(t, t.TempDir())
	l := FixedWindow(st, "fixed", 2, time.Minute)
	st.Close()
	h := l.Handler(ByIP, http.NotFoundHandler())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("with the state closed: %d, want 503", w.Code)
	}
}

func TestArgsChecked(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("FixedWindow with a limit of 0 did not panic")
		}
	}()
	FixedWindow(nil, "x", 0, time.Second)
}
