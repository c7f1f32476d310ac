package store

import (
	"bytes"
	"container/heap"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/internal/journal"
	"github.com/sharedstate/sharedstate/internal/sorted"
	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/transport"
)

// Limits on names and keys, checked by the owner. Values are bounded by the
// frame size.
const (
	maxNameLen = 1 << 10
	maxKeyLen  = 64 << 10
)

// store is the owner's copy of the state: every counter, map and lock of one
// named state, in memory, changed only by apply. Values are opaque bytes: the
// owner never decodes them.
//
// Every change is journaled before apply returns (unless the state is
// memory-only), and replaying the journal on the latest snapshot rebuilds the
// store exactly: apply depends only on the store, the request and the time,
// which the journal records too.
type Store struct {
	mu    sync.Mutex
	rev   uint64 // the last version given to an entry
	clock int64  // unix nanoseconds of the latest operation; never goes back
	// tab holds the counters and the maps' entries (see data.go); tx is
	// the transaction of the operation being applied, once it has one.
	tab     *table.Table
	tabFile *table.File // unmapped on Close
	// counterAt and mapAt are the root's entries of counters and maps, by
	// name (data.go): their values' words are read through tx.
	counterAt, mapAt map[string]table.Entry
	// keptAt and metaAt are the entries of the table's namespace of the
	// store's own state and of its words (kept.go).
	keptAt, metaAt table.Entry
	metaKept       [metaWords]uint64 // metaAt's words, as committed
	keepBuf        []byte
	keyBuf         []byte // key's (kept.go)
	tx             *table.Tx
	// settled is the journal's position up to which the table holds every
	// record's effects: what a transaction cut short of its operation's end
	// publishes (commit), and the end of the records once it has ended
	// (finish).
	settled table.Position
	// settledKept is the position the table has, as committed.
	settledKept table.Position
	locks       map[string]*lockState
	claims      map[string]entryKey // the entry each claim's Computes wait for, by the claim's name
	// The names of each kind in order, for List. A new owner that adopts
	// the table learns the names of counters and maps only when it needs
	// them (names): until then namesKnown is false, and they are not kept.
	counterNames, mapNames, lockNames sorted.Set
	namesKnown                        bool
	// entries and bytes count what Stats reports, as they change.
	entries  int
	bytes    int64
	expiries expiryHeap
	expiring map[entryKey]*expiryRef // the entries in expiries
	cursors  map[cursorKey]*cursor   // the Ranges in progress (ranges.go)
	// The store's time runs from base, the wall clock's time when the
	// term began or later, at the pace of the monotonic clock since
	// started: a wall clock stepped, or an owner whose clock was ahead,
	// shifts it once, and expiries and lock graces then follow real time.
	wall    func() time.Time
	mono    func() time.Time // time.Now, whose monotonic reading paces the store; tests move it
	base    int64
	started time.Time

	// Exactly once: the saved answers to each client's writes, until the
	// client acknowledges them (Request.Ack); stale are those acknowledged
	// and still in the table (prune).
	clients map[uint64]*clientTable
	stale   []answerRef
	// connected counts each client's sessions: usually one, two while a
	// client reconnects before the owner has seen its old connection end.
	connected map[uint64]int
	// procs holds the Process of each client that holds a lock or has
	// answers saved, as it last connected: once that Process has exited,
	// collect drops what the owner keeps for it.
	procs map[uint64]Process
	grace time.Duration // see WithLockGrace
	// owner is the client id of the Process owning the state in the
	// latest term the journal records; terms counts the terms.
	owner uint64
	terms uint64
	ops   uint64 // operations applied in this process's term

	log *journal.Journal // nil while replaying, or for an observer
	// syncer is log, with DurabilityDisk, from recovery on: read without
	// the store's lock, it is never cleared.
	syncer *journal.Journal
	// changed, if set, is told of every entry written or removed (for
	// Map.Watch). It is called with the store locked and must not block.
	Changed func(mapName, key string, change Change)
	persist persistence
	// unchecked are the journal's records that adopt trusted (GuardFiles).
	unchecked uncheckedRecords
	// snapshotUnchecked: adopt read the snapshot's header alone
	// (CheckSnapshot).
	snapshotUnchecked bool
	// compacting is the compaction in progress, if any (snapshot.go);
	// compactions counts those whose goroutines have not ended.
	compacting  *compaction
	compactions sync.WaitGroup
	// afterSnapshot, set by tests, is called once a compaction's snapshot
	// is in place, before the journal is replaced.
	afterSnapshot func()
	// closing: Close has begun, and no compaction starts.
	closing bool
	adopted bool   // Recover adopted the table
	broken  error  // a journal write failed: serve nothing more
	scratch []byte // record buffer

	// bounds are the maps that writes bounded (bounds.go); seed hashes
	// their keys; victims is evict's buffer.
	bounds    map[string]*bound
	seed      maphash.Seed
	victims   []string
	evictions uint64
}

