package sharedstate

import (
	"context"
	"fmt"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// Buckets are token buckets shared by every process of a State, one per
// key: each holds up to a capacity of tokens, starts full, and gains one
// token every interval. Take takes tokens if the bucket holds enough.
//
// The owner keeps each bucket as a single time in the map called name (the
// generic cell rate algorithm: the time at which the bucket will be full
// again), and decides each Take in one step: exact across every worker,
// one round trip, and on the owner's clock whatever the callers' clocks
// say. A full bucket takes no room: its entry has expired. Package
// ratelimit builds its token bucket limiter on Buckets.
type Buckets struct {
	m        *Map[int64]
	capacity int
	interval time.Duration
}

// Buckets returns the token buckets kept in the map called name, of the
// given capacity, gaining a token every interval.
func (s *State) Buckets(name string, capacity int, interval time.Duration) *Buckets {
	return &Buckets{m: NewMap[int64](s, name), capacity: capacity, interval: interval}
}

// Taken is the outcome of a Take.
type Taken struct {
	OK         bool          // the tokens were taken
	Remaining  int           // tokens left in the bucket
	RetryAfter time.Duration // if not OK, how long until there are enough
	FullAfter  time.Duration // how long until the bucket is full again
}

// Take takes n tokens from the bucket for key, if it holds that many, and
// reports what is left. A capacity or interval that is not positive, or n
// larger than the capacity, is ErrInvalidArgument.
func (b *Buckets) Take(ctx context.Context, key string, n int) (Taken, error) {
	if b.capacity < 1 || b.interval <= 0 || n < 1 || n > b.capacity {
		return Taken{}, fmt.Errorf("%w: buckets %q: take %d of a capacity of %d, every %v", ErrInvalidArgument, b.m.name, n, b.capacity, b.interval)
	}
	resp, err := b.m.do(ctx, transport.Request{Op: transport.OpTake, Key: key,
		Int: int64(b.interval), OldInt: int64(b.capacity) * int64(b.interval), Limit: uint64(n)})
	if err != nil {
		return Taken{}, err
	}
	missing := int((resp.TTL + b.interval - 1) / b.interval) // tokens short of full, rounded up
	t := Taken{OK: resp.Found, Remaining: max(b.capacity-missing, 0), FullAfter: resp.TTL}
	if !t.OK {
		t.RetryAfter = time.Duration(resp.Int)
	}
	return t, nil
}
