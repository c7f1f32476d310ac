// Package ratelimit limits how often each client may do something, counting
// across every worker process of an app with sharedstate, so that a limit of
// 100 requests a minute means 100, not 100 per worker.
//
// A Limiter counts events per key (a client's address, a user, an API
// token) in one of three ways:
//
//   - FixedWindow counts the events of each window of time (12:00:00 to
//     12:01:00, then 12:01:00 to 12:02:00...): one Map.Add at the owner per
//     event, and one small entry per key that expires with its window. A
//     client may send up to twice the limit across a boundary.
//   - SlidingWindow keeps the time of each event allowed in the last window,
//     so that no window, wherever it starts, holds more than the limit: a
//     Map.Update per event, which the Updates of a key in one process share
//     (one round trip per batch). Its entry grows with the limit: use it for
//     limits up to a few hundred.
//   - TokenBucket, as golang.org/x/time/rate: a bucket of tokens per key that
//     refills at a steady rate, allowing bursts up to its size; one
//     sharedstate.Buckets.Take per event, decided at the owner on the
//     owner's clock.
//
// All three are exact across workers: two of them can never both take the
// last place. Entries carry TTLs, so that keys of clients that have gone do
// not accumulate.
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
	"math"
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
	window time.Duration // how long a spent allowance takes to come back
	allow  func(l *Limiter, ctx context.Context, key string) (Result, error)
	counts *sharedstate.Map[int64]   // FixedWindow: events per key and window
	times  *sharedstate.Map[[]int64] // SlidingWindow: times of the events, in Unix nanoseconds
	tokens *sharedstate.Buckets      // TokenBucket
	now    func() time.Time          // the clock of the windows; tests replace it
}

// FixedWindow returns a Limiter that allows limit events per key in each
// window of the given length, counted in the map called name of st.
// It panics if limit < 1 or window <= 0.
func FixedWindow(st *sharedstate.State, name string, limit int, window time.Duration) *Limiter {
	checkArgs(limit, window)
	return &Limiter{limit: limit, window: window, allow: (*Limiter).allowFixed, counts: sharedstate.NewMap[int64](st, name), now: time.Now}
}

// SlidingWindow returns a Limiter that allows limit events per key in any
// interval of the given length, keeping their times in the map called name
// of st. It panics if limit < 1 or window <= 0.
func SlidingWindow(st *sharedstate.State, name string, limit int, window time.Duration) *Limiter {
	checkArgs(limit, window)
	return &Limiter{limit: limit, window: window, allow: (*Limiter).allowSliding, times: sharedstate.NewMap[[]int64](st, name), now: time.Now}
}

// TokenBucket returns a Limiter that allows events at rate r per second on
// average, in bursts of up to b, as golang.org/x/time/rate.NewLimiter(r, b)
// does in one process: each key has a bucket of b tokens, full at first,
// that gains one every 1/r seconds, and an event takes a token. The buckets
// are kept in the map called name of st. It panics if r is not positive
// and finite, or b < 1.
func TokenBucket(st *sharedstate.State, name string, r float64, b int) *Limiter {
	if !(r > 0) || math.IsInf(r, 1) {
		panic(fmt.Sprintf("ratelimit: rate %v: it must be positive and finite", r))
	}
	every := time.Duration(float64(time.Second) / r)
	checkArgs(b, every)
	return &Limiter{limit: b, window: every, allow: (*Limiter).allowToken, tokens: st.Buckets(name, b, every), now: time.Now}
}

func checkArgs(limit int, window time.Duration) {
	if limit < 1 || window <= 0 {
		panic(fmt.Sprintf("ratelimit: limit %d and window %v: both must be positive", limit, window))
	}
}

// Limit returns the number of events allowed per window, or the size of a
// token bucket.
func (l *Limiter) Limit() int { return l.limit }

// A Result is the decision on one event.
type Result struct {
	Allowed   bool
	Remaining int // events still allowed now
	// RetryAfter is, if the event was refused, how long until one
	// would be allowed; else 0.
	RetryAfter time.Duration
	// Reset is how long until the whole limit is available again: the
	// window's end, or the bucket full.
	Reset time.Duration
}

// errLimited makes Update store nothing when an event is refused.
var errLimited = errors.New("limited")

// Allow records an event for key if the limit allows it, and reports
// whether it did.
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	return l.allow(l, ctx, key)
}

func (l *Limiter) allowFixed(ctx context.Context, key string) (Result, error) {
	now := l.now()
	w := int64(l.window)
	i := now.UnixNano() / w
	left := time.Duration((i+1)*w - now.UnixNano()) // until the window ends
	// The entry dies with its window; the next window has its own key. A
	// refused event counts too: it changes nothing but the count.
	n, err := l.counts.Add(ctx, key+"@"+strconv.FormatInt(i, 10), 1, sharedstate.WithTTL(left))
	switch {
	case err != nil:
		return Result{}, err
	case n > int64(l.limit):
		return Result{RetryAfter: left, Reset: left}, nil
	}
	return Result{Allowed: true, Remaining: l.limit - int(n), Reset: left}, nil
}

func (l *Limiter) allowSliding(ctx context.Context, key string) (Result, error) {
	var res Result
	_, err := l.times.Update(ctx, key, func(times []int64, _ bool) ([]int64, error) {
		// Read the clock here, not before Update: if Update retries,
		// the event happens when it is finally recorded.
		now := l.now().UnixNano()
		times = times[firstAfter(times, now-int64(l.window)):]
		if len(times) >= l.limit {
			wait := time.Duration(times[len(times)-l.limit] + int64(l.window) - now)
			res = Result{RetryAfter: wait, Reset: time.Duration(times[len(times)-1] + int64(l.window) - now)}
			return nil, errLimited
		}
		// Insert in order: the clocks of two processes read at nearly
		// the same moment may be recorded in either order.
		i, _ := slices.BinarySearch(times, now)
		times = slices.Insert(times, i, now)
		res = Result{Allowed: true, Remaining: l.limit - len(times), Reset: time.Duration(times[len(times)-1] + int64(l.window) - now)}
		return times, nil
	}, sharedstate.WithTTL(l.window)) // every time it holds is stale by then
	if err != nil && !errors.Is(err, errLimited) {
		return Result{}, err
	}
	return res, nil
}

func (l *Limiter) allowToken(ctx context.Context, key string) (Result, error) {
	t, err := l.tokens.Take(ctx, key, 1)
	if err != nil {
		return Result{}, err
	}
	return Result{Allowed: t.OK, Remaining: t.Remaining, RetryAfter: t.RetryAfter, Reset: t.FullAfter}, nil
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
// Requests, with a Retry-After header giving the seconds to wait. Every
// answer carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset
// (seconds until the whole limit is back), the fields of the IETF's
// RateLimit header draft. If the shared state cannot be reached, it answers
// 503 Service Unavailable: it fails closed, rather than lift the limit when
// the state is down.
func (l *Limiter) Handler(key func(*http.Request) string, next http.Handler) http.Handler {
	limit := strconv.Itoa(l.limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := l.Allow(r.Context(), key(r))
		if err != nil {
			http.Error(w, "rate limiter unavailable", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("RateLimit-Limit", limit)
		h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("RateLimit-Reset", seconds(res.Reset))
		if !res.Allowed {
			h.Set("Retry-After", seconds(res.RetryAfter))
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// seconds is d in whole seconds, rounded up: waiting less would be refused
// again.
func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