// clientTable holds the answers to one client's writes that it may not have
// received yet.
type clientTable struct {
	ack     uint64 // the client has every answer below this request id (0: not known yet)
	results map[uint64]transport.Response
	// order lists the ids of results as saved, which is nearly ascending:
	// acknowledging pops its front instead of scanning the map, which cost a
	// third of the owner's time with many calls in flight.
	order []uint64
	// ring holds the id of the answer kept in each of the client's ring
	// slots in the table (see addAnswer); 0: none.
	ring [answerRing]uint64
}

func newClientTable() *clientTable {
	return &clientTable{results: make(map[uint64]transport.Response)}
}

// Session is one client Process as the owner sees it.
type Session struct {
	id  uint64
	pid int
	// deliver sends the answer to a request that apply parked (a Lock that
	// had to wait). It is called with the store locked and must not block.
	deliver func(transport.Response)
	// saveResults: keep answers for a retry. The owner's own Process gets
	// its answers in-Process and never needs one.
	saveResults bool
	parked      map[uint64]string // its waiting Lock requests: id → lock name
}

func newStore(file *table.File, tab *table.Table) *Store {
	s := &Store{
		tab:       tab,
		tabFile:   file,
		expiring:  make(map[entryKey]*expiryRef),
		cursors:   make(map[cursorKey]*cursor),
		counterAt: make(map[string]table.Entry),
		mapAt:     make(map[string]table.Entry),
		locks:     make(map[string]*lockState),
		claims:    make(map[string]entryKey),
		clients:   make(map[uint64]*clientTable),
		connected: make(map[uint64]int),
		procs:     make(map[uint64]Process),
		bounds:    make(map[string]*bound),
		seed:      maphash.MakeSeed(),
		wall:      time.Now,
		mono:      time.Now,
		// A new table has no names to learn.
		namesKnown: true,
	}
	s.startClock()
	return s
}

// ID is the session's client id.
func (sess *Session) ID() uint64 { return sess.id }

// NewSession returns the session of client id, process pid, connected to
// the owner. deliver gets the answers that Apply parks.
func (s *Store) NewSession(id uint64, pid int, deliver func(transport.Response)) *Session {
	return &Session{id: id, pid: pid, deliver: deliver, saveResults: true, parked: make(map[uint64]string)}
}

// NewOwnSession returns the session of the owner's own process, which gets
// its answers in-process and so never retries: none are saved for it.
func (s *Store) NewOwnSession(id uint64, pid int, deliver func(transport.Response)) *Session {
	sess := s.NewSession(id, pid, deliver)
	sess.saveResults = false
	return sess
}

