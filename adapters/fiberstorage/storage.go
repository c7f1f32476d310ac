// Package fiberstorage implements Fiber's fiber.Storage on a sharedstate
// Map, so that Fiber's limiter, session, cache, CSRF and idempotency
// middleware share their state between the worker processes of one app:
// the children of Fiber's Prefork mode, or N copies of a binary on one
// SO_REUSEPORT port.
//
// Every worker opens the state and hands the storage to the middleware:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//	if err != nil { ... }
//	defer st.Close()
//	app.Use(limiter.New(limiter.Config{
//		Max:     100,
//		Storage: fiberstorage.New(st, "limiter"),
//	}))
//
// Entries are stored in the Map called name, with Fiber's expiration as the
// entry's TTL. The Storage holds no lock of its own: each call is one
// operation on the shared map, so a slow call delays only its own request.
//
// # Atomicity
//
// Each call is atomic, but fiber.Storage has no read-modify-write, so a
// middleware that reads an entry and writes it back (the limiter does, to
// count hits) may lose an update when two workers do so for the same key at
// the same instant. Fiber's limiter serialises that within one process; across
// processes a burst can let a few requests more than Max through. Storage
// also offers Increment, the optional counting capability proposed for
// Fiber's limiter (gofiber/fiber#4358), which counts at the owner in one
// step; until the limiter uses it, a limit that must hold exactly is best
// kept with the ratelimit package of the sharedstate module.
package fiberstorage

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v3"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/timeout"
)

var _ fiber.Storage = (*Storage)(nil)

// DefaultTimeout is the Timeout that New sets.
const DefaultTimeout = 10 * time.Second

// Storage is a fiber.Storage kept in a sharedstate Map. It is safe for
// concurrent use.
type Storage struct {
	m      *sharedstate.Map[[]byte]
	counts *sharedstate.Map[int64] // Increment's, apart from the bytes

	// Timeout bounds each call of the methods without a context (Get,
	// Set, Delete and Reset): while no process owns the state, a call
	// waits for a new owner only this long before it fails with
	// sharedstate.ErrUnavailable. Zero means no bound. Set it before
	// first use.
	Timeout time.Duration
}

// New returns a Storage kept in the map called name of st. Storages with the
// same name, in any process of st, see the same entries. Use one name per
// middleware, so that Reset of one does not clear another's entries.
func New(st *sharedstate.State, name string) *Storage {
	return &Storage{m: sharedstate.NewMap[[]byte](st, name), counts: sharedstate.NewMap[int64](st, name+"/counts"), Timeout: DefaultTimeout}
}

// Increment adds n to the count for key and returns the new count, in one
// step at the state's owner: exact across workers, however many count at
// once. A missing count starts at 0 and expires after ttl (never if ttl is
// 0 or less); an existing one keeps its expiry, so that a window's count
// ends with the window. Counts live apart from the values of Set and Get.
func (s *Storage) Increment(ctx context.Context, key string, n int64, ttl time.Duration) (int64, error) {
	if ttl > 0 {
		return s.counts.Add(ctx, key, n, sharedstate.WithTTL(ttl))
	}
	return s.counts.Add(ctx, key, n)
}

// GetWithContext returns the value stored for key, or nil and no error if
// there is none or it has expired.
func (s *Storage) GetWithContext(ctx context.Context, key string) ([]byte, error) {
	if key == "" {
		return nil, nil
	}
	v, _, err := s.m.Load(ctx, key)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Get is GetWithContext with a context that ends after s.Timeout.
func (s *Storage) Get(key string) ([]byte, error) {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.GetWithContext(ctx, key)
}

// SetWithContext stores val for key, to expire after exp, or never if exp
// is 0 or less. As fiber.Storage specifies, an empty key or value is
// ignored.
func (s *Storage) SetWithContext(ctx context.Context, key string, val []byte, exp time.Duration) error {
	if key == "" || len(val) == 0 {
		return nil
	}
	if exp > 0 {
		return s.m.Store(ctx, key, val, sharedstate.WithTTL(exp))
	}
	return s.m.Store(ctx, key, val)
}

// Set is SetWithContext with a context that ends after s.Timeout.
func (s *Storage) Set(key string, val []byte, exp time.Duration) error {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.SetWithContext(ctx, key, val, exp)
}

// DeleteWithContext deletes the value for key, if any.
func (s *Storage) DeleteWithContext(ctx context.Context, key string) error {
	if key == "" {
		return nil
	}
	return s.m.Delete(ctx, key)
}

// Delete is DeleteWithContext with a context that ends after s.Timeout.
func (s *Storage) Delete(key string) error {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.DeleteWithContext(ctx, key)
}

// ResetWithContext deletes every entry of the storage, and every count, in
// every process.
func (s *Storage) ResetWithContext(ctx context.Context) error {
	if err := s.m.Clear(ctx); err != nil {
		return err
	}
	return s.counts.Clear(ctx)
}

// Reset is ResetWithContext with a context that ends after s.Timeout.
func (s *Storage) Reset() error {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.ResetWithContext(ctx)
}

// Close does nothing: the State belongs to the caller, who may share it
// with other storages, and closes it when the process no longer needs it.
func (s *Storage) Close() error { return nil }
