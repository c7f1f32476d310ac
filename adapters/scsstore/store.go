// Package scsstore implements the session stores of alexedwards/scs (v2) on
// a sharedstate Map, so that a SessionManager's sessions are shared by every
// worker process of an app on one host:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//	if err != nil { ... }
//	sessionManager := scs.New()
//	sessionManager.Store = scsstore.New(st, "sessions")
//
// A Store is an scs.Store, scs.CtxStore, scs.IterableStore and
// scs.IterableCtxStore. scs calls the methods that take a context with the
// request's context, so a request whose client went away stops waiting for
// the state; the others are bounded by Store.Timeout.
//
// Each session is one entry of the Map called name, holding scs's encoded
// session data, with the session's expiry as the entry's TTL: the owner
// removes expired sessions itself, so no cleanup goroutine runs in any
// worker. Each call is one operation at the state's owner.
//
// The package needs nothing of scs to build: a Store satisfies scs's
// interfaces by their methods alone.
package scsstore

import (
	"context"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/timeout"
)

// DefaultTimeout is the Timeout that New sets.
const DefaultTimeout = 10 * time.Second

// Store is an scs session store kept in a sharedstate Map. It is safe for
// concurrent use.
type Store struct {
	m *sharedstate.Map[[]byte]

	// Timeout bounds each call of the methods without a context (Find,
	// Commit, Delete and All): while no process owns the state, a call
	// waits for a new owner only this long before it fails with
	// sharedstate.ErrUnavailable. Zero means no bound. Set it before first
	// use.
	Timeout time.Duration
}

// New returns a Store kept in the map called name of st. Stores of the same
// name, in any process of st, see the same sessions.
func New(st *sharedstate.State, name string) *Store {
	return &Store{m: sharedstate.NewMap[[]byte](st, name), Timeout: DefaultTimeout}
}

// FindCtx returns the data of the session token, and whether it exists and
// has not expired.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	return s.m.Load(ctx, token)
}

// CommitCtx stores the data of the session token, to expire at expiry,
// replacing the data and expiry it had. A session committed with an expiry
// already past is deleted.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return s.m.Delete(ctx, token)
	}
	return s.m.Store(ctx, token, b, sharedstate.WithTTL(ttl))
}

// DeleteCtx deletes the session token, if it exists.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	return s.m.Delete(ctx, token)
}

// AllCtx returns the data of every session that has not expired, by token.
func (s *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	all := make(map[string][]byte)
	err := s.m.Range(ctx, func(token string, b []byte) bool {
		all[token] = b
		return true
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}

// Find is FindCtx with a context that ends after s.Timeout.
func (s *Store) Find(token string) ([]byte, bool, error) {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.FindCtx(ctx, token)
}

// Commit is CommitCtx with a context that ends after s.Timeout.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.CommitCtx(ctx, token, b, expiry)
}

// Delete is DeleteCtx with a context that ends after s.Timeout.
func (s *Store) Delete(token string) error {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.DeleteCtx(ctx, token)
}

// All is AllCtx with a context that ends after s.Timeout.
func (s *Store) All() (map[string][]byte, error) {
	ctx, cancel := timeout.Context(s.Timeout)
	defer cancel()
	return s.AllCtx(ctx)
}