// apply performs req for sess. If the answer must wait (a Lock on a held
// lock), apply returns parked, and sess.deliver gets the answer later.
func (s *Store) Apply(sess *Session, req *transport.Request) (resp transport.Response, parked bool) {
	resp.ID = req.ID
	if status, msg := check(req); status != transport.StatusOK {
		return fail(resp, status, msg)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return fail(resp, transport.StatusShuttingDown, "the owner cannot journal: "+s.broken.Error())
	}
	defer s.finish() // before the answer leaves
	now := s.timeFor(req)
	dedup := IsDeduplicated(req)
	journaled := s.log != nil && req.Op.Mutates() && (!s.persist.locksOnly || isLockOp(req.Op))
	if !(journaled && dedup) {
		// No record of this request will carry its time, and the
		// writes after it may record none (timeFor): journal what expires
		// now, as Sweep does, or replay would find these entries alive.
		s.expireJournaled(now)
	}
	s.expire(now)
	s.ops++
	if dedup {
		if saved, ok := s.duplicate(sess, req); ok {
			return saved, false
		}
	}
	if req.Op.Mutates() && !isLockOp(req.Op) {
		if err := s.tab.Reserve(uint64(len(req.Name) + len(req.Key) + len(req.Value) + 64)); err != nil {
			return fail(resp, transport.StatusJournalFull, err.Error())
		}
	}
	if journaled {
		// Room first, so that a full disk refuses the write before it
		// happens. A Lock journals only its grant, a small record.
		var rec []byte
		if dedup {
			rec = s.requestRecord(sess.id, now, req)
		}
		if err := s.log.Reserve(len(rec) + len(req.Name)); err != nil {
			return fail(resp, transport.StatusJournalFull, err.Error())
		}
		if rec != nil {
			s.journal(rec)
		}
	}
	resp, parked = s.exec(sess, req, now)
	if resp.Status == transport.StatusOK && !parked {
		s.bounded(req, resp, now)
	}
	if dedup {
		s.save(sess, req, resp)
		if s.log != nil && s.log.Size() > s.persist.compactAt {
			s.compact()
		}
	}
	return resp, parked
}

// check returns why req is refused before anything is done for it, or
// StatusOK.
func check(req *transport.Request) (transport.Status, string) {
	switch {
	case req.Name == "" && req.Op.Named():
		return transport.StatusBadRequest, "empty name"
	case len(req.Name) > maxNameLen:
		return transport.StatusTooLarge, "name longer than 1 KiB"
	case len(req.Key) > maxKeyLen:
		return transport.StatusTooLarge, "key longer than 64 KiB"
	case req.TTL < 0:
		return transport.StatusBadRequest, "negative TTL"
	case !req.Op.Known():
		return transport.StatusBadRequest, "unknown op " + req.Op.String()
	case req.Op == transport.OpLock && strings.HasPrefix(req.Name, transport.ClaimPrefix):
		return transport.StatusBadRequest, "lock names that start with a NUL byte are the claims of Computes: Compute waits for them, TryLock takes one to refresh an entry"
	}
	return transport.StatusOK, ""
}

// isDeduplicated reports whether req is a write that is journaled as it is
// and answered from the saved results when retried. Lock, TryLock and
// Compute are not: the lock's state recognises their retries, and only
// their grants change the state. Nor is Leave, which journals what it
// changes, and may be repeated.
func IsDeduplicated(req *transport.Request) bool {
	switch req.Op {
	case transport.OpLock, transport.OpTryLock, transport.OpCompute, transport.OpLeave:
		return false
	}
	return req.Op.Mutates()
}

// isLockOp reports whether op concerns locks, which a memory-only state
// journals too.
func isLockOp(op transport.Op) bool {
	switch op {
	case transport.OpLock, transport.OpTryLock, transport.OpUnlock, transport.OpLockHeld, transport.OpAbandon, transport.OpCompute:
		return true
	}
	return false
}

// duplicate returns the saved answer if req was applied before: the client
// retried it with a new owner, not knowing whether the old one applied it.
func (s *Store) duplicate(sess *Session, req *transport.Request) (transport.Response, bool) {
	if req.ID == 0 || !IsDeduplicated(req) {
		return transport.Response{}, false
	}
	t := s.clients[sess.id]
	if t == nil {
		return transport.Response{}, false
	}
	s.acknowledge(sess.id, t, req.Ack)
	resp, ok := t.results[req.ID]
	return resp, ok
}

