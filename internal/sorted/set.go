// Package sorted keeps a set of strings in order, for the owner to list a
// map's keys, or a state's names, a page at a time: finding where a page
// starts costs O(log n), and each key after it O(1), at any size, where
// sorting the keys for every page cost O(n log n).
//
// A Set is a sorted list of chunks of at most chunkMax sorted keys: a
// two-level B+tree, as flat as a sorted slice to iterate, with inserts and
// deletes that move at most a chunk's keys (and, when a chunk splits or
// empties, one pointer per chunk).
package sorted

import (
	"iter"
	"slices"
	"sort"
)

// chunkMax is the most keys a chunk holds: inserts move up to this many
// string headers, and splits move one pointer per chunkMax/2 keys.
const chunkMax = 256

// Set is a set of strings kept in order. Its zero value is empty.
type Set struct {
	chunks []*chunk // in order; none empty
	n      int
}

type chunk struct{ keys []string }

// Len returns the number of keys.
func (s *Set) Len() int { return s.n }

// find returns the index of the chunk that holds k, or would: the last
// whose first key is not after k (the first chunk for a k before all).
func (s *Set) find(k string) int {
	i := sort.Search(len(s.chunks), func(i int) bool { return s.chunks[i].keys[0] > k })
	return max(i-1, 0)
}

// Insert adds k, and reports whether it was missing.
func (s *Set) Insert(k string) bool {
	if len(s.chunks) == 0 {
		s.chunks = []*chunk{{keys: []string{k}}}
		s.n = 1
		return true
	}
	i := s.find(k)
	c := s.chunks[i]
	at, found := slices.BinarySearch(c.keys, k)
	if found {
		return false
	}
	c.keys = slices.Insert(c.keys, at, k)
	s.n++
	if len(c.keys) > chunkMax {
		half := len(c.keys) / 2
		next := &chunk{keys: slices.Clone(c.keys[half:])}
		clear(c.keys[half:]) // drop the references the new chunk holds
		c.keys = c.keys[:half]
		s.chunks = slices.Insert(s.chunks, i+1, next)
	}
	return true
}

// Append adds k, which must come after every key in s: building a Set from
// keys in order costs O(1) a key.
func (s *Set) Append(k string) {
	if n := len(s.chunks); n > 0 {
		last := s.chunks[n-1]
		switch {
		case last.keys[len(last.keys)-1] >= k: // not in order after all
			s.Insert(k)
			return
		case len(last.keys) < chunkMax:
			last.keys = append(last.keys, k)
			s.n++
			return
		}
	}
	s.chunks = append(s.chunks, &chunk{keys: append(make([]string, 0, chunkMax), k)})
	s.n++
}

// Delete removes k, and reports whether it was there.
func (s *Set) Delete(k string) bool {
	if len(s.chunks) == 0 {
		return false
	}
	i := s.find(k)
	c := s.chunks[i]
	at, found := slices.BinarySearch(c.keys, k)
	if !found {
		return false
	}
	c.keys = slices.Delete(c.keys, at, at+1)
	s.n--
	if len(c.keys) == 0 {
		s.chunks = slices.Delete(s.chunks, i, i+1)
	}
	return true
}

// From returns the keys from start on, in order: those after it, and
// start itself if inclusive. The Set must not change while the sequence
// is ranged over.
func (s *Set) From(start string, inclusive bool) iter.Seq[string] {
	return func(yield func(string) bool) {
		if len(s.chunks) == 0 {
			return
		}
		i := s.find(start)
		at, found := slices.BinarySearch(s.chunks[i].keys, start)
		if found && !inclusive {
			at++
		}
		for ; i < len(s.chunks); i, at = i+1, 0 {
			for _, k := range s.chunks[i].keys[at:] {
				if !yield(k) {
					return
				}
			}
		}
	}
}
