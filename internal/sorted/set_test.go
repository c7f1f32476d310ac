package sorted

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSetMatchesSortedSlice runs random inserts, deletes and appends
// against a plain sorted slice, and compares every listing.
func TestSetMatchesSortedSlice(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var s Set
	var want []string
	key := func() string { return fmt.Sprintf("k%05d", r.IntN(5000)) }
	for op := range 50000 {
		k := key()
		at, found := slices.BinarySearch(want, k)
		switch r.IntN(3) {
		case 0, 1:
			if got := s.Insert(k); got == found {
				t.Fatalf("op %d: Insert(%q) = %v with the key present: %v", op, k, got, found)
			}
			if !found {
				want = slices.Insert(want, at, k)
			}
		case 2:
			if got := s.Delete(k); got != found {
				t.Fatalf("op %d: Delete(%q) = %v with the key present: %v", op, k, got, found)
			}
			if found {
				want = slices.Delete(want, at, at+1)
			}
		}
		if s.Len() != len(want) {
			t.Fatalf("op %d: Len = %d, want %d", op, s.Len(), len(want))
		}
		if op%997 == 0 {
			start := key()
			for _, inclusive := range []bool{false, true} {
				from, found := slices.BinarySearch(want, start)
				if found && !inclusive {
					from++
				}
				if got := slices.Collect(s.From(start, inclusive)); !slices.Equal(got, want[from:]) {
					t.Fatalf("op %d: From(%q, %v) = %d keys, want %d", op, start, inclusive, len(got), len(want)-from)
				}
			}
		}
	}
}

func TestSetAppend(t *testing.T) {
	var s Set
	var want []string
	for i := range 10000 {
		k := fmt.Sprintf("k%06d", i*2)
		s.Append(k)
		want = append(want, k)
	}
	s.Append("k000001") // out of order: inserted
	want = slices.Insert(want, 1, "k000001")
	if got := slices.Collect(s.From("", true)); !slices.Equal(got, want) {
		t.Fatalf("%d keys after appends, want %d", len(got), len(want))
	}
	s.Insert("k000003")
	if got := slices.Collect(s.From("k000002", false)); got[0] != "k000003" || len(got) != len(want)-2 {
		t.Fatalf("From after an insert into a full chunk: %v...", got[:3])
	}
}

// TestSetEmpty: the zero Set lists nothing and deletes nothing.
func TestSetEmpty(t *testing.T) {
	var s Set
	if s.Delete("x") || s.Len() != 0 || len(slices.Collect(s.From("", true))) != 0 {
		t.Fatal("the zero Set is not empty")
	}
	s.Insert("a")
	s.Delete("a")
	if s.Len() != 0 || len(slices.Collect(s.From("", true))) != 0 {
		t.Fatal("a Set emptied again is not empty")
	}
	s.Insert("b")
	if got := slices.Collect(s.From("", true)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("after emptying and inserting: %v", got)
	}
}