// save keeps the answer to a deduplicated write (see isDeduplicated) for a
// retry, until the client acks it.
func (s *Store) save(sess *Session, req *transport.Request, resp transport.Response) {
	if !sess.saveResults || req.ID == 0 {
		return
	}
	t := s.clients[sess.id]
	if t == nil {
		t = newClientTable()
		s.clients[sess.id] = t
	}
	s.acknowledge(sess.id, t, req.Ack)
	if req.ID >= t.ack {
		s.addAnswer(sess.id, t, req.ID, resp)
	}
}

// timeFor returns the time to apply req at. Reading the clock costs as much
// as the rest of a counter's Add on some machines, so it is read only when
// time matters: an entry may expire, or req sets a TTL. Otherwise the time is
// 0, which the journal records too, so that replay sees the same.
func (s *Store) timeFor(req *transport.Request) int64 {
	if len(s.expiries) == 0 && req.TTL == 0 && req.Op != transport.OpTake {
		return 0
	}
	return s.tick(s.elapsed())
}

// tick advances the store's clock to now, or keeps it if now is earlier.
func (s *Store) tick(now int64) int64 {
	s.clock = max(s.clock, now)
	return s.clock
}

// startClock starts the store's time from the wall clock, or from the
// latest time the journal recorded if that is later: a new owner's clock
// may be behind its predecessor's. Until the first call, elapsed counts
// from the time the store was made.
func (s *Store) startClock() {
	s.base, s.started = max(s.wall().UnixNano(), s.clock), s.mono()
}

// elapsed returns the store's time now (see startClock).
func (s *Store) elapsed() int64 { return s.base + int64(s.mono().Sub(s.started)) }

// exec performs req; s.mu is held.
func (s *Store) exec(sess *Session, req *transport.Request, now int64) (resp transport.Response, parked bool) {
	resp.ID = req.ID
	switch req.Op {
	case transport.OpAdd:
		v, _ := s.counter(req.Name)
		resp.Int = v + req.Int
		s.setCounter(req.Name, resp.Int)
	case transport.OpGet:
		resp.Int, _ = s.counter(req.Name)
	case transport.OpDeleteCounter:
		resp.Found = s.deleteCounter(req.Name)
	case transport.OpSet:
		s.setCounter(req.Name, req.Int)
	case transport.OpSwap:
		resp.Int, _ = s.counter(req.Name)
		s.setCounter(req.Name, req.Int)
	case transport.OpCAS:
		if v, _ := s.counter(req.Name); v == req.OldInt {
			resp.Found = true
			s.setCounter(req.Name, req.Int)
		}
	case transport.OpLoad:
		if e, ok := s.entry(req.Name, req.Key); ok {
			resp.Found, resp.Value, resp.Version, resp.TTL = true, bytes.Clone(e.value), e.version, e.left(now)
		}
	case transport.OpStore:
		resp.Version = s.set(req, now)
		if req.Version != 0 {
			s.endClaim(sess, req, now)
		}
	case transport.OpMapAdd:
		return s.mapAdd(req, resp, now)
	case transport.OpTake:
		return s.take(req, resp, now)
	case transport.OpLoadOrStore:
		if e, ok := s.entry(req.Name, req.Key); ok {
			resp.Found, resp.Value, resp.Version = true, bytes.Clone(e.value), e.version
		} else {
			resp.Version = s.set(req, now)
		}
	case transport.OpLoadAndDelete:
		if e, ok := s.entry(req.Name, req.Key); ok {
			resp.Found, resp.Value = true, bytes.Clone(e.value)
			s.remove(req.Name, req.Key)
		}
	case transport.OpDelete:
		s.remove(req.Name, req.Key)
	case transport.OpMapSwap:
		if e, ok := s.entry(req.Name, req.Key); ok {
			resp.Found, resp.Value = true, bytes.Clone(e.value)
		}
		resp.Version = s.set(req, now)
	case transport.OpCompareAndSwap:
		if e, ok := s.entry(req.Name, req.Key); ok && bytes.Equal(e.value, req.Old) {
			resp.Found = true
			resp.Version = s.set(req, now)
		}
	case transport.OpCompareAndDelete:
		if e, ok := s.entry(req.Name, req.Key); ok && bytes.Equal(e.value, req.Old) {
			resp.Found = true
			s.remove(req.Name, req.Key)
		}
	case transport.OpStoreIfVersion:
		// On a conflict the answer carries the current entry, so that the
		// caller's next attempt needs no extra Load.
		e, ok := s.entry(req.Name, req.Key)
		current := e.version // 0 if absent
		if current == req.Version {
			resp.Found = true
			resp.Version = s.set(req, now)
		} else if ok {
			resp.Value, resp.Version = bytes.Clone(e.value), e.version
		}
	case transport.OpLen:
		resp.Int = int64(s.mapLen(req.Name))
	case transport.OpClear:
		s.clearMap(req.Name)
	case transport.OpRange:
		resp.Entries, resp.Found = s.page(req.Name, req.Key, req.Int == transport.RangeInclusive, int(req.Limit), now)
	case transport.OpList:
		resp.Entries, resp.Found = s.list(req.Int, req.Key, int(req.Limit))
	case transport.OpStats:
		resp.Stats = s.stats()
	case transport.OpLock, transport.OpTryLock, transport.OpUnlock, transport.OpLockHeld, transport.OpAbandon, transport.OpCompute: // isLockOp
		return s.applyLock(sess, req, resp, now)
	case transport.OpTouch:
		return s.touch(req, resp)
	case transport.OpLeave:
		s.withdraw(sess)
		s.releaseHeld(sess.id)
		s.forget(sess.id)
	default:
		return fail(resp, transport.StatusBadRequest, "unknown op "+req.Op.String())
	}
	return resp, false
}

