package limiterstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/tests"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/limiterstore"
)

// proxy opens a state twice, as two processes would, and returns the State
// that reaches it through the owner's socket.
func proxy(t *testing.T) *sharedstate.State {
	t.Helper()
	dir := t.TempDir()
	var states []*sharedstate.State
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		st, err := sharedstate.Open(ctx, "limiterstore-test", sharedstate.WithDir(dir),
			sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		states = append(states, st)
	}
	if states[1].IsOwner() {
		t.Fatal("the second State owns the state")
	}
	return states[1]
}

// ulule/limiter's own store tests, through a proxy.

func TestStoreSequentialAccess(t *testing.T) {
	tests.TestStoreSequentialAccess(t, limiterstore.New(proxy(t), "limits"))
}

func TestStoreConcurrentAccess(t *testing.T) {
	tests.TestStoreConcurrentAccess(t, limiterstore.New(proxy(t), "limits"))
}

// TestLimitIsExact: a limiter over the store allows exactly its limit from
// many goroutines at once, and its context's reset is the period's end.
func TestLimitIsExact(t *testing.T) {
	lim := limiter.New(limiterstore.New(proxy(t), "limits"), limiter.Rate{Period: time.Hour, Limit: 100})
	done := make(chan int)
	for range 20 {
		go func() {
			n := 0
			for range 10 {
				c, err := lim.Get(t.Context(), "k")
				if err != nil {
					t.Error(err)
				}
				if !c.Reached {
					n++
				}
			}
			done <- n
		}()
	}
	allowed := 0
	for range 20 {
		allowed += <-done
	}
	if allowed != 100 {
		t.Errorf("%d of 200 allowed, want the limit, 100", allowed)
	}
	c, err := lim.Peek(t.Context(), "k")
	if err != nil || !c.Reached || c.Reset < time.Now().Add(59*time.Minute).Unix() || c.Reset > time.Now().Add(time.Hour).Unix()+1 {
		t.Errorf("Peek = %+v, %v", c, err)
	}
}
