// This file stands in for httprate's local_counter.go while httprate's own
// tests run (TestUpstream runs them with sharedstatetest.RunUpstream):
// NewLocalLimitCounter, the counter of every limiter made without
// WithLimitCounter and the one httprate's counter tests test, returns an
// httpratecounter.Counter, reached through a proxy of the state that the
// process running TestUpstream owns. Each counter gets a map of its own, as
// each local counter has its own counts.
package httprate

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/adapters/httpratecounter"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

type localCounter = httpratecounter.Counter

var counters atomic.Int64

func NewLocalLimitCounter(windowLength time.Duration) *localCounter {
	c := httpratecounter.New(sharedstatetest.UpstreamProxy(), fmt.Sprintf("counter-%d", counters.Add(1)))
	c.Config(0, windowLength)
	return c
}

var _ LimitCounter = (*localCounter)(nil)