func fail(resp transport.Response, s transport.Status, msg string) (transport.Response, bool) {
	resp.Status, resp.Msg = s, msg
	return resp, false
}

// set writes req's key and value with its TTL and returns the new version.
// With KeepTTL an existing entry keeps its expiry, or lack of one.
func (s *Store) set(req *transport.Request, now int64) uint64 {
	old, exists := s.entry(req.Name, req.Key)
	s.rev++
	e := entry{value: req.Value, version: s.rev, expiry: old.expiry}
	switch {
	case req.KeepTTL && exists:
	case req.TTL > 0:
		e.expiry = expiryAt(now, req.TTL)
	default:
		e.expiry = 0
	}
	s.put(req.Name, req.Key, e)
	s.setExpiry(req.Name, req.Key, e.expiry)
	if s.Changed != nil {
		s.Changed(req.Name, req.Key, Written)
	}
	return s.rev
}

// mapAdd adds req.Int to the integer an entry holds, or makes the entry
// with it (and req.TTL) if there is none; an existing entry keeps its
// expiry, as Redis's INCRBY does.
func (s *Store) mapAdd(req *transport.Request, resp transport.Response, now int64) (transport.Response, bool) {
	n := req.Int
	if e, ok := s.entry(req.Name, req.Key); ok {
		v, isInt := MsgpackInt(e.value)
		if !isInt {
			return fail(resp, transport.StatusWrongType, "the entry holds no integer")
		}
		if n > 0 && v > math.MaxInt64-n || n < 0 && v < math.MinInt64-n {
			return fail(resp, transport.StatusBadRequest, fmt.Sprintf("%d + %d overflows an int64", v, n))
		}
		n += v
	}
	w := *req
	w.Value, w.KeepTTL = AppendMsgpackInt(nil, n), true
	resp.Int, resp.Version = n, s.set(&w, now)
	e, _ := s.entry(req.Name, req.Key)
	resp.TTL = e.left(now)
	return resp, false
}

