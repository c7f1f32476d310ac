package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

	expect(t, l, "a", Result{Allowed: true, Remaining: 2})
	expect(t, l, "a", Result{Allowed: true, Remaining: 1})
	expect(t, l, "b", Result{Allowed: true, Remaining: 2}) // keys count apart
	expect(t, l, "a", Result{Allowed: true, Remaining: 0})
	expect(t, l, "a", Result{RetryAfter: 50 * time.Second})
	c.advance(49 * time.Second)
	expect(t, l, "a", Result{RetryAfter: time.Second}) // refusals are not counted
	c.advance(time.Second)                             // a new window
	expect(t, l, "a", Result{Allowed: true, Remaining: 2})
}

func TestSlidingWindow(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 10, 0, time.UTC)}
	l := withClock(SlidingWindow(open(t, t.TempDir()), "sliding", 3, 10*time.Second), c)

	expect(t, l, "a", Result{Allowed: true, Remaining: 2}) // at 0 s
	c.advance(2 * time.Second)
	expect(t, l, "a", Result{Allowed: true, Remaining: 1}) // at 2 s
	c.advance(2 * time.Second)
	expect(t, l, "a", Result{Allowed: true, Remaining: 0}) // at 4 s
	expect(t, l, "b", Result{Allowed: true, Remaining: 2})
	c.advance(2 * time.Second)
	expect(t, l, "a", Result{RetryAfter: 4 * time.Second}) // at 6 s: the event at 0 s leaves at 10 s
	c.advance(4 * time.Second)
	expect(t, l, "a", Result{Allowed: true, Remaining: 0}) // at 10 s
	// Unlike a fixed window, crossing any boundary frees no more than
	// the events that left the last 10 seconds.
	c.advance(time.Second)
	expect(t, l, "a", Result{RetryAfter: time.Second}) // at 11 s: the event at 2 s leaves at 12 s
}

// TestSharedBetweenProcesses hammers one key from two States, one the owner
// and one a proxy as another process would be, and checks that exactly the
// limit is allowed: the counting is atomic across processes.
func TestSharedBetweenProcesses(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func(st *sharedstate.State) *Limiter
	}{
		{"Fixed", func(st *sharedstate.State) *Limiter { return FixedWindow(st, "fixed", 25, time.Hour) }},
		{"Sliding", func(st *sharedstate.State) *Limiter { return SlidingWindow(st, "sliding", 25, time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			owner, proxy := open(t, dir), open(t, dir)
			if !owner.IsOwner() || proxy.IsOwner() {
				t.Fatal("want one owner and one proxy")
			}
			// A fixed window of an hour could end during the test;
			// pin the clock inside one.
			c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
			limiters := []*Limiter{withClock(tc.new(owner), c), withClock(tc.new(proxy), c)}
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for i := range 8 {
				l := limiters[i%2]
				wg.Go(func() {
					for range 10 {
						res, err := l.Allow(t.Context(), "k")
						if err != nil {
							t.Error(err)
							return
						}
						if res.Allowed {
							allowed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if n := allowed.Load(); n != 25 {
				t.Errorf("%d of 80 events allowed, want exactly the limit, 25", n)
			}
		})
	}
}

func TestEntriesExpire(t *testing.T) {
	st := open(t, t.TempDir())
	fixed := FixedWindow(st, "fixed", 5, 50*time.Millisecond)
	sliding := SlidingWindow(st, "sliding", 5, 50*time.Millisecond)
	for _, l := range []*Limiter{fixed, sliding} {
		if _, err := l.Allow(t.Context(), "gone"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	for name, n := range map[string]func(context.Context) (int, error){
		"fixed":   fixed.counts.Len,
		"sliding": sliding.times.Len,
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
		if w.Code != want.code || w.Header().Get("Retry-After") != want.retryAfter ||
			w.Header().Get("X-RateLimit-Remaining") != want.remaining || w.Header().Get("X-RateLimit-Limit") != "2" {
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
