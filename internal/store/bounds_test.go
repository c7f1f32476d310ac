package store

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/sharedstate/sharedstate/transport"
)

func store(name, key string, value []byte, maxEntries, maxBytes uint64) transport.Request {
	return req(transport.Request{Op: transport.OpStore, Name: name, Key: key, Value: value, MaxEntries: maxEntries, MaxBytes: maxBytes})
}

func mapKeys(s *Store, name string) []string {
	var keys []string
	if sp, ok := s.mapSpace(name); ok {
		for k := range s.txn().All(sp) {
			keys = append(keys, string(k))
		}
	}
	s.commit()
	slices.Sort(keys)
	return keys
}

// TestBoundByEntries writes ten times a map's bound of distinct keys: it
// holds the bound exactly, never loses the entry just written, counts what
// it evicted and tells the map's watchers.
func TestBoundByEntries(t *testing.T) {
	s, _, sess := newTestStore(t)
	var evicted int
	s.Changed = func(_, _ string, c Change) {
		if c == Evicted {
			evicted++
		}
	}
	for i := range 1000 {
		key := fmt.Sprintf("k%04d", i)
		do(t, s, sess, store("m", key, []byte("v"), 100, 0))
		if r := do(t, s, sess, req(transport.Request{Op: transport.OpLoad, Name: "m", Key: key})); !r.Found {
			t.Fatalf("%s evicted by its own write", key)
		}
		if n := s.mapLen("m"); n > 100 {
			t.Fatalf("%d entries after %d writes, bound 100", n, i+1)
		}
	}
	if n := s.mapLen("m"); n != 100 {
		t.Errorf("%d entries, want the bound, 100", n)
	}
	if st := s.stats(); st.Evictions != 900 || st.Entries != 100 || evicted != 900 {
		t.Errorf("Evictions %d, Entries %d, watchers told of %d; want 900, 100, 900", st.Evictions, st.Entries, evicted)
	}
	// A write without the bound is a write like any other.
	do(t, s, sess, store("m", "unbounded", []byte("v"), 0, 0))
	if n := s.mapLen("m"); n != 101 {
		t.Errorf("%d entries after a write without a bound, want 101", n)
	}
}

// TestBoundKeepsWhatIsRead: an entry written first but read all along
// outlives the thousands written after it, and so do the most recently
// written ones.
func TestBoundKeepsWhatIsRead(t *testing.T) {
	s, _, sess := newTestStore(t)
	do(t, s, sess, store("m", "hot", []byte("v"), 100, 0))
	touch := req(transport.Request{Op: transport.OpTouch, Name: "m", Value: transport.AppendTouched(nil, "hot")})
	for i := range 5000 {
		do(t, s, sess, store("m", fmt.Sprintf("k%04d", i), []byte("v"), 100, 0))
		if i%10 == 0 {
			if r := do(t, s, sess, touch); r.Status != transport.StatusOK {
				t.Fatalf("Touch: %v %s", r.Status, r.Msg)
			}
		}
	}
	keys := mapKeys(s, "m")
	if !slices.Contains(keys, "hot") {
		t.Error("the entry read all along was evicted")
	}
	for i := 4990; i < 5000; i++ {
		if !slices.Contains(keys, fmt.Sprintf("k%04d", i)) {
			t.Errorf("k%04d, one of the last 10 written, was evicted", i)
		}
	}
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpTouch, Name: "m", Value: []byte{5, 'a'}})); r.Status != transport.StatusBadRequest {
		t.Errorf("a Touch of a truncated key: %v, want bad request", r.Status)
	}
	// Touches of maps that do not exist keep nothing.
	for i := range 100 {
		do(t, s, sess, req(transport.Request{Op: transport.OpTouch, Name: fmt.Sprintf("nomap%d", i), Value: transport.AppendTouched(nil, "k")}))
	}
	if len(s.bounds) != 1 {
		t.Errorf("%d bounds kept after Touches of 100 maps that do not exist, want 1 (m's)", len(s.bounds))
	}
}

// TestBoundByBytes bounds a map by the bytes of its keys and values; an
// entry larger than the whole bound stays, alone.
func TestBoundByBytes(t *testing.T) {
	s, _, sess := newTestStore(t)
	do(t, s, sess, store("m", "early", make([]byte, 500), 0, 0)) // before any bound: counted once one comes
	value := make([]byte, 96)
	for i := range 1000 {
		do(t, s, sess, store("m", fmt.Sprintf("k%03d", i), value, 0, 4_000))
		if b := s.bounds["m"].bytes; b > 4_000 {
			t.Fatalf("%d bytes after %d writes, bound 4000", b, i+1)
		}
	}
	if n := s.mapLen("m"); n != 40 {
		t.Errorf("%d entries of 100 bytes, want 40 in 4,000 bytes", n)
	}
	do(t, s, sess, store("m", "big", make([]byte, 20_000), 0, 4_000))
	if keys := mapKeys(s, "m"); !slices.Equal(keys, []string{"big"}) {
		t.Errorf("keys %d after an entry over the bound, want only it", len(keys))
	}
}