// take is the generic cell rate algorithm (GCRA), a token bucket kept as
// one time per key: the theoretical arrival time (TAT) of the next event,
// in the store's time, as an msgpack integer in the entry, which expires
// when the bucket is full again. The bucket gains a token every req.Int
// nanoseconds and holds req.OldInt nanoseconds' worth (its capacity times
// the interval); req.Limit events take that many tokens. An event is
// allowed if, with it, the TAT is no further ahead of now than the
// capacity. The answer says whether (Found), else how long to wait (Int),
// and how long until the bucket is full (TTL).
func (s *Store) take(req *transport.Request, resp transport.Response, now int64) (transport.Response, bool) {
	interval, capacity, n := req.Int, req.OldInt, int64(max(req.Limit, 1))
	if interval <= 0 || capacity < interval || n > capacity/interval {
		return fail(resp, transport.StatusBadRequest, "a bucket needs a positive interval, a capacity of at least one interval, and no more events than it holds")
	}
	tat := now
	if e, ok := s.entry(req.Name, req.Key); ok {
		v, isInt := MsgpackInt(e.value)
		if !isInt {
			return fail(resp, transport.StatusWrongType, "the entry holds no time")
		}
		tat = max(tat, v)
	}
	next := tat + n*interval
	if wait := next - capacity - now; wait > 0 {
		resp.Int, resp.TTL = wait, time.Duration(tat-now)
		return resp, false
	}
	w := *req
	w.Value, w.TTL, w.KeepTTL = AppendMsgpackInt(nil, next), time.Duration(next-now), false
	s.set(&w, now)
	resp.Found, resp.TTL = true, time.Duration(next-now)
	return resp, false
}

