//go:build unix

package table

import (
	"encoding/binary"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
)

// readFrozen reads everything f has into a model, checking that each
// space's entries come in the order of their blocks.
func readFrozen(f *Frozen) (model, error) {
	md := model{"": {}}
	add := func(name string, sp Space) error {
		last := uint64(0)
		for k, e := range f.Entries(sp) {
			if e.off <= last {
				return fmt.Errorf("%q: block %d after %d", name, e.off, last)
			}
			last = e.off
			if sp == Root && strings.HasPrefix(string(k), "m:") {
				md[string(k)] = map[string]modelEntry{}
				continue
			}
			md[name][string(k)] = modelEntry{string(e.Value), e.Version, e.Deadline}
		}
		if n := f.Len(sp); n != len(md[name]) && sp != Root {
			return fmt.Errorf("%q: Len %d, %d entries", name, n, len(md[name]))
		}
		return nil
	}
	if err := add("", Root); err != nil {
		return nil, err
	}
	for k, e := range f.Entries(Root) {
		if strings.HasPrefix(string(k), "m:") {
			if err := add(string(k), e.Space()); err != nil {
				return nil, err
			}
		}
	}
	return md, nil
}

func equalModels(a, b model) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]modelEntry) bool { return maps.Equal(x, y) })
}

// TestFrozenAgainstModel: while random transactions go on, a reader of a
// frozen table reads it as it was at the freeze, as often as it reads it;
// thawed, the table holds the transactions' outcome and its allocator is
// whole.
func TestFrozenAgainstModel(t *testing.T) {
	tb, v, _ := newTestTable(t, 512<<20)
	w := newModelRun(5)
	for round := range 12 {
		for range 300 {
			tx := tb.Begin()
			w.randomTx(tx)
			commit(t, tx)
		}
		tx := tb.Begin()
		ctr, ok := tx.Get(Root, "c:counter")
		if !ok {
			ctr, _, _ = tx.Put(Root, "c:counter", make([]byte, 8), 0, 0)
			commit(t, tx)
		}
		at := w.md.clone()
		at[""]["c:counter"] = modelEntry{string(binary.NativeEndian.AppendUint64(nil, uint64(round))), 0, 0}
		tx = tb.Begin()
		tx.SetWord(ctr, 0, uint64(round))
		commit(t, tx)

		f, err := tb.Freeze()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var readErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				got, err := readFrozen(f)
				if err == nil && !equalModels(got, at) {
					err = fmt.Errorf("the frozen table reads unlike the table at the freeze")
				}
				if err != nil {
					readErr = err
					return
				}
			}
		}()
		for i := range 300 {
			tx := tb.Begin()
			w.randomTx(tx)
			tx.SetWord(ctr, 0, uint64(1000+i)) // changes in place, after the freeze
			commit(t, tx)
		}
		w.md[""]["c:counter"] = modelEntry{string(binary.NativeEndian.AppendUint64(nil, 1299)), 0, 0}
		wg.Wait()
		if readErr != nil {
			t.Fatalf("round %d: %v", round, readErr)
		}
		if got, err := readFrozen(f); err != nil || !equalModels(got, at) {
			t.Fatalf("round %d, after the writes: %v", round, err)
		}
		tb.Thaw()
		f.Release()
		for len(tb.pending) > 0 { // freed by the commits that follow
			tx := tb.Begin()
			w.randomTx(tx)
			commit(t, tx)
		}
		checkModel(t, v, w.md)
		checkAllocator(t, tb)
	}
}

// TestThawFreesHeldBlocks: blocks freed while the table is frozen are not
// reused until it thaws, and then are.
func TestThawFreesHeldBlocks(t *testing.T) {
	tb, _, _ := newTestTable(t, 64<<20)
	tx := tb.Begin()
	sp := tx.NewSpace("m:kv", 0).Space()
	commit(t, tx)
	fill := func() {
		for i := range 2000 {
			tx := tb.Begin()
			tx.Put(sp, fmt.Sprint("key", i), make([]byte, 40), 1, 0)
			commit(t, tx)
		}
	}
	fill()
	f, err := tb.Freeze()
	if err != nil {
		t.Fatal(err)
	}
	bump := word(tb.m, hBump)
	fill() // replaces every entry: the old blocks are held
	if word(tb.m, hBump)-bump < 2000*64 {
		t.Fatalf("the frozen table's blocks were reused: the arena grew by %d bytes", word(tb.m, hBump)-bump)
	}
	if n := f.Len(sp); n != 2000 {
		t.Fatalf("frozen Len = %d", n)
	}
	tb.Thaw()
	f.Release()
	bump = word(tb.m, hBump)
	fill()
	// Only the free stacks grow (and the first Put's block, allocated
	// before its commit freed the held ones): far less than new blocks.
	if grown := word(tb.m, hBump) - bump; grown > 2000*64/2 {
		t.Fatalf("after the thaw, the held blocks were not reused: the arena grew by %d bytes", grown)
	}
	checkAllocator(t, tb)
}
