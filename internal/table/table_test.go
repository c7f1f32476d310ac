//go:build unix

package table

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

var testBoot = [16]byte{1, 2, 3}

// newTestTable makes an empty table in an anonymous shared mapping of
// reserve bytes (outside the Go heap, as a file's mapping is: the race
// detector does not watch it), and a view of it.
func newTestTable(t testing.TB, reserve uint64) (*Table, *View, []byte) {
	t.Helper()
	m, err := unix.Mmap(-1, 0, int(reserve), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	format(m, growStep, testBoot, 0x5eed)
	return reopen(t, m)
}

// reopen opens the table in m again, as a new owner would.
func reopen(t testing.TB, m []byte) (*Table, *View, []byte) {
	t.Helper()
	tb, err := open(m, uint64(len(m)), testBoot, func(uint64) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	v, err := newView(m, uint64(len(m)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return tb, v, m
}

func commit(t testing.TB, tx *Tx) {
	t.Helper()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestPutGetDelete(t *testing.T) {
	tb, v, _ := newTestTable(t, 64<<20)
	tx := tb.Begin()
	tx.Put(Root, "a", []byte("one"), 7, 0)
	tx.Put(Root, "b", []byte("two"), 8, 12345)
	commit(t, tx)

	r, err := v.Get("", "a", nil)
	if err != nil || !r.Found || string(r.Value) != "one" || r.Version != 7 || r.Deadline != 0 {
		t.Fatalf("Get a = %+v, %v", r, err)
	}
	if r, _ := v.Get("", "b", nil); string(r.Value) != "two" || r.Deadline != 12345 {
		t.Fatalf("Get b = %+v", r)
	}
	if r, _ := v.Get("", "c", nil); r.Found {
		t.Fatalf("Get c = %+v, want not found", r)
	}

	tx = tb.Begin()
	tx.SetPosition(Position{Journal: 5, Offset: 40})
	tx.Put(Root, "a", []byte("uno"), 9, 0)
	if !tx.Delete(Root, "b") || tx.Delete(Root, "c") {
		t.Fatal("Delete reports wrongly")
	}
	commit(t, tx)
	if r, _ := v.Get("", "a", nil); string(r.Value) != "uno" || r.Version != 9 {
		t.Fatalf("Get a after Put = %+v", r)
	}
	if r, _ := v.Get("", "b", nil); r.Found {
		t.Fatal("b is still there after Delete")
	}
	if n := word(tb.m, hRoot+nsUsed); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
	if p := tb.Position(); p != (Position{Journal: 5, Offset: 40}) {
		t.Fatalf("Position = %+v, want {5 40}", p)
	}
}

func TestSpaces(t *testing.T) {
	tb, v, _ := newTestTable(t, 256<<20)
	tx := tb.Begin()
	spEntry := tx.NewSpace("m:kv", 1)
	sp := spEntry.Space()
	tx.SetWord(spEntry, nsWords, 3) // its extra word
	ctr, _, _ := tx.Put(Root, "c:hits", make([]byte, 8), 0, 0)
	tx.SetWord(ctr, 0, 42)
	commit(t, tx)
	fill := func() {
		for i := range 20_000 { // rehashes many times
			tx := tb.Begin()
			tx.Put(sp, fmt.Sprintf("key%05d", i), []byte{byte(i)}, uint64(i+1), 0)
			commit(t, tx)
		}
	}
	fill()
	if n, w, err := v.Count("m:kv", 0); n != 20_000 || w != 3 || err != nil {
		t.Fatalf("Count = %d, %d, %v; want 20000 and the extra word, 3", n, w, err)
	}
	if r, _ := v.Get("m:kv", "key12345", nil); !r.Found || r.Value[0] != byte(12345%256) {
		t.Fatalf("Get = %+v", r)
	}
	if r, _ := v.Get("", "c:hits", nil); binary.NativeEndian.Uint64(r.Value) != 42 {
		t.Fatalf("counter = %v", r.Value)
	}
	items, err := v.Scan("m:kv")
	if err != nil || len(items) != 20_000 {
		t.Fatalf("Scan: %d items, %v", len(items), err)
	}
	if !slices.IsSortedFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) }) || string(items[0].Key) != "key00000" {
		t.Fatal("Scan is not in key order")
	}

	tx = tb.Begin()
	tx.ClearSpace(sp)
	commit(t, tx) // a plan of a few words, however many entries
	if n, _, _ := v.Count("m:kv", 0); n != 0 {
		t.Fatalf("Len after ClearSpace = %d", n)
	}
	if r, _ := v.Get("m:kv", "key00001", nil); r.Found {
		t.Fatal("an entry outlived ClearSpace")
	}

	// The cleared entries' blocks are reused: refilling takes no new space.
	bump := word(tb.m, hBump)
	fill()
	if grown := word(tb.m, hBump) - bump; grown > 64<<10 {
		t.Fatalf("refilling a cleared space took %d new bytes", grown)
	}

	tx = tb.Begin()
	if !tx.DeleteSpace("m:kv") {
		t.Fatal("DeleteSpace found nothing")
	}
	commit(t, tx)
	if n := word(tb.m, hRoot+nsUsed); n != 1 {
		t.Fatalf("the root has %d keys, want the counter's alone", n)
	}
}

// model is what a table should hold: space → key → value.
type model map[string]map[string]modelEntry

type modelEntry struct {
	value    string
	version  uint64
	deadline int64
}

func (md model) clone() model {
	c := model{}
	for sp, kv := range md {
		c[sp] = map[string]modelEntry{}
		for k, e := range kv {
			c[sp][k] = e
		}
	}
	return c
}

// modelRun makes random transactions, and keeps in md what they should
// leave.
type modelRun struct {
	r       *rand.Rand
	md      model
	version uint64
}

func newModelRun(seed uint64) *modelRun {
	return &modelRun{r: rand.New(rand.NewPCG(seed, seed+1)), md: model{"": {}}}
}

// randomTx applies a few random operations to tx and to the model.
func (w *modelRun) randomTx(tx *Tx) {
	r, md, version := w.r, w.md, &w.version
	spaces := []string{"", "m:a", "m:b", "m:c"}
	for range 1 + r.IntN(4) {
		name := spaces[r.IntN(len(spaces))]
		sp := Root
		if name != "" {
			e, ok := tx.Get(Root, name)
			if !ok {
				e = tx.NewSpace(name, 0)
				md[name] = map[string]modelEntry{}
			}
			sp = e.Space()
		}
		key := fmt.Sprintf("k%d", r.IntN(300))
		if name == "" {
			key = "c:" + key // never a space's name
		}
		switch n := r.IntN(100); {
		case n < 60:
			*version++
			size := 16 // most in one class, whose blocks are freed and reused in one transaction
			if r.IntN(2) == 0 {
				size = r.IntN(1200)
			}
			val := bytes.Repeat([]byte{byte(r.IntN(256))}, size)
			var deadline int64
			if r.IntN(3) == 0 {
				deadline = r.Int64()
			}
			tx.Put(sp, key, val, *version, deadline)
			md[name][key] = modelEntry{string(val), *version, deadline}
		case n < 90:
			if got, want := tx.Delete(sp, key), hasKey(md[name], key); got != want {
				panic(fmt.Sprintf("Delete(%q, %q) = %v, want %v", name, key, got, want))
			}
			delete(md[name], key)
		case n < 95 && name != "":
			tx.ClearSpace(sp)
			md[name] = map[string]modelEntry{}
		case name != "":
			tx.DeleteSpace(name)
			delete(md, name)
		}
	}
}

func hasKey(kv map[string]modelEntry, key string) bool { _, ok := kv[key]; return ok }

// checkModel compares everything v reads with md.
func checkModel(t testing.TB, v *View, md model) {
	t.Helper()
	for name, kv := range md {
		if name == "" {
			continue
		}
		items, err := v.Scan(name)
		if err != nil {
			t.Fatalf("Scan(%q): %v", name, err)
		}
		if len(items) != len(kv) {
			t.Fatalf("Scan(%q): %d items, want %d", name, len(items), len(kv))
		}
		for _, it := range items {
			want := kv[string(it.Key)]
			if string(it.Value) != want.value || it.Version != want.version || it.Deadline != want.deadline {
				t.Fatalf("Scan(%q): %q = (%d bytes, v%d, %d), want (%d bytes, v%d, %d)", name, it.Key,
					len(it.Value), it.Version, it.Deadline, len(want.value), want.version, want.deadline)
			}
		}
		if n, _, _ := v.Count(name, 0); n != len(kv) {
			t.Fatalf("Len(%q) = %d, want %d", name, n, len(kv))
		}
	}
	for k, want := range md[""] {
		r, err := v.Get("", k, nil)
		if err != nil || !r.Found || string(r.Value) != want.value || r.Version != want.version {
			t.Fatalf("Get(%q) = %+v, %v; want %d bytes, v%d", k, r, err, len(want.value), want.version)
		}
	}
	for _, name := range []string{"m:a", "m:b", "m:c"} {
		if _, ok := md[name]; !ok {
			if n, _, _ := v.Count(name, 0); n != 0 {
				t.Fatalf("deleted space %q has %d entries", name, n)
			}
		}
	}
}

// TestAgainstModel: random transactions, checked against a model after each.
func TestAgainstModel(t *testing.T) {
	tb, v, m := newTestTable(t, 512<<20)
	w := newModelRun(1)
	for i := range 3000 {
		tx := tb.Begin()
		w.randomTx(tx)
		commit(t, tx)
		checkModel(t, v, w.md)
		if i%50 == 0 {
			checkAllocator(t, tb)
		}
		if i%500 == 499 {
			tb, v, _ = reopen(t, m) // a new owner takes the table over as it is
		}
	}
}

// TestCrashInTransaction: an owner that dies anywhere in a transaction
// leaves a table that the next owner opens with the transaction either
// wholly applied (its sequence number had gone odd) or not at all.
func TestCrashInTransaction(t *testing.T) {
	tb, v, m := newTestTable(t, 512<<20)
	w := newModelRun(3)
	r := w.r
	for range 2000 {
		before := w.md.clone()
		tx := tb.Begin()
		w.randomTx(tx)
		switch r.IntN(3) {
		case 0: // killed before the sequence number went odd, its free blocks stacked
			if err := tx.prepare(); err != nil {
				t.Fatal(err)
			}
			w.md = before
		case 1: // killed while applying the plan
			if err := tx.prepare(); err != nil {
				t.Fatal(err)
			}
			atomicWord(m, hSeq).Add(1)
			tx.apply(r.IntN(len(tx.plan) + 1))
		default:
			commit(t, tx)
		}
		tb, v, _ = reopen(t, m)
		if word(m, hSeq)%2 == 1 {
			t.Fatal("after reopening: the sequence number is odd")
		}
		checkModel(t, v, w.md)
		checkAllocator(t, tb)
	}
}

// TestReadsInATransaction: what a transaction set in place, it reads back
// before it commits; other processes do not see it until then.
func TestReadsInATransaction(t *testing.T) {
	tb, v, _ := newTestTable(t, 64<<20)
	tx := tb.Begin()
	ctr, _, _ := tx.Put(Root, "c", make([]byte, 8), 1, 0)
	commit(t, tx)
	tx = tb.Begin()
	tx.SetWord(ctr, 0, 5)
	if e, _ := tx.Get(Root, "c"); binary.NativeEndian.Uint64(e.Value) != 5 {
		t.Fatalf("in the transaction: %v", e.Value)
	}
	if r, _ := v.Get("", "c", nil); binary.NativeEndian.Uint64(r.Value) != 0 || r.Version != 1 {
		t.Fatalf("before the commit, a reader sees %v, version %d", r.Value, r.Version)
	}
	commit(t, tx)
	if r, _ := v.Get("", "c", nil); binary.NativeEndian.Uint64(r.Value) != 5 {
		t.Fatalf("after the commit, a reader sees %v", r.Value)
	}
}

// TestSample checks that samples from random starts cover a namespace
// evenly, whatever its keys' order, and that a sample wraps past the last
// slot and yields no more entries than there are.
func TestSample(t *testing.T) {
	tb, _, _ := newTestTable(t, 64<<20)
	tx := tb.Begin()
	sp := tx.NewSpace("m", 0).Space()
	const n = 1000
	for i := range n {
		tx.Put(sp, fmt.Sprintf("key%04d", i), nil, uint64(i), 0)
		if i%100 == 99 {
			commit(t, tx)
			tx = tb.Begin()
		}
	}
	commit(t, tx)
	tx = tb.Begin()
	seen := make(map[string]int)
	for range 2000 {
		got := 0
		for k := range tx.Sample(sp, rand.Uint64(), 5) {
			seen[string(k)]++
			got++
		}
		if got != 5 {
			t.Fatalf("a sample of 5 yielded %d", got)
		}
	}
	// 10,000 draws of 1,000 keys: each key about 10 times; a key never
	// drawn, or drawn far too often, says the sample is not random.
	if len(seen) < n*95/100 {
		t.Errorf("samples drew %d of %d keys", len(seen), n)
	}
	for k, c := range seen {
		if c > 60 {
			t.Errorf("%s drawn %d times of an expected 10", k, c)
		}
	}
	all := 0
	for range tx.Sample(sp, 1<<63, 2*n) {
		all++
	}
	if all != n {
		t.Errorf("a sample of %d yielded %d of %d entries", 2*n, all, n)
	}
}
