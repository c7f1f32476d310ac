// Package limiterstore implements ulule/limiter's limiter.Store on a
// sharedstate Map, so that a limiter.Limiter counts across every worker
// process of an app on one host, as the Redis store does across hosts:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//	if err != nil { ... }
//	lim := limiter.New(limiterstore.New(st, "limits"), limiter.Rate{Period: time.Minute, Limit: 100})
//
// Each Increment is one Map.Add at the state's owner, the way the Redis store
// runs INCRBY: the count of a key starts with the rate's period as its TTL,
// which later increments keep, so each period's count ends with it. Counts
// are exact across workers, however many count at once.
package limiterstore

import (
	"context"
	"time"

	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/common"

	"github.com/sharedstate/sharedstate"
)

var _ limiter.Store = (*Store)(nil)

// Store is a limiter.Store kept in a sharedstate Map. It is safe for
// concurrent use.
type Store struct {
	m *sharedstate.Map[int64]
}

// New returns a Store kept in the map called name of st. Stores of the same
// name, in any process of st, share their counts.
func New(st *sharedstate.State, name string) *Store {
	return &Store{m: sharedstate.NewMap[int64](st, name)}
}

// Get increments the count of key by one and returns the limit's context.
func (s *Store) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return s.Increment(ctx, key, 1, rate)
}

// Increment increments the count of key by count and returns the limit's
// context.
func (s *Store) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	n, ttl, err := s.m.AddTTL(ctx, key, count, sharedstate.WithTTL(rate.Period))
	if err != nil {
		return limiter.Context{}, err
	}
	return state(rate, n, ttl), nil
}

// Peek returns the limit's context for key without counting.
func (s *Store) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	n, ttl, _, err := s.m.LoadTTL(ctx, key)
	if err != nil {
		return limiter.Context{}, err
	}
	return state(rate, n, ttl), nil
}

// Reset deletes the count of key and returns the limit's context.
func (s *Store) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	if err := s.m.Delete(ctx, key); err != nil {
		return limiter.Context{}, err
	}
	return state(rate, 0, 0), nil
}

// state is the limiter's context for a count with ttl left (0 for a count
// that has not started: it would end a period from now).
func state(rate limiter.Rate, count int64, ttl time.Duration) limiter.Context {
	now := time.Now()
	if ttl <= 0 {
		ttl = rate.Period
	}
	return common.GetContextFromState(now, rate, now.Add(ttl), count)
}
