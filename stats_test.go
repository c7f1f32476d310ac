//go:build unix

package sharedstate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

func TestStatsAndNames(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	proxy.Counter("b").Store(ctx, 7)
	proxy.Counter("a").Add(ctx, 1)
	m := sharedstate.NewMap[string](proxy, "m")
	m.Store(ctx, "k1", "v")
	m.Store(ctx, "k2", "v")
	proxy.Mutex("l").Lock(ctx)

	st, err := proxy.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.OwnerPID != os.Getpid() || st.Clients != 1 || st.Counters != 2 || st.Maps != 1 ||
		st.Entries != 2 || st.Locks != 1 || st.Terms != 1 || st.Ops < 6 || st.JournalBytes == 0 || st.OwnerSince.IsZero() {
		t.Errorf("Stats = %+v", st)
	}
	names := func(kind sharedstate.Kind) map[string]int64 {
		got := map[string]int64{}
		if err := owner.Names(ctx, kind, func(name string, size int64) bool { got[name] = size; return true }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := names(sharedstate.KindCounter); len(got) != 2 || got["a"] != 1 || got["b"] != 7 {
		t.Errorf("counters: %v", got)
	}
	if got := names(sharedstate.KindMap); len(got) != 1 || got["m"] != 2 {
		t.Errorf("maps: %v", got)
	}
	if got := names(sharedstate.KindLock); len(got) != 1 || got["l"] == 0 {
		t.Errorf("locks: %v", got)
	}
}

func TestObserver(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	st := open(t, dir, "app")
	st.Counter("c").Store(ctx, 42)

	// With an owner running, an observer is a client like any other.
	obs := open(t, dir, "app", sharedstate.WithObserver())
	if obs.IsOwner() {
		t.Fatal("an observer became the owner")
	}
	if err := obs.Counter("c").Store(ctx, 43); err != nil {
		t.Fatal(err)
	}
	obs.Close()
	st.Close()

	// With none, it reads the files and changes nothing.
	journal := filepath.Join(dir, "app.journal")
	before, _ := os.ReadFile(journal)
	obs = open(t, dir, "app", sharedstate.WithObserver())
	if obs.IsOwner() {
		t.Fatal("an observer became the owner")
	}
	if n, err := obs.Counter("c").Load(ctx); err != nil || n != 43 {
		t.Errorf("observer Load = %d, %v; want 43", n, err)
	}
	if _, err := obs.Counter("c").Add(ctx, 1); !errors.Is(err, sharedstate.ErrReadOnly) {
		t.Errorf("observer Add without an owner: %v, want ErrReadOnly", err)
	}
	obs.Close()
	if after, _ := os.ReadFile(journal); !bytes.Equal(before, after) {
		t.Error("an observer changed the journal")
	}
}

func TestObserverCannotSubscribeOffline(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "app").Close()
	obs := open(t, dir, "app", sharedstate.WithObserver())
	if _, err := obs.Subscribe(testContext(t), "news"); !errors.Is(err, sharedstate.ErrReadOnly) {
		t.Errorf("Subscribe through an observer with no owner: %v, want ErrReadOnly", err)
	}
}

// TestObserverFollowsNewOwner: an observer reading the journal connects to
// an owner that starts later, and sees its writes.
func TestObserverFollowsNewOwner(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	open(t, dir, "app").Close()
	obs := open(t, dir, "app", sharedstate.WithObserver())
	owner := open(t, dir, "app")
	if !owner.IsOwner() {
		t.Fatal("the first process after the observer is not the owner")
	}
	owner.Counter("c").Store(ctx, 7)
	for {
		n, err := obs.Counter("c").Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 7 {
			break
		}
		time.Sleep(10 * time.Millisecond) // until the observer has found the owner
	}
	if _, err := obs.Counter("c").Add(ctx, 1); err != nil {
		t.Errorf("observer Add through the new owner: %v", err)
	}
}

// TestRangeAndStatsAtScale: a Range over a large map is a cursor, costing
// a page's work per page, not a sort of every key for each (at 300,000 keys
// that took 47 seconds); Stats counts entries and bytes as they
// change, not by visiting them.
func TestRangeAndStatsAtScale(t *testing.T) {
	const n = 300_000
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app", sharedstate.WithDurability(sharedstate.DurabilityMemory))
	proxy := open(t, dir, "app", sharedstate.WithDurability(sharedstate.DurabilityMemory))
	m := sharedstate.NewMap[int](owner, "big")
	for i := range n {
		if err := m.Store(ctx, fmt.Sprintf("k%07d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	rangeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	i := 0
	err := sharedstate.NewMap[int](proxy, "big").Range(rangeCtx, func(k string, v int) bool {
		if k != fmt.Sprintf("k%07d", i) || v != i {
			t.Fatalf("entry %d: %s=%d", i, k, v)
		}
		i++
		return true
	})
	if err != nil || i != n {
		t.Fatalf("Range of %d entries: %d seen, %v", n, i, err)
	}
	// Stats as entries come and go.
	m.Store(ctx, "k0000001", 123456789) // a longer value
	m.Delete(ctx, "k0000002")
	m.Delete(ctx, "absent")
	sharedstate.NewMap[string](owner, "small").Store(ctx, "a", "xyz")
	stats, err := proxy.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Entries, and bytes: each key's name, the map's name and the msgpack of
	// the value (an int under 128 is one byte, under 256 two, under 65536
	// three, then five).
	wantBytes := int64(0)
	for i := range n {
		if i == 2 {
			continue
		}
		v := i
		if i == 1 {
			v = 123456789
		}
		size := 1
		switch {
		case v >= 1<<16:
			size = 5
		case v >= 1<<8:
			size = 3
		case v >= 1<<7:
			size = 2
		}
		wantBytes += int64(len("big") + 8 + size)
	}
	wantBytes += int64(len("small") + 1 + 4)
	if stats.Entries != n || stats.Maps != 2 || stats.Bytes != wantBytes {
		t.Errorf("Stats: %d entries in %d maps, %d bytes; want %d in 2, %d bytes", stats.Entries, stats.Maps, stats.Bytes, n, wantBytes)
	}
}
