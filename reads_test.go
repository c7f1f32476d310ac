//go:build unix

package sharedstate_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// TestProxyReadsFromTheTable: a proxy's Counter.Load, Map.Load, Len and
// Range come from the owner's table, not its socket, with what the owner
// acknowledged; an entry near its deadline, the length of a map whose
// entries may have expired, and every read once the table's file is
// removed go to the owner.
func TestProxyReadsFromTheTable(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	owner := open(t, dir, "app")
	proxy := open(t, dir, "app")
	if !owner.IsOwner() || proxy.IsOwner() {
		t.Fatal("the first State does not own the state")
	}
	ownerOps := func() uint64 {
		s, err := owner.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s.Ops
	}
	m := sharedstate.NewMap[string](proxy, "m")
	if err := m.Store(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.Counter("c").Add(ctx, 5); err != nil {
		t.Fatal(err)
	}
	// reads does n rounds of reads through the proxy, checks what they
	// return, and says how many operations reached the owner.
	reads := func(n int) uint64 {
		t.Helper()
		before := ownerOps()
		for range n {
			if v, ok, err := m.Load(ctx, "k"); err != nil || !ok || v != "v" {
				t.Fatalf("Load = %q, %v, %v", v, ok, err)
			}
			if c, err := proxy.Counter("c").Load(ctx); err != nil || c != 5 {
				t.Fatalf("Counter.Load = %d, %v", c, err)
			}
			if l, err := m.Len(ctx); err != nil || l != 1 {
				t.Fatalf("Len = %d, %v", l, err)
			}
			var keys []string
			if err := m.Range(ctx, func(k, v string) bool { keys = append(keys, k+"="+v); return true }); err != nil || len(keys) != 1 || keys[0] != "k=v" {
				t.Fatalf("Range = %v, %v", keys, err)
			}
		}
		return ownerOps() - before - 1 // less the Stats that reads it
	}
	if n := reads(100); n > 5 {
		t.Fatalf("400 reads through the proxy: %d reached the owner, want none", n)
	}

	ttl := sharedstate.NewMap[string](proxy, "ttl")
	if err := ttl.Store(ctx, "k", "v", sharedstate.WithTTL(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	before := ownerOps()
	if _, ok, err := ttl.Load(ctx, "k"); err != nil || !ok {
		t.Fatalf("Load of a live entry = %v, %v", ok, err)
	}
	if n := ownerOps() - before - 1; n != 0 {
		t.Fatalf("a Load of an entry far from its deadline reached the owner (%d ops)", n)
	}
	if _, err := ttl.Len(ctx); err != nil {
		t.Fatal(err)
	}
	if n := ownerOps() - before - 2; n != 1 {
		t.Fatalf("Len of a map whose entries expire: %d ops at the owner, want it to ask the owner", n)
	}
	before = ownerOps()
	var left time.Duration
	if err := ttl.RangeTTL(ctx, func(_, _ string, ttl time.Duration) bool { left = ttl; return true }); err != nil || left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("RangeTTL: %v left, %v", left, err)
	}
	if n := ownerOps() - before - 1; n != 0 {
		t.Fatalf("a Range of entries far from their deadlines reached the owner (%d ops)", n)
	}
	time.Sleep(350 * time.Millisecond)
	if _, ok, err := ttl.Load(ctx, "k"); err != nil || ok {
		t.Fatalf("Load after the deadline = %v, %v; want not found", ok, err)
	}
	found := false
	if err := ttl.Range(ctx, func(string, string) bool { found = true; return true }); err != nil || found {
		t.Fatalf("Range after the deadline: found %v, %v; want nothing", found, err)
	}

	if err := os.Remove(filepath.Join(dir, "app.table")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the owner's guard notices within a quarter of that
	if n := reads(10); n != 40 {
		t.Fatalf("40 reads once the table's file was removed: %d reached the owner, want all", n)
	}
}

// TestManyStatesInOneProcess: a process that owns and reads hundreds of
// states maps each one's table twice, and still has the address space for
// all of them: every reader reads its table (a reservation of a terabyte
// each ran out at the 64th).
func TestManyStatesInOneProcess(t *testing.T) {
	dir := t.TempDir()
	ctx := testContext(t)
	for i := range 200 {
		name := fmt.Sprint("s", i)
		owner, reader := open(t, dir, name), open(t, dir, name)
		if _, err := owner.Counter("c").Add(ctx, 1); err != nil {
			t.Fatal(err)
		}
		before, err := owner.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := reader.Counter("c").Load(ctx); err != nil || n != 1 {
			t.Fatalf("state %d: %d, %v", i, n, err)
		}
		if after, err := owner.Stats(ctx); err != nil || after.Ops != before.Ops+1 {
			t.Fatalf("state %d: the reader's Load reached the owner (%d ops, then %d): it has no table", i, before.Ops, after.Ops)
		}
	}
}
