// Package sharedstatetest checks that a sharedstate.State behaves as the
// package documents, whatever serves it: the owner's own process, a proxy
// connected to it, or another engine. It plays the part testing/fstest.TestFS
// plays for file systems.
//
// For adapters, which plug a State into another library, RunUpstream runs
// that library's own tests against the adapter, through a proxy.
package sharedstatetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// Run runs the conformance suite as subtests of t. newState returns a State
// to test, on which Run may create any counter, map or lock; Run closes it.
// States from separate calls must be independent.
func Run(t *testing.T, newState func(t *testing.T) *sharedstate.State) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st *sharedstate.State)
	}{
		{"Counter", testCounter},
		{"MapBasics", testMapBasics},
		{"MapConditional", testMapConditional},
		{"MapUpdate", testMapUpdate},
		{"MapRange", testMapRange},
		{"MapTTL", testMapTTL},
		{"MapAdd", testMapAdd},
		{"MapKeepTTL", testMapKeepTTL},
		{"MapHotKey", testMapHotKey},
		{"Buckets", testBuckets},
		{"MapValues", testMapValues},
		{"MapBound", testMapBound},
		{"LoadOrCompute", testLoadOrCompute},
		{"StaleWhileRevalidate", testStaleWhileRevalidate},
		{"Mutex", testMutex},
		{"MutexWait", testMutexWait},
		{"MutexWrap", testMutexWrap},
		{"PubSub", testPubSub},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newState(t)
			defer st.Close()
			tt.fn(t, st)
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// expect returns a function that checks the results of a call:
// expect(t, "Load", int64(1))(c.Load(ctx)).
func expect[T comparable](t *testing.T, what string, want T) func(T, error) {
	return func(got T, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		equal(t, what, got, want)
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func testCounter(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	c := st.Counter("conformance.counter")
	expect(t, "Load of a new counter", int64(0))(c.Load(ctx))
	expect(t, "Add(5)", int64(5))(c.Add(ctx, 5))
	expect(t, "Add(-2)", int64(3))(c.Add(ctx, -2))
	check(t, c.Store(ctx, 40))
	expect(t, "Load after Store(40)", int64(40))(c.Load(ctx))
	expect(t, "Swap(41)", int64(40))(c.Swap(ctx, 41))
	expect(t, "CompareAndSwap(0, 1)", false)(c.CompareAndSwap(ctx, 0, 1))
	expect(t, "CompareAndSwap(41, 42)", true)(c.CompareAndSwap(ctx, 41, 42))
	expect(t, "Load", int64(42))(c.Load(ctx))
	expect(t, "another counter", int64(0))(st.Counter("conformance.other").Load(ctx))

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := c.Add(ctx, 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	expect(t, "after 800 concurrent Add(1)", int64(842))(c.Load(ctx))

	expect(t, "Delete", true)(c.Delete(ctx))
	expect(t, "Load after Delete", int64(0))(c.Load(ctx))
	expect(t, "Delete of a deleted counter", false)(c.Delete(ctx))
	expect(t, "Add after Delete", int64(1))(c.Add(ctx, 1))
	expect(t, "Delete of a counter never used", false)(st.Counter("conformance.never").Delete(ctx))
}

func testMapBasics(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[string](st, "conformance.basics")
	_, ok, err := m.Load(ctx, "k")
	check(t, err)
	equal(t, "Load of a missing key: ok", ok, false)
	check(t, m.Store(ctx, "k", "v1"))
	v, ok, err := m.Load(ctx, "k")
	check(t, err)
	equal(t, "Load: ok", ok, true)
	equal(t, "Load", v, "v1")
	expect(t, "Len", 1)(m.Len(ctx))

	actual, loaded, err := m.LoadOrStore(ctx, "k", "other")
	check(t, err)
	equal(t, "LoadOrStore existing: loaded", loaded, true)
	equal(t, "LoadOrStore existing", actual, "v1")
	actual, loaded, err = m.LoadOrStore(ctx, "k2", "v2")
	check(t, err)
	equal(t, "LoadOrStore new: loaded", loaded, false)
	equal(t, "LoadOrStore new", actual, "v2")

	prev, loaded, err := m.Swap(ctx, "k", "v3")
	check(t, err)
	equal(t, "Swap: loaded", loaded, true)
	equal(t, "Swap: previous", prev, "v1")
	_, loaded, err = m.Swap(ctx, "k3", "x")
	check(t, err)
	equal(t, "Swap of a missing key: loaded", loaded, false)

	v, loaded, err = m.LoadAndDelete(ctx, "k")
	check(t, err)
	equal(t, "LoadAndDelete: loaded", loaded, true)
	equal(t, "LoadAndDelete", v, "v3")
	_, loaded, err = m.LoadAndDelete(ctx, "k")
	check(t, err)
	equal(t, "LoadAndDelete again: loaded", loaded, false)

	check(t, m.Delete(ctx, "k2"))
	check(t, m.Delete(ctx, "never-there"))
	expect(t, "Len", 1)(m.Len(ctx))
	check(t, m.Clear(ctx))
	expect(t, "Len after Clear", 0)(m.Len(ctx))

	other := sharedstate.NewMap[string](st, "conformance.basics2")
	check(t, other.Store(ctx, "k", "elsewhere"))
	expect(t, "Len of another map", 0)(m.Len(ctx))
	check(t, m.Store(ctx, "", "empty key"))
	v, _, err = m.Load(ctx, "")
	check(t, err)
	equal(t, "empty key", v, "empty key")
}

func testMapConditional(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[int](st, "conformance.cond")
	expect(t, "CompareAndSwap on a missing key", false)(m.CompareAndSwap(ctx, "k", 0, 1))
	check(t, m.Store(ctx, "k", 1))
	expect(t, "CompareAndSwap(2, 3) on 1", false)(m.CompareAndSwap(ctx, "k", 2, 3))
	expect(t, "CompareAndSwap(1, 3) on 1", true)(m.CompareAndSwap(ctx, "k", 1, 3))
	v, _, err := m.Load(ctx, "k")
	check(t, err)
	equal(t, "value after CompareAndSwap", v, 3)
	expect(t, "CompareAndDelete(1) on 3", false)(m.CompareAndDelete(ctx, "k", 1))
	expect(t, "CompareAndDelete(3) on 3", true)(m.CompareAndDelete(ctx, "k", 3))
	_, ok, err := m.Load(ctx, "k")
	check(t, err)
	equal(t, "present after CompareAndDelete", ok, false)
}

func testMapUpdate(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[[]string](st, "conformance.update")
	v, err := m.Update(ctx, "list", func(old []string, ok bool) ([]string, error) {
		if ok {
			t.Errorf("Update of a missing key: ok = true, old = %v", old)
		}
		return append(old, "a"), nil
	})
	check(t, err)
	equal(t, "Update result", fmt.Sprint(v), "[a]")
	v, err = m.Update(ctx, "list", func(old []string, ok bool) ([]string, error) {
		if !ok {
			t.Error("Update of an existing key: ok = false")
		}
		return append(old, "b"), nil
	})
	check(t, err)
	equal(t, "Update result", fmt.Sprint(v), "[a b]")

	errStop := errors.New("stop")
	_, err = m.Update(ctx, "list", func([]string, bool) ([]string, error) { return nil, errStop })
	if !errors.Is(err, errStop) {
		t.Errorf("Update with a failing fn: err = %v, want %v", err, errStop)
	}
	stored, _, err := m.Load(ctx, "list")
	check(t, err)
	equal(t, "value after a failed Update", fmt.Sprint(stored), "[a b]")

	// Concurrent Updates of one key: none lost.
	n := sharedstate.NewMap[int](st, "conformance.update.n")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := n.Update(ctx, "n", func(old int, _ bool) (int, error) { return old + 1, nil }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, _, err := n.Load(ctx, "n")
	check(t, err)
	equal(t, "after 400 concurrent Updates", got, 400)
}

func testMapRange(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[int](st, "conformance.range")
	const n = 2500 // more than one page
	for i := range n {
		check(t, m.Store(ctx, fmt.Sprintf("key%05d", i), i))
	}
	count, prev := 0, ""
	check(t, m.Range(ctx, func(k string, v int) bool {
		if k <= prev {
			t.Fatalf("Range: key %q after %q", k, prev)
		}
		if want := fmt.Sprintf("key%05d", v); k != want {
			t.Fatalf("Range: %q = %d", k, v)
		}
		prev = k
		count++
		return true
	}))
	equal(t, "entries seen by Range", count, n)
	count = 0
	check(t, m.Range(ctx, func(string, int) bool { count++; return count < 10 }))
	equal(t, "entries seen by a Range stopped at 10", count, 10)
	check(t, sharedstate.NewMap[int](st, "conformance.empty").Range(ctx, func(string, int) bool {
		t.Error("Range of an empty map called fn")
		return true
	}))
	// The empty string is a key like any other, and the first in order.
	edge := sharedstate.NewMap[int](st, "conformance.emptykey")
	check(t, edge.Store(ctx, "", 1))
	check(t, edge.Store(ctx, "a", 2))
	var keys []string
	check(t, edge.Range(ctx, func(k string, _ int) bool { keys = append(keys, k); return true }))
	equal(t, "keys seen by Range", fmt.Sprint(keys), fmt.Sprint([]string{"", "a"}))
}

func testMapTTL(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[string](st, "conformance.ttl")
	check(t, m.Store(ctx, "short", "x", sharedstate.WithTTL(50*time.Millisecond)))
	check(t, m.Store(ctx, "long", "x", sharedstate.WithTTL(time.Hour)))
	check(t, m.Store(ctx, "cleared", "x", sharedstate.WithTTL(50*time.Millisecond)))
	check(t, m.Store(ctx, "cleared", "y")) // a write without a TTL removes it
	_, ok, err := m.Load(ctx, "short")
	check(t, err)
	equal(t, "short-lived entry present at first", ok, true)
	time.Sleep(150 * time.Millisecond)
	_, ok, err = m.Load(ctx, "short")
	check(t, err)
	equal(t, "expired entry present", ok, false)
	expect(t, "Len after expiry", 2)(m.Len(ctx))
	_, loaded, err := m.LoadOrStore(ctx, "short", "again", sharedstate.WithTTL(time.Hour))
	check(t, err)
	equal(t, "LoadOrStore over an expired entry: loaded", loaded, false)
}

// within checks that a TTL reported is positive and no more than max.
func within(t *testing.T, what string, ttl, max time.Duration) {
	t.Helper()
	if ttl <= 0 || ttl > max {
		t.Errorf("%s: TTL %v, want in (0, %v]", what, ttl, max)
	}
}

func testMapAdd(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[int64](st, "conformance.add")
	// A missing entry starts at 0 with the TTL given; an existing one keeps
	// its expiry, as INCRBY does.
	n, ttl, err := m.AddTTL(ctx, "hits", 5, sharedstate.WithTTL(time.Hour))
	check(t, err)
	equal(t, "AddTTL to a missing entry", n, int64(5))
	within(t, "a new entry's", ttl, time.Hour)
	n, ttl, err = m.AddTTL(ctx, "hits", -2, sharedstate.WithTTL(time.Millisecond))
	check(t, err)
	equal(t, "AddTTL to an existing entry", n, int64(3))
	within(t, "an existing entry's, with another WithTTL", ttl, time.Hour)
	if ttl < time.Minute {
		t.Errorf("an Add with WithTTL(1ms) changed an existing entry's expiry: %v left", ttl)
	}
	v, ttl, ok, err := m.LoadTTL(ctx, "hits")
	check(t, err)
	if !ok || v != 3 {
		t.Errorf("LoadTTL = %d, %v", v, ok)
	}
	within(t, "LoadTTL", ttl, time.Hour)
	expect(t, "Add without a TTL", int64(10))(m.Add(ctx, "forever", 10))
	if _, ttl, _, _ := m.LoadTTL(ctx, "forever"); ttl != 0 {
		t.Errorf("an entry Add made without a TTL has %v left", ttl)
	}
	// The sum is what a Map of any integer type reads, and what
	// CompareAndSwap compares against.
	swapped, err := m.CompareAndSwap(ctx, "forever", 10, 11)
	check(t, err)
	equal(t, "CompareAndSwap of an added value", swapped, true)
	expect(t, "Map[int] reads an added value", 11)(func() (int, error) {
		v, _, err := sharedstate.NewMap[int](st, "conformance.add").Load(ctx, "forever")
		return v, err
	}())
	// Exact at any size, in the encoding a Go integer gets.
	for _, v := range []int64{1<<53 + 1, -(1 << 53) - 1, 1 << 62, -1 << 62, math.MaxInt64 - 2, math.MinInt64 + 2,
		1<<32 - 1, 1 << 32, -1<<31 - 1, 127, 128, -32, -33, 255, 65535, 65536} {
		for _, d := range []int64{1, -1, 2, -2} {
			check(t, m.Store(ctx, "exact", v))
			expect(t, fmt.Sprintf("%d + %d", v, d), v+d)(m.Add(ctx, "exact", d))
			swapped, err := m.CompareAndSwap(ctx, "exact", v+d, 0)
			check(t, err)
			if !swapped {
				t.Errorf("%d + %d is not stored as the encoder writes %d", v, d, v+d)
			}
		}
	}
	// Expired: counts from 0 again.
	expect(t, "Add with a short TTL", int64(1))(m.Add(ctx, "short", 1, sharedstate.WithTTL(30*time.Millisecond)))
	time.Sleep(100 * time.Millisecond)
	expect(t, "Add after expiry", int64(1))(m.Add(ctx, "short", 1, sharedstate.WithTTL(time.Hour)))
	// Errors change nothing.
	check(t, sharedstate.NewMap[string](st, "conformance.add").Store(ctx, "text", "not a number"))
	if _, err := m.Add(ctx, "text", 1); !errors.Is(err, sharedstate.ErrWrongType) {
		t.Errorf("Add to an entry holding a string: %v; want ErrWrongType", err)
	}
	check(t, m.Store(ctx, "big", 1<<62))
	if _, err := m.Add(ctx, "big", 1<<62); !errors.Is(err, sharedstate.ErrInvalidArgument) {
		t.Errorf("Add past an int64: %v; want ErrInvalidArgument", err)
	}
	expect(t, "an entry after a refused Add", int64(1<<62))(func() (int64, error) {
		v, _, err := m.Load(ctx, "big")
		return v, err
	}())
	// Concurrent Adds: none lost.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := m.Add(ctx, "racy", 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	expect(t, "after 800 concurrent Adds", int64(800))(func() (int64, error) {
		v, _, err := m.Load(ctx, "racy")
		return v, err
	}())
}

func testMapKeepTTL(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[string](st, "conformance.keepttl")
	check(t, m.Store(ctx, "s", "v1", sharedstate.WithTTL(time.Hour)))
	check(t, m.Store(ctx, "s", "v2", sharedstate.WithKeepTTL()))
	_, ttl, _, err := m.LoadTTL(ctx, "s")
	check(t, err)
	within(t, "WithKeepTTL on an entry with a TTL", ttl, time.Hour)
	ttls := map[string]time.Duration{}
	check(t, m.RangeTTL(ctx, func(k string, _ string, ttl time.Duration) bool { ttls[k] = ttl; return true }))
	within(t, "RangeTTL of an entry with a TTL", ttls["s"], time.Hour)
	check(t, m.Store(ctx, "none", "v1"))
	check(t, m.Store(ctx, "none", "v2", sharedstate.WithKeepTTL(), sharedstate.WithTTL(time.Hour)))
	if _, ttl, _, _ := m.LoadTTL(ctx, "none"); ttl != 0 {
		t.Errorf("WithKeepTTL on an entry without one gave it %v", ttl)
	}
	check(t, m.Store(ctx, "new", "v", sharedstate.WithKeepTTL(), sharedstate.WithTTL(time.Hour)))
	_, ttl, _, err = m.LoadTTL(ctx, "new")
	check(t, err)
	within(t, "WithKeepTTL and WithTTL on a new entry", ttl, time.Hour)
	_, err = m.Update(ctx, "s", func(old string, _ bool) (string, error) { return old + "+", nil }, sharedstate.WithKeepTTL())
	check(t, err)
	v, ttl, _, err := m.LoadTTL(ctx, "s")
	check(t, err)
	equal(t, "value after Update", v, "v2+")
	within(t, "Update WithKeepTTL", ttl, time.Hour)
	if _, ttl, _, _ := m.LoadTTL(ctx, "missing"); ttl != 0 {
		t.Errorf("LoadTTL of a missing entry: %v", ttl)
	}
}

// testMapHotKey: many goroutines updating one key at once all get through,
// each seeing the value the one before left.
func testMapHotKey(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[int](st, "conformance.hot")
	const goroutines, each = 200, 20
	var wg sync.WaitGroup
	var seen sync.Map
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v, err := m.Update(ctx, "k", func(old int, _ bool) (int, error) { return old + 1, nil })
				if err != nil {
					t.Error(err)
					return
				}
				if _, dup := seen.LoadOrStore(v, true); dup {
					t.Errorf("two Updates returned %d", v)
				}
			}
		}()
	}
	wg.Wait()
	expect(t, "after the hot key's Updates", goroutines*each)(func() (int, error) {
		v, _, err := m.Load(ctx, "k")
		return v, err
	}())
}

