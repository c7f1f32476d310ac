package limiterstore_test

import (
	"testing"
	"time"

	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/tests"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/limiterstore"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

// proxyOf returns a State that reaches a new state through its owner's
// socket.
func proxyOf(t *testing.T) *sharedstate.State {
	_, proxy := sharedstatetest.Pair(t)
	return proxy
}

// ulule/limiter's own store tests, through a proxy.

func TestStoreSequentialAccess(t *testing.T) {
	tests.TestStoreSequentialAccess(t, limiterstore.New(proxyOf(t), "limits"))
}

func TestStoreConcurrentAccess(t *testing.T) {
	tests.TestStoreConcurrentAccess(t, limiterstore.New(proxyOf(t), "limits"))
}

// TestLimitIsExact: a limiter over the store allows exactly its limit from
// many goroutines at once, and its context's reset is the period's end.
func TestLimitIsExact(t *testing.T) {
	lim := limiter.New(limiterstore.New(proxyOf(t), "limits"), limiter.Rate{Period: time.Hour, Limit: 100})
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
