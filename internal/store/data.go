package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate/internal/sorted"
	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/transport"
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

// TableName is the name of the table file of the state called name, in
// its directory.
func TableName(name string) string { return name + ".table" }

// txn returns the operation's transaction, opened if it is not yet.
func (s *Store) txn() *table.Tx {
	if s.tx == nil {
		s.tx = s.tab.Begin()
	}
	return s.tx
}

// commit publishes the open transaction, with the store's words, as far
// as the journal's records it holds in full (s.settled): a transaction
// that is not its operation's last (loading, expiring many entries) leaves
// the operation's records to replay. A table that cannot take it (its file
// cannot grow) makes the store refuse everything from then on: the journal
// has the operation, and a new owner rebuilds the table.
func (s *Store) commit() {
	if s.tabFile == nil {
		return // closed: the table is unmapped
	}
	s.prune()
	s.keepMeta()
	if s.tx == nil && s.settled == s.settledKept {
		return // nothing to publish
	}
	tx := s.txn()
	if s.settled != s.settledKept {
		tx.SetPosition(s.settled)
		s.settledKept = s.settled
	}
	s.tx = nil
	if err := tx.Commit(); err != nil && s.broken == nil {
		s.broken = fmt.Errorf("the table cannot grow: %w", err)
		if s.persist.onBroken != nil {
			s.persist.onBroken(s.broken)
		}
	}
}

// finish commits an operation that has ended: the table holds every record
// journaled so far.
func (s *Store) finish() {
	switch {
	case s.persist.locksOnly:
		// The journal lacks the data: no table is to be adopted.
		s.settled = table.Position{}
	case s.log != nil:
		s.settled = table.Position{Journal: s.log.Header().Salt, Offset: uint64(s.log.Size())}
	}
	s.commit()
}

// names makes the store know the names of its counters and maps, in
// order, once it needs them (List, Stats, a snapshot), reading them from
// the table's root: an owner that adopted the table did not (see
// namesKnown).
func (s *Store) names() {
	if s.namesKnown {
		return
	}
	for k := range s.txn().All(table.Root) {
		switch name := string(k[1:]); string(k[:1]) {
		case counterKeyPrefix:
			s.counterNames.Insert(name)
		case mapKeyPrefix:
			s.mapNames.Insert(name)
		}
	}
	s.namesKnown = true
}

// nameAdded and nameDropped keep set, the names of one kind, up to date
// once they are known (names).
func (s *Store) nameAdded(set *sorted.Set, name string) {
	if s.namesKnown {
		set.Insert(name)
	}
}