func testBuckets(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	b := st.Buckets("conformance.buckets", 3, time.Hour)
	for i := range 3 {
		taken, err := b.Take(ctx, "k", 1)
		check(t, err)
		if !taken.OK || taken.Remaining != 2-i {
			t.Fatalf("Take %d of a full bucket of 3: %+v", i+1, taken)
		}
	}
	taken, err := b.Take(ctx, "k", 1)
	check(t, err)
	if taken.OK || taken.RetryAfter <= 0 || taken.RetryAfter > time.Hour || taken.Remaining != 0 {
		t.Errorf("Take of an empty bucket: %+v", taken)
	}
	fast := st.Buckets("conformance.buckets.fast", 2, 20*time.Millisecond)
	for range 2 {
		if taken, _ := fast.Take(ctx, "k", 1); !taken.OK {
			t.Fatal("a full bucket refused")
		}
	}
	time.Sleep(50 * time.Millisecond) // two tokens back
	if taken, err := fast.Take(ctx, "k", 2); err != nil || !taken.OK {
		t.Errorf("Take 2 after refilling: %+v, %v", taken, err)
	}
	if _, err := b.Take(ctx, "k", 4); !errors.Is(err, sharedstate.ErrInvalidArgument) {
		t.Errorf("Take of more than the capacity: %v; want ErrInvalidArgument", err)
	}
	check(t, sharedstate.NewMap[string](st, "conformance.buckets.text").Store(ctx, "k", "text"))
	if _, err := st.Buckets("conformance.buckets.text", 3, time.Hour).Take(ctx, "k", 1); !errors.Is(err, sharedstate.ErrWrongType) {
		t.Errorf("Take on an entry holding a string: %v; want ErrWrongType", err)
	}
}

