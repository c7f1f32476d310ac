package sharedstatetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// testMapBound writes ten times a bounded map's bound of distinct keys: the
// map ends at its bound, by entries and by bytes, and keeps what was just
// written; a bound that is not positive is refused on every call.
func testMapBound(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[string](st, "bounded", sharedstate.WithMaxEntries(50))
	for i := range 500 {
		check(t, m.Store(ctx, fmt.Sprintf("k%03d", i), "v"))
	}
	expect(t, "Len after 500 writes, bound 50", 50)(m.Len(ctx))
	for i := 490; i < 500; i++ {
		if _, ok, err := m.Load(ctx, fmt.Sprintf("k%03d", i)); err != nil || !ok {
			t.Errorf("k%03d, one of the last 10 written, is gone (%v)", i, err)
		}
	}

	// Values of 100 bytes (a 98-byte string and its msgpack header) and
	// 4-byte keys: 40 of them in 4,160 bytes.
	b := sharedstate.NewMap[string](st, "bytes", sharedstate.WithMaxBytes(4160))
	value := string(make([]byte, 98))
	for i := range 400 {
		check(t, b.Store(ctx, fmt.Sprintf("k%03d", i), value))
	}
	expect(t, "Len after 400 writes of 104 bytes, bound 4160 bytes", 40)(b.Len(ctx))

	for _, opt := range []sharedstate.MapOption{sharedstate.WithMaxEntries(0), sharedstate.WithMaxBytes(-1)} {
		bad := sharedstate.NewMap[string](st, "bad", opt)
		if err := bad.Store(ctx, "k", "v"); !errors.Is(err, sharedstate.ErrInvalidArgument) {
			t.Errorf("Store with a bound that is not positive: %v, want ErrInvalidArgument", err)
		}
	}
}

// testLoadOrCompute: a cold key asked for by many goroutines at once is
// computed once and every caller gets its value; a computation that fails
// leaves the next caller to compute; a waiter whose context ends returns.
func testLoadOrCompute(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[string](st, "computed")
	var runs atomic.Int64
	release := make(chan struct{})
	compute := func(context.Context) (string, error) {
		runs.Add(1)
		<-release // every caller asks while the computation runs
		return "value", nil
	}
	const callers = 50
	var wg sync.WaitGroup
	var loaded atomic.Int64
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, ok, err := m.LoadOrCompute(ctx, "cold", compute, sharedstate.WithTTL(time.Hour))
			if err == nil && v != "value" {
				err = fmt.Errorf("got %q", v)
			}
			if ok {
				loaded.Add(1)
			}
			errs <- err
		}()
	}
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the other callers wait by now, or soon will
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		check(t, err)
	}
	equal(t, "computations of one cold key by 50 callers", runs.Load(), 1)
	equal(t, "callers that got the value computed by another", loaded.Load(), callers-1)
	if _, ttl, ok, err := m.LoadTTL(ctx, "cold"); err != nil || !ok || ttl <= 0 || ttl > time.Hour {
		t.Errorf("the value computed: found %v, TTL %v, %v; want it stored with its TTL", ok, ttl, err)
	}

	// A computation that fails: its caller gets the error, a waiter
	// computes in its place.
	failing, started, failed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, _, err := m.LoadOrCompute(ctx, "flaky", func(context.Context) (string, error) {
			close(started)
			<-failing
			return "", errors.New("upstream down")
		})
		failed <- err
	}()
	<-started
	waiter := make(chan string, 1)
	go func() {
		v, _, err := m.LoadOrCompute(ctx, "flaky", func(context.Context) (string, error) { return "second", nil })
		if err != nil {
			t.Errorf("the waiter: %v", err)
		}
		waiter <- v
	}()
	time.Sleep(20 * time.Millisecond) // the waiter waits
	close(failing)
	select {
	case v := <-waiter:
		equal(t, "the value the waiter computed once the first failed", v, "second")
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not compute after the first computation failed")
	}
	if err := <-failed; err == nil || err.Error() != "upstream down" {
		t.Errorf("the failed computation's caller: %v, want its error", err)
	}

	// A waiter whose context ends returns its error while the computation
	// goes on.
	hold, holding := make(chan struct{}), make(chan struct{})
	go m.LoadOrCompute(ctx, "slow", func(context.Context) (string, error) {
		close(holding)
		<-hold
		return "slow", nil
	})
	<-holding
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, _, err := m.LoadOrCompute(short, "slow", func(context.Context) (string, error) { return "again", nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a waiter whose context ended: %v, want context.DeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("a waiter returned %v after its context's end", waited)
	}
	close(hold)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if v, ok, err := m.Load(ctx, "slow"); err == nil && ok {
			equal(t, "the slow computation's value", v, "slow")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow computation's value never came")
		}
	}
}

// testStaleWhileRevalidate: an entry past WithStaleAfter is served at once
// while one caller computes the next value in the background, which then
// replaces it; a bad pairing of options is refused.
func testStaleWhileRevalidate(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[int](st, "stale")
	var runs atomic.Int64
	refreshing := make(chan struct{})
	compute := func(context.Context) (int, error) {
		n := runs.Add(1)
		if n == 2 {
			<-refreshing // the refresh runs while stale reads go on
		}
		return int(n), nil
	}
	opts := []sharedstate.WriteOption{sharedstate.WithTTL(time.Hour), sharedstate.WithStaleAfter(100 * time.Millisecond)}
	expect(t, "the first LoadOrCompute", 1)(func() (int, error) {
		v, _, err := m.LoadOrCompute(ctx, "k", compute, opts...)
		return v, err
	}())
	time.Sleep(150 * time.Millisecond) // stale now
	for range 20 {
		v, loaded, err := m.LoadOrCompute(ctx, "k", compute, opts...)
		if err != nil || !loaded || v != 1 {
			t.Fatalf("a stale read: %d, loaded %v, %v; want the stale value at once", v, loaded, err)
		}
	}
	close(refreshing)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		v, _, err := m.Load(ctx, "k")
		check(t, err)
		if v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refreshed value never came: %d", v)
		}
	}
	equal(t, "computations: the first and one refresh", runs.Load(), 2)
	if _, _, err := m.LoadOrCompute(ctx, "k", compute, sharedstate.WithStaleAfter(time.Minute)); !errors.Is(err, sharedstate.ErrInvalidArgument) {
		t.Errorf("WithStaleAfter without a longer TTL: %v, want ErrInvalidArgument", err)
	}
}
