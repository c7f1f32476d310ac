// Package ratelimit limits how often each client may do something, counting
// across every worker process of an app with sharedstate, so that a limit of
// 100 requests a minute means 100, not 100 per worker.
//
// A Limiter counts events per key (a client's address, a user, an API
// token) in one of two ways:
//
//   - FixedWindow counts the events of each window of time (12:00:00 to
//     12:01:00, then 12:01:00 to 12:02:00...). It costs one small entry per
//     key, but a client may send up to twice the limit across a boundary.
//   - SlidingWindow keeps the time of each event allowed in the last window,
//     so that no window, wherever it starts, holds more than the limit. Its
//     entry grows with the limit: use it for limits up to a few hundred.
//
// Either way the count is updated with sharedstate.Map.Update, an atomic
// read-modify-write, so that two workers counting the same key at once can
// never both take the last place; and entries carry a TTL, so that keys of
// clients that have gone do not accumulate.
//
// Handler wraps an http.Handler with a Limiter:
//
//	lim := ratelimit.FixedWindow(st, "api-limit", 100, time.Minute)
//	http.ListenAndServe(addr, lim.Handler(ratelimit.ByIP, mux))
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sharedstate/sharedstate"
)

// A Limiter allows up to a number of events per key in each window of time.
// It is safe for concurrent use, and Limiters of the same name in every
// process of a State share their counts.
type Limiter struct {
	limit  int
	window time.Duration
	counts *sharedstate.Map[int64]   // FixedWindow: events per key and window
	times  *sharedstate.Map[[]int64] // SlidingWindow: times of the events, in Unix nanoseconds
	now    func() time.Time          // the clock; tests replace it
}

// FixedWindow returns a Limiter that allows limit events per key in each
// window of the given length, counted in the map called name of st.
// It panics if limit < 1 or window <= 0.
func FixedWindow(st *sharedstate.State, name string, limit int, window time.Duration) *Limiter {
	checkArgs(limit, window)
	return &Limiter{limit: limit, window: window, counts: sharedstate.NewMap[int64](st, name), now: time.Now}
}

// SlidingWindow returns a Limiter that allows limit events per key in any
// interval of the given length, keeping their times in the map called name
// of st. It panics if limit < 1 or window <= 0.
func SlidingWindow(st *sharedstate.State, name string, limit int, window time.Duration) *Limiter {
	checkArgs(limit, window)
	return &Limiter{limit: limit, window: window, times: sharedstate.NewMap[[]int64](st, name), now: time.Now}
}

func checkArgs(limit int, window time.Duration) {
	if limit < 1 || window <= 0 {
		panic(fmt.Sprintf("ratelimit: limit %d and window %v: both must be positive", limit, window))
	}
}

// Limit returns the number of events allowed per window.
func (l *Limiter) Limit() int { return l.limit }

// A Result is the decision on one event.
type Result struct {
	Allowed   bool
	Remaining int // events still allowed in the window
	// RetryAfter is, if the event was refused, how long until one
	// would be allowed; else 0.
	RetryAfter time.Duration
}

// errLimited makes Update store nothing when an event is refused.
var errLimited = errors.New("limited")

// Allow records an event for key if the limit allows it, and reports
// whether it did. A refused event is not counted.
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	if l.counts != nil {
		return l.allowFixed(ctx, key)
	}
	return l.allowSliding(ctx, key)
}

func (l *Limiter) allowFixed(ctx context.Context, key string) (Result, error) {
	now := l.now()
	w := int64(l.window)
	i := now.UnixNano() / w
	left := time.Duration((i+1)*w - now.UnixNano()) // until the window ends
	// The entry dies with its window; the next window has its own key.
	n, err := l.counts.Update(ctx, key+"@"+strconv.FormatInt(i, 10), func(n int64, _ bool) (int64, error) {
		if n >= int64(l.limit) {
			return n, errLimited
		}
		return n + 1, nil
	}, sharedstate.WithTTL(left))
	switch {
	case errors.Is(err, errLimited):
		return Result{RetryAfter: left}, nil
	case err != nil:
		return Result{}, err
	}
	return Result{Allowed: true, Remaining: l.limit - int(n)}, nil
}

func (l *Limiter) allowSliding(ctx context.Context, key string) (Result, error) {
	var res Result
	_, err := l.times.Update(ctx, key, func(times []int64, _ bool) ([]int64, error) {
		// Read the clock here, not before Update: if Update retries,
		// the event happens when it is finally recorded.
		now := l.now().UnixNano()
		times = times[firstAfter(times, now-int64(l.window)):]
		if len(times) >= l.limit {
			res = Result{RetryAfter: time.Duration(times[len(times)-l.limit] + int64(l.window) - now)}
			return nil, errLimited
		}
		// Insert in order: the clocks of two processes read at nearly
		// the same moment may be recorded in either order.
		i, _ := slices.BinarySearch(times, now)
		times = slices.Insert(times, i, now)
		res = Result{Allowed: true, Remaining: l.limit - len(times)}
		return times, nil
	}, sharedstate.WithTTL(l.window)) // every time it holds is stale by then
	if err != nil && !errors.Is(err, errLimited) {
		return Result{}, err
	}
	return res, nil
}

// firstAfter returns the index of the first of the sorted times that is
// after t, or len(times) if none is.
func firstAfter(times []int64, t int64) int {
	i, found := slices.BinarySearch(times, t)
	for found && i < len(times) && times[i] == t {
		i++
	}
	return i
}

// ByIP returns the client's IP address, from r.RemoteAddr. Behind a reverse
// proxy, key on the address the proxy reports instead.
func ByIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Handler returns a handler that passes each request to next if the limit
// allows one more event for key(r). Otherwise it answers 429 Too Many
// Requests, with a Retry-After header giving the seconds to wait. It sets
// X-RateLimit-Limit and X-RateLimit-Remaining on every answer. If the shared
// state cannot be reached, it answers 503 Service Unavailable: it fails
// closed, rather than lift the limit when the state is down.
func (l *Limiter) Handler(key func(*http.Request) string, next http.Handler) http.Handler {
	limit := strconv.Itoa(l.limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := l.Allow(r.Context(), key(r))
		if err != nil {
			http.Error(w, "rate limiter unavailable", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("X-RateLimit-Limit", limit)
		h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
		if !res.Allowed {
			// Whole seconds, rounded up: waiting less would be refused again.
			h.Set("Retry-After", strconv.FormatInt(int64((res.RetryAfter+time.Second-1)/time.Second), 10))
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}