type session struct {
	User  string
	Roles []string
	Attrs map[string]int
}

func testMapValues(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	m := sharedstate.NewMap[session](st, "conformance.values")
	s := session{User: "ada", Roles: []string{"admin"}, Attrs: map[string]int{"a": 1, "b": 2, "c": 3, "d": 4}}
	check(t, m.Store(ctx, "s", s))
	got, _, err := m.Load(ctx, "s")
	check(t, err)
	equal(t, "struct round trip", fmt.Sprint(got), fmt.Sprint(s))
	// Equal maps must encode alike whatever their iteration order.
	same := session{User: "ada", Roles: []string{"admin"}, Attrs: map[string]int{"d": 4, "c": 3, "b": 2, "a": 1}}
	expect(t, "CompareAndSwap with an equal struct", true)(m.CompareAndSwap(ctx, "s", same, session{User: "bob"}))

	ptrs := sharedstate.NewMap[*int](st, "conformance.pointers")
	check(t, ptrs.Store(ctx, "nil", nil))
	p, ok, err := ptrs.Load(ctx, "nil")
	check(t, err)
	if !ok || p != nil {
		t.Errorf("nil pointer round trip: %v, %v", p, ok)
	}
}

func testMutex(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	mu := st.Mutex("conformance.mutex")
	check(t, mu.Lock(ctx))
	first := mu.Token()
	if first == 0 {
		t.Error("fencing token 0")
	}
	expect(t, "Held while held", true)(mu.Held(ctx))
	other := st.Mutex("conformance.mutex")
	expect(t, "TryLock of a held lock", false)(other.TryLock(ctx))
	check(t, mu.Unlock(ctx))
	expect(t, "Held after Unlock", false)(mu.Held(ctx))
	if err := mu.Unlock(ctx); !errors.Is(err, sharedstate.ErrNotLocked) {
		t.Errorf("second Unlock: err = %v, want ErrNotLocked", err)
	}
	expect(t, "TryLock of a free lock", true)(other.TryLock(ctx))
	if other.Token() <= first {
		t.Errorf("token %d after %d: not increasing", other.Token(), first)
	}
	// An old token no longer validates, though the process holds the lock.
	expect(t, "Held with a superseded token", false)(mu.Held(ctx))
	check(t, other.Unlock(ctx))
	// A different name is a different lock.
	check(t, st.Mutex("conformance.mutex2").Lock(ctx))
	expect(t, "TryLock after a lock of another name", true)(mu.TryLock(ctx))
	check(t, mu.Unlock(ctx))
}

