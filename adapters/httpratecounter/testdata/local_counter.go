// This file stands in for httprate's local_counter.go while httprate's own
// tests run (TestUpstream): NewLocalLimitCounter, the counter of every
// limiter made without WithLimitCounter and the one httprate's counter
// tests test, returns an httpratecounter.Counter, reached through a proxy of
// the state that the process running TestUpstream owns. Each counter gets a
// map of its own, as each local counter has its own counts.
package httprate

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/httpratecounter"
)

type localCounter = httpratecounter.Counter

var (
	proxy    = sync.OnceValue(openProxy)
	counters atomic.Int64
)

func NewLocalLimitCounter(windowLength time.Duration) *localCounter {
	c := httpratecounter.New(proxy(), fmt.Sprintf("counter-%d", counters.Add(1)))
	c.Config(0, windowLength)
	return c
}

var _ LimitCounter = (*localCounter)(nil)

func openProxy() *sharedstate.State {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, os.Getenv("HTTPRATECOUNTER_STATE"),
		sharedstate.WithDir(os.Getenv("HTTPRATECOUNTER_DIR")),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	if st.IsOwner() {
		panic("httprate's tests own the state: they must reach it through a proxy")
	}
	return st
}