func (s *Store) nameDropped(set *sorted.Set, name string) {
	if s.namesKnown {
		set.Delete(name)
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

// The root's entries of counters and maps stay where they are while they
// exist (a counter changes in place, a map's namespace is in its value), so
// the store keeps them by name (s.counterAt, s.mapAt): an operation skips a
// lookup in the root.

// rootEntry returns the root's entry prefix+name, kept by name in at.
func (s *Store) rootEntry(at map[string]table.Entry, prefix, name string) (table.Entry, bool) {
	if e, ok := at[name]; ok {
		return e, true
	}
	e, ok := s.txn().Get(table.Root, prefix+name)
	if ok {
		at[name] = e
	}
	return e, ok
}

// counterEntry returns the root's entry of the counter called name.
func (s *Store) counterEntry(name string) (table.Entry, bool) {
	return s.rootEntry(s.counterAt, counterKeyPrefix, name)
}

// counter returns the counter called name.
func (s *Store) counter(name string) (int64, bool) {
	e, ok := s.counterEntry(name)
	if !ok {
		return 0, false
	}
	return int64(s.txn().Word(e, 0)), true
}

// setCounter sets a counter, which exists from then on.
func (s *Store) setCounter(name string, v int64) {
	tx := s.txn()
	if e, ok := s.counterEntry(name); ok {
		tx.SetWord(e, 0, uint64(v))
		return
	}
	s.nameAdded(&s.counterNames, name)
	s.counterAt[name], _, _ = tx.Put(table.Root, counterKeyPrefix+name, binary.NativeEndian.AppendUint64(nil, uint64(v)), 0, 0)
}

// deleteCounter removes a counter, and reports whether there was one.
func (s *Store) deleteCounter(name string) bool {
	if !s.txn().Delete(table.Root, counterKeyPrefix+name) {
		return false
	}
	s.nameDropped(&s.counterNames, name)
	delete(s.counterAt, name)
	return true
}

// mapSpace returns the namespace of the map called name, if it exists.
func (s *Store) mapSpace(name string) (table.Space, bool) {
	e, ok := s.mapEntry(name)
	return e.Space(), ok
}

// mapEntry returns the root's entry of the map called name, if it exists.
// Its value is the map's namespace, and then the number of its entries
// that have a deadline (expiringWord): a reader of the table counts the
// map's entries itself only if none may have expired unswept.
func (s *Store) mapEntry(name string) (table.Entry, bool) {
	return s.rootEntry(s.mapAt, mapKeyPrefix, name)
}

// dropMap removes the map called name, empty now, from the table.
func (s *Store) dropMap(name string) {
	me, _ := s.mapEntry(name)
	if s.txn().Word(me, table.SpaceWords+expiringWord) != 0 {
		s.markExpiring(name, false)
	}
	s.txn().DeleteSpace(mapKeyPrefix + name)
	s.nameDropped(&s.mapNames, name)
	delete(s.mapAt, name)
	delete(s.bounds, name)
}

// expiringWord is the word of a map's value, after its namespace, that
// counts its entries with a deadline.
const expiringWord = 0

// countExpiring adds n to the entries of the map in e that have a deadline,
// and marks the map as having some, or none (markExpiring), when the count
// leaves or reaches 0.
func (s *Store) countExpiring(mapName string, e table.Entry, n int64) {
	tx, at := s.txn(), table.SpaceWords+expiringWord
	was := tx.Word(e, at)
	is := uint64(int64(was) + n)
	tx.SetWord(e, at, is)
	if (was == 0) != (is == 0) {
		s.markExpiring(mapName, is != 0)
	}
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
	me, ok := s.mapEntry(mapName)
	if !ok {
		me = tx.NewSpace(mapKeyPrefix+mapName, expiringWord+1)
		s.nameAdded(&s.mapNames, mapName)
		s.mapAt[mapName] = me
	}
	_, old, existed := tx.Put(me.Space(), key, e.value, e.version, e.expiry)
	if existed {
		s.bytes += int64(len(e.value) - len(old.Value))
		s.countBytes(mapName, len(e.value)-len(old.Value))
	} else {
		s.entries++
		s.bytes += int64(len(mapName) + len(key) + len(e.value))
		s.countBytes(mapName, len(key)+len(e.value))
	}
	switch was, is := existed && old.Deadline != 0, e.expiry != 0; {
	case is && !was:
		s.countExpiring(mapName, me, 1)
	case was && !is:
		s.countExpiring(mapName, me, -1)
	}
}

// drop removes key from a map, which goes once it is empty, keeping the
// counts, and reports whether it was there. Its expiry is the caller's.
func (s *Store) drop(mapName, key string) (entry, bool) {
	me, ok := s.mapEntry(mapName)
	if !ok {
		return entry{}, false
	}
	tx, sp := s.txn(), me.Space()
	e, ok := tx.Get(sp, key)
	if !ok {
		return entry{}, false
	}
	if e.Deadline != 0 {
		s.countExpiring(mapName, me, -1)
	}
	tx.Delete(sp, key)
	s.entries--
	s.bytes -= int64(len(mapName) + len(key) + len(e.Value))
	s.countBytes(mapName, -len(key)-len(e.Value))
	if tx.Len(sp) == 0 {
		s.dropMap(mapName)
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

// claimTable makes the table owner's for the readers that it tells the
// table by (its client id), with the store's time as they find it.
func (s *Store) claimTable(owner uint64) {
	// The store's time is base plus the time since started (elapsed): as
	// an offset from the system's clock, exact.
	if err := s.tab.Claim(owner, s.base-table.MonotonicAt(s.started)); err != nil && s.broken == nil {
		s.broken = fmt.Errorf("the table cannot be claimed: %w", err)
	}
}

// retireTable tells the readers of the table name in dir, a last owner's,
// that it is not the owner's: they read through the new one from then on.
// A table that cannot be opened has no readers to tell (it is of another
// boot, or damaged: none read it).
func retireTable(dir *statedir.Dir, name string) {
	file, tab, err := table.OpenOwner(dir, name)
	if err != nil {
		return
	}
	tab.Retire()
	file.Close()
}

// nearDeadline is how close to its deadline an entry is answered by its
// owner alone: the processes' readings of the time differ by microseconds,
// so a reader that is sure an entry has not expired, or has, is sure for
// every process.
const nearDeadline = time.Millisecond

// ReadTable answers req from v, a view of the table that the store's owner
// writes, if req is a read that the table can answer alone: a counter's
// Get, a Load, a Len, a Range (in one page, however many entries). It reports false for anything else, and when the
// answer is the owner's to give: an entry near its deadline, the length of
// a map whose entries may have expired unswept, an invalid request, a
// table it cannot read now (err: table.ErrBusy, or table.ErrRetired once
// the owner no longer writes it).
func ReadTable(v *table.View, req *transport.Request) (resp transport.Response, ok bool, err error) {
	if status, _ := check(req); status != transport.StatusOK {
		return resp, false, nil // the owner says why
	}
	resp.ID = req.ID
	switch req.Op {
	case transport.OpGet:
		r, err := v.Get("", counterKeyPrefix+req.Name, nil)
		if err != nil || r.Found && len(r.Value) != 8 {
			return resp, false, err
		}
		if r.Found {
			resp.Int = int64(binary.NativeEndian.Uint64(r.Value))
		}
	case transport.OpLoad:
		r, err := v.Get(mapKeyPrefix+req.Name, req.Key, nil)
		if err != nil {
			return resp, false, err
		}
		if r.Found && r.Deadline != 0 {
			left := time.Duration(r.Deadline - v.Now())
			if left < nearDeadline {
				return resp, false, nil // expired, or about to: the owner says which
			}
			resp.TTL = left
		}
		resp.Found, resp.Value, resp.Version = r.Found, r.Value, r.Version
	case transport.OpLen:
		n, expiring, err := v.Count(mapKeyPrefix+req.Name, expiringWord)
		if err != nil || expiring > 0 {
			return resp, false, err
		}
		resp.Int = int64(n)
	case transport.OpRange:
		return rangeTable(v, req, resp)
	default:
		return resp, false, nil
	}
	return resp, true, nil
}

// guardTable retires the table, for the processes that read it, once its
// file is no longer in the state's directory (deleted, or replaced): a
// later owner could not find it to retire it, and its readers would go on
// reading it while that owner writes elsewhere. They ask the owner from
// then on.
func (s *Store) guardTable() {
	if s.tabFile == nil || s.tab.Retired() {
		return
	}
	if id, err := s.persist.dir.Stat(TableName(s.persist.name)); err == nil && id == s.tabFile.ID() {
		return
	}
	s.persist.logger.Warn("sharedstate: the state's table file was removed; processes read through the owner until the next one", "file", s.persist.dir.Join(TableName(s.persist.name)))
	if err := s.tab.Retire(); err != nil && s.broken == nil {
		s.broken = fmt.Errorf("the table cannot be retired: %w", err)
	}
}

// rangeTable answers a Range from the table: every entry after the start,
// in one page, each as it was when its part of the map was read. An entry
// near its deadline leaves the whole Range to the owner.
func rangeTable(v *table.View, req *transport.Request, resp transport.Response) (transport.Response, bool, error) {
	items, err := v.Scan(mapKeyPrefix + req.Name)
	if err != nil {
		return resp, false, err
	}
	now := v.Now()
	for _, it := range items {
		if k := string(it.Key); k < req.Key || k == req.Key && req.Int != transport.RangeInclusive {
			continue
		}
		e := transport.Entry{Key: string(it.Key), Value: it.Value, Version: it.Version}
		if it.Deadline != 0 {
			left := time.Duration(it.Deadline - now)
			if left < nearDeadline && left > -nearDeadline {
				return resp, false, nil
			}
			if left <= 0 {
				continue // expired, not yet swept
			}
			e.TTL = left
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, true, nil
}
