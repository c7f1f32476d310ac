package httpratecounter_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/httprate"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/httpratecounter"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

var _ httprate.LimitCounter = (*httpratecounter.Counter)(nil)

// TestUpstream runs httprate's own tests, its counter tests and its limiter
// tests, with the counter of httprate.NewLocalLimitCounter (and so of every
// limiter made without WithLimitCounter) replaced by a Counter that
// reaches, through a proxy, the state this process owns: see
// testdata/local_counter.go.
func TestUpstream(t *testing.T) {
	sharedstatetest.RunUpstream(t, "github.com/go-chi/httprate", []string{"."},
		map[string]string{"local_counter.go": "testdata/local_counter.go"})
}

// TestLimitAcrossWorkers: limiters in two processes over counters of one
// name share the limit: of 40 requests, 20 to each, exactly the limit pass.
func TestLimitAcrossWorkers(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	var handlers []http.Handler
	for _, st := range []*sharedstate.State{owner, proxy} {
		counter := httpratecounter.New(st, "rate")
		limit := httprate.Limit(25, time.Hour, httprate.WithLimitCounter(counter))
		handlers = append(handlers, limit(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	}
	passed := 0
	for i := range 40 {
		rec := httptest.NewRecorder()
		handlers[i%2].ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code == http.StatusOK {
			passed++
		}
	}
	if passed != 25 {
		t.Errorf("%d of 40 requests passed, want the limit, 25", passed)
	}
}

// TestCounts: counts are exact from many goroutines of a proxy, kept per
// window, and the previous window's count is read with the current one's.
func TestCounts(t *testing.T) {
	_, proxy := sharedstatetest.Pair(t)
	c := httpratecounter.New(proxy, "rate")
	now := time.Now()
	if err := c.Increment("k", now); !errors.Is(err, httpratecounter.ErrNoWindow) {
		t.Fatalf("Increment before Config: %v, want ErrNoWindow", err)
	}
	c.Config(10, time.Minute)
	previous := now.Truncate(time.Minute)
	current := previous.Add(time.Minute)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.IncrementBy("k", previous, 2); err != nil {
				t.Error(err)
			}
			if err := c.Increment("k", current); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if curr, prev, err := c.Get("k", current, previous); err != nil || curr != 50 || prev != 100 {
		t.Errorf("Get = %d, %d, %v; want 50, 100", curr, prev, err)
	}
	if curr, prev, err := c.Get("other", current, previous); err != nil || curr != 0 || prev != 0 {
		t.Errorf("Get of a key never counted = %d, %d, %v", curr, prev, err)
	}
	// A window that ended two window lengths ago is read by nobody.
	old := previous.Add(-2 * time.Minute)
	if err := c.Increment("k", old); err != nil {
		t.Fatal(err)
	}
	if curr, _, err := c.Get("k", old, old.Add(-time.Minute)); err != nil || curr != 0 {
		t.Errorf("a window long over was kept: %d, %v", curr, err)
	}
}
