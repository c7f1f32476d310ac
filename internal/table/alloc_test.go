//go:build unix

package table

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

func TestSizeClasses(t *testing.T) {
	for n := uint64(1); n < 1<<22; n++ {
		c := classOf(n)
		if c >= nClasses || classSize(c) < n || c > 0 && classSize(c-1) >= n {
			t.Fatalf("a block of %d bytes: class %d of %d bytes, the one below %d", n, c, classSize(c), classSize(c-1))
		}
	}
	if c := classOf(maxOffset); c >= nClasses {
		t.Fatalf("the largest block: class %d of %d", c, nClasses)
	}
}

// checkAllocator checks that no block the table uses is on a free stack,
// and that no block is on them twice. The root's keys that begin with "m:"
// hold namespaces (as the tests' do).
func checkAllocator(t testing.TB, tb *Table) {
	t.Helper()
	m := tb.m
	used := map[uint64]string{}
	use := func(off uint64, what string) {
		if prev, ok := used[off]; ok {
			t.Fatalf("block %d is both %s and %s", off, prev, what)
		}
		used[off] = what
	}
	var walk func(ns uint64, name string)
	walk = func(ns uint64, name string) {
		slots, index := word(m, ns+nsSlots), word(m, ns+nsIndex)
		if slots > 0 {
			use(index, "the slots of "+name)
		}
		for i := range slots {
			s := word(m, index+i*8)
			if s == slotEmpty || s == slotTomb {
				continue
			}
			key := string(entryKey(m, slotOff(s)))
			use(slotOff(s), "the entry "+key+" of "+name)
			if ns == hRoot && strings.HasPrefix(key, "m:") {
				walk(readEntry(m, slotOff(s)).val, key)
			}
		}
	}
	walk(hRoot, "the root")
	stacked := map[uint64]bool{}
	for c := range nClasses {
		arr, n := word(m, stack(c)), word(m, stack(c)+8)
		for i := range n {
			off := word(m, arr+i*8)
			if stacked[off] {
				t.Fatalf("block %d is on the free stack of class %d twice", off, c)
			}
			stacked[off] = true
			if what, ok := used[off]; ok {
				t.Fatalf("block %d, %s, is on the free stack of class %d", off, what, c)
			}
		}
	}
}

// TestStackGrowsInATransactionThatPopped: a transaction that takes a block
// from a full free stack and frees two grows the stack with the push it
// made in its plan, not with the block it took.
func TestStackGrowsInATransactionThatPopped(t *testing.T) {
	tb, _, _ := newTestTable(t, 64<<20)
	value := make([]byte, 50) // one class for every entry, and for no slots' array
	put := func(tx *Tx, i int) { tx.Put(Root, fmt.Sprint("k", i), value, 1, 0) }
	tx := tb.Begin()
	for i := range 70 {
		put(tx, i)
	}
	commit(t, tx)
	c := classOf(entrySize(3, 50, false))
	for i := range 64 { // the class's stack full: 64 of its first 64
		tx := tb.Begin()
		tx.Delete(Root, fmt.Sprint("k", i))
		commit(t, tx)
	}
	if n, capacity := word(tb.m, stack(c)+8), word(tb.m, stack(c)+16); n != capacity {
		t.Fatalf("the stack holds %d of %d", n, capacity)
	}
	tx = tb.Begin()
	put(tx, 100) // takes the top block
	tx.Delete(Root, "k64")
	tx.Delete(Root, "k65") // the second push grows the stack
	commit(t, tx)
	checkAllocator(t, tb)
}

// TestSortOffsets: the radix sort of block offsets sorts as slices.Sort.
func TestSortOffsets(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 2, 1000, 100_000} {
		offs := make([]uint64, n)
		for i := range offs {
			offs[i] = r.Uint64N(maxOffset/8) * 8
		}
		want := slices.Clone(offs)
		slices.Sort(want)
		sortOffsets(offs, new(atomic.Bool))
		if !slices.Equal(offs, want) {
			t.Fatalf("%d offsets: sorted wrong", n)
		}
	}
}