// expiryAt is ttl after now, or the last instant the clock can count (the
// year 2262) if that is later.
func expiryAt(now int64, ttl time.Duration) int64 {
	if int64(ttl) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

func (s *Store) remove(mapName, key string) { s.removeAs(mapName, key, Deleted) }

// removeAs removes key from a map, telling its watchers why.
func (s *Store) removeAs(mapName, key string, why Change) {
	if _, ok := s.drop(mapName, key); !ok {
		return
	}
	s.setExpiry(mapName, key, 0)
	if s.Changed != nil {
		s.Changed(mapName, key, why)
	}
}

// clearMap removes every entry of a map, in one transaction: all at once
// for every process that reads the table.
func (s *Store) clearMap(mapName string) {
	sp, ok := s.mapSpace(mapName)
	if !ok {
		return
	}
	tx := s.txn()
	var keys []string
	for k, e := range tx.All(sp) {
		s.entries--
		s.bytes -= int64(len(mapName) + len(k) + len(e.Value))
		keys = append(keys, string(k))
	}
	s.dropMap(mapName)
	for _, k := range keys {
		s.setExpiry(mapName, k, 0)
		if s.Changed != nil {
			s.Changed(mapName, k, Deleted)
		}
	}
}

// rangeBudget bounds the bytes of one Range page, well under any frame cap.
const rangeBudget = 1 << 20

// page returns up to limit entries (no limit if limit <= 0) of a map with
// keys after start (or from it, if inclusive), in key order, and whether more
// follow. A page holds at least one entry if any remain.
func (s *Store) page(mapName, start string, inclusive bool, limit int, now int64) ([]transport.Entry, bool) {
	keys, more := s.rangeKeys(mapName, start, inclusive)
	var out []transport.Entry
	size := 0
	for i, k := range keys {
		e, ok := s.entry(mapName, k)
		if !ok {
			continue // deleted since the Range began
		}
		if len(out) == limit && limit > 0 || (len(out) > 0 && size+len(k)+len(e.value) > rangeBudget) {
			more(i, out[len(out)-1].Key)
			return out, true
		}
		size += len(k) + len(e.value)
		out = append(out, transport.Entry{Key: k, Value: bytes.Clone(e.value), Version: e.version, TTL: e.left(now)})
	}
	return out, false
}

// list returns up to limit names of one kind after start, in order, each
// with a size (a counter's value, a map's length, a lock's holder: 0 if
// free), and whether more follow. The holders kind gives each lock's latest
// token, and for a held lock the holder's Process id and when it got the
// lock (see lockInfo).
func (s *Store) list(kind int64, start string, limit int) ([]transport.Entry, bool) {
	var names *sorted.Set
	var entry func(name string) transport.Entry
	size := func(f func(string) uint64) func(string) transport.Entry {
		return func(n string) transport.Entry { return transport.Entry{Key: n, Version: f(n)} }
	}
	switch kind {
	case transport.ListCounters:
		names, entry = &s.counterNames, size(func(n string) uint64 { v, _ := s.counter(n); return uint64(v) })
	case transport.ListMaps:
		names, entry = &s.mapNames, size(func(n string) uint64 { return uint64(s.mapLen(n)) })
	case transport.ListLocks:
		names, entry = &s.lockNames, size(func(n string) uint64 { return s.locks[n].holder })
	case transport.ListHolders:
		names, entry = &s.lockNames, s.lockEntry
	default:
		return nil, false
	}
	s.names()
	var out []transport.Entry
	for name := range names.From(start, false) {
		if names == &s.lockNames && strings.HasPrefix(name, transport.ClaimPrefix) {
			continue // LoadOrCompute's claim of an entry, not a lock of the user's
		}
		if len(out) == limit && limit > 0 {
			return out, true
		}
		out = append(out, entry(name))
	}
	return out, false
}

// stats describes the store, as entries of a Stats response.
func (s *Store) stats() *transport.Stats {
	s.names()
	st := &transport.Stats{Counters: int64(s.counterNames.Len()), Maps: int64(s.mapNames.Len()), Entries: int64(s.entries),
		Bytes: s.bytes, Locks: int64(len(s.locks)), Ops: s.ops, Terms: s.terms, Evictions: s.evictions}
	if s.log != nil {
		st.JournalBytes = int64(s.log.Size())
	}
	for _, t := range s.clients {
		st.SavedAnswers += int64(len(t.results))
	}
	return st
}

// expireJournaled removes every entry whose time has come, and journals
// that it did: operations after it may record no time (timeFor), and replay
// must expire the same entries before them.
func (s *Store) expireJournaled(now int64) {
	if len(s.expiries) == 0 || s.expiries[0].at > now {
		return
	}
	if !s.persist.locksOnly {
		s.journal(expireRecord(s.scratch[:0], now))
	}
	s.expire(now)
}

// expire removes every entry whose time has come. Running it before each
// operation makes expiry exact; sweep runs it when no operation comes.
func (s *Store) expire(now int64) {
	for n := 1; len(s.expiries) > 0 && s.expiries[0].at <= now; n++ {
		ref := s.expiries[0]
		s.remove(ref.mapName, ref.key)
		if n%removalsPerTx == 0 {
			s.commit() // a transaction holds only so many changes
		}
	}
}

// removalsPerTx bounds the entries one transaction removes: each changes a
// slot, and a transaction holds a few hundred changes.
const removalsPerTx = 100

// setExpiry makes the entry of key in a map expire at (0: never), in the
// expiry heap.
func (s *Store) setExpiry(mapName, key string, at int64) {
	k := entryKey{mapName, key}
	ref := s.expiring[k]
	switch {
	case at == 0 && ref != nil:
		heap.Remove(&s.expiries, ref.index)
		delete(s.expiring, k)
	case at == 0:
	case ref != nil:
		ref.at = at
		heap.Fix(&s.expiries, ref.index)
	default:
		ref = &expiryRef{at: at, mapName: mapName, key: key}
		heap.Push(&s.expiries, ref)
		s.expiring[k] = ref
	}
}

// entryKey names an entry of a map.
type entryKey struct{ mapName, key string }

// sweep expires entries and lock graces when no operation does it.
func (s *Store) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return
	}
	defer s.finish()
	now := s.tick(s.elapsed())
	s.expireJournaled(now)
	s.expireGrace(now)
	s.dropIdleCursors()
}

// expiryRef places an entry with a TTL in the expiry heap.
type expiryRef struct {
	at      int64 // unix nanoseconds
	index   int   // position in the heap, kept by the heap methods
	mapName string
	key     string
}

// expiryHeap orders entries by expiry time, soonest first.
type expiryHeap []*expiryRef

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	ref := x.(*expiryRef)
	ref.index = len(*h)
	*h = append(*h, ref)
}
func (h *expiryHeap) Pop() any {
	old := *h
	ref := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ref
}
