package store

import "time"

// The table keeps a map's keys in no order, and a Range reads them in
// order a page at a time: sorting the keys for every page would make a
// Range of n keys cost n²/page. So the first page of a Range sorts them
// once, and the rest follow that order: each Range in progress is a cursor
// of the sorted keys, found again by the map and the last key it returned.
// Keys written after the Range began may be missed, and deleted ones are
// skipped: a Range is not a snapshot (see sharedstate.Map.Range).

// cursor is a Range in progress.
type cursor struct {
	keys []string // the map's keys when the Range began, in order
	next int      // the first not yet returned
	used time.Time
}

// cursorKey finds a cursor again: its map, and the last key it returned.
type cursorKey struct{ mapName, last string }

// cursorIdle is how long a Range may wait between pages before its cursor
// is dropped; a later page then sorts the keys again.
const cursorIdle = 30 * time.Second

// rangeKeys returns the keys of a map after start (or from it, if
// inclusive), in order, for the page of a Range. If more follow the page,
// more keeps the cursor for the next page: the page used the first n keys,
// and returned last last.
func (s *Store) rangeKeys(mapName, start string, inclusive bool) (keys []string, more func(n int, last string)) {
	k := cursorKey{mapName, start}
	c := s.cursors[k]
	if c == nil || inclusive {
		c = &cursor{keys: s.keysAfter(mapName, start, inclusive)}
	} else {
		delete(s.cursors, k)
	}
	return c.keys[c.next:], func(n int, last string) {
		c.next += n
		c.used = s.mono()
		s.cursors[cursorKey{mapName, last}] = c
	}
}

// dropIdleCursors drops the cursors of Ranges that stopped or stalled.
func (s *Store) dropIdleCursors() {
	for k, c := range s.cursors {
		if s.mono().Sub(c.used) > cursorIdle {
			delete(s.cursors, k)
		}
	}
}
