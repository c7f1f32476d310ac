package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate/internal/table"
)

// The store's counters and the entries of its maps are kept in a table
// (internal/table): outside the Go heap, in a file that every process of
// the state can map. In the table's root, a counter is the key "c"+name,
// an 8-byte value; a map is the key "m"+name, whose value is the namespace
// of its entries: key → value, version, expiry.
//
// Every operation changes the table in one transaction, opened by the
// first access to the table (txn) and published by commit before the
// operation's answer is sent.

const (
	counterKeyPrefix = "c"
	mapKeyPrefix     = "m"
)

// TableName is the name of the store's table file in its directory.
func (s *Store) TableName() string { return tableName(s.persist.name) }

// txn returns the operation's transaction, opened if it is not yet.
func (s *Store) txn() *table.Tx {
	if s.tx == nil {
		s.tx = s.tab.Begin(s.ops)
	}
	return s.tx
}

// commit publishes the open transaction, if any. A table that cannot take
// it (its file cannot grow) makes the store refuse everything from then
// on: the journal has the operation, and a new owner rebuilds the table.
func (s *Store) commit() {
	if s.tx == nil {
		return
	}
	tx := s.tx
	s.tx = nil
	if err := tx.Commit(); err != nil && s.broken == nil {
		s.broken = fmt.Errorf("the table cannot grow: %w", err)
		if s.persist.onBroken != nil {
			s.persist.onBroken(s.broken)
		}
	}
}

// entry is an entry of a map as the store reads it. Its value is the
// table's bytes, valid while the store is locked: copy it to keep it.
type entry struct {
	value   []byte
	version uint64
	expiry  int64 // the store's time it expires at; 0 if it never does
}

// left returns the time e has left at now, or 0 if it never expires.
func (e entry) left(now int64) time.Duration {
	if e.expiry == 0 {
		return 0
	}
	return time.Duration(max(e.expiry-now, 1)) // not expired yet: 0 would read as never
}

// counter returns the counter called name.
func (s *Store) counter(name string) (int64, bool) {
	e, ok := s.txn().Get(table.Root, counterKeyPrefix+name)
	if !ok {
		return 0, false
	}
	return int64(binary.NativeEndian.Uint64(e.Value)), true
}

// setCounter sets a counter, which exists from then on.
func (s *Store) setCounter(name string, v int64) {
	tx := s.txn()
	if e, ok := tx.Get(table.Root, counterKeyPrefix+name); ok {
		tx.SetWord(e, 0, uint64(v))
		return
	}
	s.counterNames.Insert(name)
	tx.Put(table.Root, counterKeyPrefix+name, binary.NativeEndian.AppendUint64(nil, uint64(v)), 0, 0)
}

// deleteCounter removes a counter, and reports whether there was one.
func (s *Store) deleteCounter(name string) bool {
	if !s.txn().Delete(table.Root, counterKeyPrefix+name) {
		return false
	}
	s.counterNames.Delete(name)
	return true
}

// mapSpace returns the namespace of the map called name, if it exists.
func (s *Store) mapSpace(name string) (table.Space, bool) {
	e, ok := s.txn().Get(table.Root, mapKeyPrefix+name)
	return e.Space(), ok
}

// mapLen returns the number of entries of a map.
func (s *Store) mapLen(name string) int {
	sp, ok := s.mapSpace(name)
	if !ok {
		return 0
	}
	return s.txn().Len(sp)
}

// entry returns the entry for key in a map.
func (s *Store) entry(mapName, key string) (entry, bool) {
	sp, ok := s.mapSpace(mapName)
	if !ok {
		return entry{}, false
	}
	e, ok := s.txn().Get(sp, key)
	return entry{value: e.Value, version: e.Version, expiry: e.Deadline}, ok
}

// put stores e for key in the map called mapName, made if it is missing,
// keeping the counts.
func (s *Store) put(mapName, key string, e entry) {
	tx := s.txn()
	sp, ok := s.mapSpace(mapName)
	if !ok {
		sp = tx.NewSpace(mapKeyPrefix+mapName, 0).Space()
		s.mapNames.Insert(mapName)
	}
	if old, ok := tx.Get(sp, key); ok {
		s.bytes += int64(len(e.value) - len(old.Value))
	} else {
		s.entries++
		s.bytes += int64(len(mapName) + len(key) + len(e.value))
	}
	tx.Put(sp, key, e.value, e.version, e.expiry)
}

// drop removes key from a map, which goes once it is empty, keeping the
// counts, and reports whether it was there. Its expiry is the caller's.
func (s *Store) drop(mapName, key string) (entry, bool) {
	sp, ok := s.mapSpace(mapName)
	if !ok {
		return entry{}, false
	}
	tx := s.txn()
	e, ok := tx.Get(sp, key)
	if !ok {
		return entry{}, false
	}
	tx.Delete(sp, key)
	s.entries--
	s.bytes -= int64(len(mapName) + len(key) + len(e.Value))
	if tx.Len(sp) == 0 {
		tx.DeleteSpace(mapKeyPrefix + mapName)
		s.mapNames.Delete(mapName)
	}
	return entry{value: e.Value, version: e.Version, expiry: e.Deadline}, true
}

// keysAfter returns the keys of a map after start (or from it, if
// inclusive), in order: the table keeps no order, so a page of a Range
// sorts what follows its start.
func (s *Store) keysAfter(mapName, start string, inclusive bool) []string {
	sp, ok := s.mapSpace(mapName)
	if !ok {
		return nil
	}
	var keys []string
	for k := range s.txn().All(sp) {
		if string(k) > start || inclusive && string(k) == start {
			keys = append(keys, string(k))
		}
	}
	slices.Sort(keys)
	return keys
}