// TestEvictionsReplayed rebuilds a bounded map from its journal alone: the
// same entries are there, whatever a new owner would have sampled.
func TestEvictionsReplayed(t *testing.T) {
	path, dir := testDirAt(t)
	s := recoverIn(t, dir)
	sess := s.NewOwnSession(1, os.Getpid(), func(transport.Response) {})
	for i := range 500 {
		s.Apply(sess, &transport.Request{ID: uint64(i + 1), Op: transport.OpStore, Name: "m", Key: fmt.Sprintf("k%03d", i), Value: []byte("v"), MaxEntries: 50})
	}
	want := mapKeys(s, "m")
	s.Close()
	if err := os.Remove(path + "/" + TableName("app")); err != nil {
		t.Fatal(err)
	}
	s = recoverIn(t, dir)
	defer s.Close()
	if s.Adopted() {
		t.Fatal("the table was adopted, not rebuilt")
	}
	if got := mapKeys(s, "m"); !slices.Equal(got, want) {
		t.Errorf("replay kept %d keys, %s; the owner had %d, %s", len(got), strings.Join(got, " "), len(want), strings.Join(want, " "))
	}
}

// TestComputeOnce: the first Compute of a missing entry claims it, the
// others wait; once the claim's holder stores the entry and releases the
// claim, every waiter gets the entry. If it releases the claim without
// the entry, the next waiter holds it.
func TestComputeOnce(t *testing.T) {
	s, _, sess := newTestStore(t)
	answers := make(map[uint64]transport.Response)
	other := s.NewSession(2, 200, func(r transport.Response) { answers[r.ID] = r })
	compute := transport.Request{Op: transport.OpCompute, Name: "m", Key: "k"}
	first := do(t, s, sess, req(compute))
	if first.Found || first.Version == 0 {
		t.Fatalf("first Compute: found %v, token %d; want a claim", first.Found, first.Version)
	}
	claim := transport.ClaimName("m", "k")
	waiting := []transport.Request{req(compute), req(compute), req(compute)}
	for i := range waiting {
		if _, parked := s.Apply(other, &waiting[i]); !parked {
			t.Fatal("a Compute of a claimed entry did not wait")
		}
	}
	// The holder gives up: the first waiter holds the claim now.
	do(t, s, sess, req(transport.Request{Op: transport.OpUnlock, Name: claim, Version: first.Version}))
	next, ok := answers[waiting[0].ID]
	if !ok || next.Found || next.Version <= first.Version || len(answers) != 1 {
		t.Fatalf("after the holder gave up: %d answers, first %+v; want the first waiter's claim", len(answers), next)
	}
	do(t, s, other, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "k", Value: []byte("v")}))
	do(t, s, other, req(transport.Request{Op: transport.OpUnlock, Name: claim, Version: next.Version}))
	for _, w := range waiting[1:] {
		if r := answers[w.ID]; !r.Found || string(r.Value) != "v" {
			t.Errorf("waiter %d: %+v, want the entry computed", w.ID, r)
		}
	}
	if _, ok := s.locks[claim]; ok {
		t.Error("the claim is kept once nobody holds or waits for it")
	}
	if r := do(t, s, sess, req(compute)); !r.Found || string(r.Value) != "v" {
		t.Errorf("a Compute of an entry there: %+v", r)
	}
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpLock, Name: claim})); r.Status != transport.StatusBadRequest {
		t.Errorf("Lock of a claim's name: %v, want bad request", r.Status)
	}
	// A refresh takes the claim without waiting, and its Store releases it.
	refresh := do(t, s, sess, req(transport.Request{Op: transport.OpTryLock, Name: claim}))
	if !refresh.Found {
		t.Fatal("TryLock of a free claim failed")
	}
	if r := do(t, s, other, req(transport.Request{Op: transport.OpTryLock, Name: claim})); r.Found {
		t.Error("two refreshes hold one claim")
	}
	do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "k", Value: []byte("v2"), Version: refresh.Version}))
	if _, ok := s.locks[claim]; ok {
		t.Error("the Store with the claim's token left it held")
	}
}