func testMutexWait(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	mu := st.Mutex("conformance.wait")
	check(t, mu.Lock(ctx))

	// A waiter whose context ends leaves the queue.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := st.Mutex("conformance.wait").Lock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lock with a short deadline: err = %v, want DeadlineExceeded", err)
	}

	// Waiters are served in order.
	var order []int
	var orderMu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 {
		w := st.Mutex("conformance.wait")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Lock(ctx); err != nil {
				t.Error(err)
				return
			}
			orderMu.Lock()
			order = append(order, i)
			orderMu.Unlock()
			if err := w.Unlock(ctx); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(30 * time.Millisecond) // let waiter i queue before i+1
	}
	check(t, mu.Unlock(ctx))
	wg.Wait()
	equal(t, "order of waiters", fmt.Sprint(order), "[0 1 2]")
}

func testMutexWrap(t *testing.T, st *sharedstate.State) {
	var inside, overlaps, served atomic.Int32
	h := st.Mutex("conformance.wrap").Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		time.Sleep(time.Millisecond)
		inside.Add(-1)
		served.Add(1)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	equal(t, "handlers served", served.Load(), 20)
	equal(t, "overlapping handlers", overlaps.Load(), 0)
}

func testClosed(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	check(t, st.Close())
	check(t, st.Close())
	if _, err := st.Counter("conformance.closed").Add(ctx, 1); !errors.Is(err, sharedstate.ErrClosed) {
		t.Errorf("Add after Close: err = %v, want ErrClosed", err)
	}
	if err := sharedstate.NewMap[int](st, "conformance.closed").Store(ctx, "k", 1); !errors.Is(err, sharedstate.ErrClosed) {
		t.Errorf("Store after Close: err = %v, want ErrClosed", err)
	}
}

func testPubSub(t *testing.T, st *sharedstate.State) {
	ctx := ctxFor(t)
	subCtx, cancel := context.WithCancel(ctx)
	msgs, err := st.Subscribe(subCtx, "conformance.news")
	check(t, err)
	other, err := st.Subscribe(subCtx, "conformance.other")
	check(t, err)
	n, err := st.Publish(ctx, "conformance.news", []byte("hello"))
	check(t, err)
	if n < 1 {
		t.Errorf("Publish reached %d processes, want at least this one", n)
	}
	select {
	case msg := <-msgs:
		equal(t, "message", string(msg), "hello")
	case <-ctx.Done():
		t.Fatal("no message received")
	}
	select {
	case msg := <-other:
		t.Errorf("message %q on another channel", msg)
	default:
	}
	cancel()
	for range msgs { // closed once the subscription's context ends
	}
}
