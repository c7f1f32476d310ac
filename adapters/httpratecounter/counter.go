// Package httpratecounter implements go-chi/httprate's LimitCounter on a
// sharedstate Map, so that an httprate limiter counts the requests of every
// worker process of an app on one host, as its Redis counter does across
// hosts:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//	if err != nil { ... }
//	r.Use(httprate.LimitByIP(100, time.Minute,
//		httprate.WithLimitCounter(httpratecounter.New(st, "rate"))))
//
// httprate estimates a sliding window from two fixed ones, the current and
// the previous. The count of a key in one window is one entry of the Map
// called name, added to at the state's owner in one step (Map.Add), so
// counts are exact however many workers count at once; an entry expires
// when no limiter can ask for its window any more, two window lengths after
// the window starts. Get reads the two windows' counts with two concurrent
// loads, which a proxy sends together.
//
// httprate reads the counts and then increments them, holding a mutex of its
// own in between: within one process, requests are decided one at a time;
// across processes, as with httprate's Redis counter, a burst that arrives at
// several workers at once may let a few requests more than the limit
// through. A limit that must hold exactly is best kept with the ratelimit
// package of the sharedstate module, which decides and counts in one step.
//
// The package needs nothing of httprate to build: a Counter satisfies
// httprate.LimitCounter by its methods alone.
package httpratecounter

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/timeout"
)

// DefaultTimeout is the Timeout that New sets.
const DefaultTimeout = 10 * time.Second

// ErrNoWindow is returned by a Counter whose window length was never set
// by Config, which httprate calls when a limiter is made with
// httprate.WithLimitCounter.
var ErrNoWindow = errors.New("httpratecounter: no window length: Config was not called")

// Counter is an httprate.LimitCounter kept in a sharedstate Map. It is safe
// for concurrent use.
type Counter struct {
	m      *sharedstate.Map[int64]
	window atomic.Int64 // a time.Duration

	// Timeout bounds each call: while no process owns the state, a call
	// waits for a new owner only this long before it fails with
	// sharedstate.ErrUnavailable, and the limiter answers the request with
	// its error handler. Zero means no bound. Set it before first use.
	Timeout time.Duration
}

// New returns a Counter kept in the map called name of st. Counters of the
// same name, in any process of st, share their counts; use one name per
// limiter.
func New(st *sharedstate.State, name string) *Counter {
	return &Counter{m: sharedstate.NewMap[int64](st, name), Timeout: DefaultTimeout}
}

// Config sets the length of the limiter's windows. httprate calls it when
// it makes a limiter with this counter.
func (c *Counter) Config(requestLimit int, windowLength time.Duration) {
	c.window.Store(int64(windowLength))
}

// Increment adds one to the count of key in the window that starts at
// currentWindow.
func (c *Counter) Increment(key string, currentWindow time.Time) error {
	return c.IncrementBy(key, currentWindow, 1)
}

// IncrementBy adds amount to the count of key in the window that starts at
// currentWindow. A count for a window that has already ended as a previous
// window too is read by no limiter, and is not kept.
func (c *Counter) IncrementBy(key string, currentWindow time.Time, amount int) error {
	window := time.Duration(c.window.Load())
	if window <= 0 {
		return ErrNoWindow
	}
	ttl := time.Until(currentWindow.Add(2 * window))
	if ttl <= 0 {
		return nil
	}
	ctx, cancel := timeout.Context(c.Timeout)
	defer cancel()
	_, err := c.m.Add(ctx, entry(key, currentWindow), int64(amount), sharedstate.WithTTL(ttl))
	return err
}

// Get returns the counts of key in the windows that start at currentWindow
// and previousWindow.
func (c *Counter) Get(key string, currentWindow, previousWindow time.Time) (curr, prev int, err error) {
	ctx, cancel := timeout.Context(c.Timeout)
	defer cancel()
	type load struct {
		n   int64
		err error
	}
	previous := make(chan load, 1)
	go func() {
		n, _, err := c.m.Load(ctx, entry(key, previousWindow))
		previous <- load{n, err}
	}()
	n, _, err := c.m.Load(ctx, entry(key, currentWindow))
	p := <-previous
	if err := errors.Join(err, p.err); err != nil {
		return 0, 0, err
	}
	return int(n), int(p.n), nil
}

// entry is the name of the count of key in the window that starts at start.
func entry(key string, start time.Time) string {
	return key + "@" + strconv.FormatInt(start.UnixNano(), 10)
}
