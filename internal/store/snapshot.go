package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/internal/filemap"
	"github.com/sharedstate/sharedstate/internal/journal"
	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// A compaction writes a snapshot of the store as it was at one moment, then
// replaces the journal with one that continues the snapshot, while
// operations go on: they wait for it only in moments of well under a
// millisecond. It reads the table frozen at that moment (table.Frozen), and
// the rest of the store's state as recorded then. Once the snapshot is in
// place, the journal's records appended since are copied, a slice at a
// time, into the journal that replaces it, and the last slice is copied and
// the journal replaced in one hold of the store's lock. Between the two,
// the snapshot and the old journal, whose records from the snapshot's End
// are what the snapshot lacks, are a pair that recovery reads as well (see
// follows).
type compaction struct {
	log    *journal.Journal // the store's journal: the same object after its Switch
	snap   journal.Header
	state  stateRecords
	frozen *table.Frozen // nil for a store that keeps no data in its journal
	stop   atomic.Bool   // set by Close: give up
	done   chan struct{} // closed when the compaction has ended
	start  time.Time
	// paused is the longest the compaction has held the store's lock,
	// holding up operations.
	paused time.Duration
}

// errStopped ends a compaction that Close gave up.
var errStopped = errors.New("the store closed")

// copyBudget is the most bytes of journal records a compaction copies
// while it holds the store's lock, with the switch of the journal: well
// under a millisecond's work. It copies the rest without the lock.
const copyBudget = 64 << 10

// maxCopyRounds is how many times a compaction copies records without the
// store's lock before it copies the rest with it.
const maxCopyRounds = 8

// compact starts a compaction of the store as it is now, unless one runs;
// s.mu is held. The new journal's space is reserved before anything
// changes, and the snapshot is written first: a full disk fails either
// before anything is in place, and leaves the journal as it was, to try
// again later.
func (s *Store) compact() {
	if s.compacting != nil || s.closing {
		return
	}
	s.finish() // the table holds every record so far: the snapshot ends there
	j := s.log.Header()
	c := &compaction{
		log:   s.log,
		snap:  journal.Header{Gen: j.Gen + 1, Salt: journal.NewSalt(), Link: j.Salt, End: uint64(s.log.Size())},
		state: s.stateRecords(),
		done:  make(chan struct{}),
		start: time.Now(),
	}
	if !s.persist.locksOnly {
		var err error
		if c.frozen, err = s.tab.Freeze(); err != nil {
			s.persist.logger.Error("sharedstate: cannot write a snapshot", "err", err)
			s.compactLater(0)
			return
		}
	}
	s.compacting = c
	c.paused = time.Since(c.start)
	s.persist.logger.Debug("sharedstate: writing a snapshot", "journal bytes", c.snap.End)
	s.compactions.Add(1)
	go s.runCompaction(c)
}

// runCompaction writes c's snapshot and switches the journal to one on it.
func (s *Store) runCompaction(c *compaction) {
	defer s.compactions.Done()
	p := &s.persist // its files' names and sync do not change
	var release func()
	var size int
	var err error
	defer func() { // once done, and without the lock: Retire's release waits
		if release != nil {
			release()
		}
		if c.frozen != nil {
			c.frozen.Release()
		}
		switch {
		case errors.Is(err, errStopped):
		case err != nil:
			p.logger.Error("sharedstate: cannot write a snapshot", "err", err)
		default:
			// paused: the longest the compaction held up operations.
			p.logger.Debug("sharedstate: wrote a snapshot", "bytes", size, "took", time.Since(c.start), "paused", c.paused)
		}
	}()
	defer close(c.done)
	size, id, err := journal.WriteSnapshot(p.dir, p.snapshotName(), c.snap, p.sync, func(w *journal.SnapshotWriter) error {
		return snapshotRecords(w, &c.state, c.frozen)
	})
	written := err == nil // the snapshot is in place, whatever follows
	var next *journal.Next
	if err == nil {
		next, err = c.log.Prepare(c.snap.Gen, c.snap.Salt)
	}
	if err == nil && !c.stop.Load() {
		// Room for the records to copy, and as many again: they go on
		// coming while the first are copied.
		s.mu.Lock()
		tail := c.log.Size() - int(c.snap.End)
		s.mu.Unlock()
		if err = next.Reserve(journal.HeaderSize + 2*tail + copyBudget); err != nil {
			c.log.Discard(next)
			next = nil
		} else {
			next.Prefault(2 * copyBudget)
		}
	}
	if s.afterSnapshot != nil {
		s.afterSnapshot()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	held := time.Now()
	if written {
		p.snapshotID = id
	}
	for at, round := int(c.snap.End), 0; err == nil; round++ {
		if c.stop.Load() || s.broken != nil {
			err = errStopped
			break
		}
		end := c.log.Size()
		// Writes faster than the copies would leave it copying for ever:
		// after a few rounds, the rest is copied in this hold, however
		// long.
		if end-at <= copyBudget || round == maxCopyRounds {
			// The last records, and the switch, in one hold.
			if _, err = c.log.CopyTo(next, at, end-at); err == nil {
				n := next
				next = nil // Switch discards it if it fails
				release, err = c.log.Switch(n)
			}
			break
		}
		// The records so far are copied without the lock.
		c.paused = max(c.paused, time.Since(held))
		s.mu.Unlock()
		at, err = c.copyRecords(next, at, end)
		s.mu.Lock()
		held = time.Now()
	}
	if next != nil {
		c.log.Discard(next)
	}
	if c.frozen != nil {
		s.tab.Thaw()
	}
	s.finish()
	s.compacting = nil
	if err == nil {
		// Once the new journal outgrows the live state: at once if the
		// records copied into it already do (writes outpaced the
		// snapshot), so that a burst of writes leaves no long journal.
		p.compactAt = max(minCompact, size)
	} else {
		s.compactLater(size)
	}
	c.paused = max(c.paused, time.Since(held))
}

// compactLater makes a compaction that failed wait for the journal to grow
// well past the live state, of size bytes as a snapshot, before it is
// tried again; s.mu is held.
func (s *Store) compactLater(size int) {
	s.persist.compactAt = s.log.Size() + max(minCompact, size)
}

// copyRecords copies the journal's records from at to end into next,
// through a mapping of its own, without the store's lock, copyBudget bytes
// at a time until stopped.
func (c *compaction) copyRecords(next *journal.Next, at, end int) (int, error) {
	data, err := c.log.MapRecords(end)
	if err != nil {
		return at, err
	}
	defer filemap.Unmap(data)
	for at < end && err == nil && !c.stop.Load() {
		at, err = journal.CopyRecords(next, data, at, min(end, at+copyBudget))
	}
	next.Release()                // written, and read again only by the next owner
	next.Prefault(2 * copyBudget) // for the copy under the lock that follows
	return at, err
}

// stopCompaction makes a compaction in progress give up, and waits for it
// to end but for letting go of memory and the old journal (see Retire);
// s.mu is held, and released meanwhile.
func (s *Store) stopCompaction() {
	c := s.compacting
	if c == nil {
		return
	}
	c.stop.Store(true)
	if c.frozen != nil {
		c.frozen.Stop()
	}
	s.mu.Unlock()
	<-c.done
	s.mu.Lock()
}

// putsPerTx bounds the records one transaction of loading a snapshot
// holds: each puts a key, which changes a slot and a count, and the
// transaction's plan is searched at each change.
const putsPerTx = 16

// stateRecords are the snapshot's records of what the store keeps outside
// its table: before the table's (head), and after (tail).
type stateRecords struct{ head, tail recordList }

// recordList is records kept to be written later.
type recordList [][]byte

func (l *recordList) Record(payload []byte) { *l = append(*l, bytes.Clone(payload)) }

// recorder takes a snapshot's records.
type recorder interface{ Record(payload []byte) }

// stateRecords returns the records of the store's state outside its table:
// the store's words, the locks and processes, and the saved answers; s.mu
// is held.
func (s *Store) stateRecords() stateRecords {
	var st stateRecords
	b := []byte{snapMeta}
	b = binary.AppendUvarint(b, s.rev)
	b = binary.AppendVarint(b, s.clock)
	b = binary.AppendUvarint(b, s.owner)
	st.head.Record(binary.AppendUvarint(b, s.terms))
	s.snapshotLocks(&st.head, b)
	s.snapshotProcs(&st.head, b)
	if !s.persist.locksOnly {
		s.snapshotAnswers(&st.tail, b)
	}
	return st
}

// snapshotRecords writes a snapshot's records: st, and between its head and
// tail the counters and maps of f, unless it is nil. If f was stopped (its
// entries end early), it gives up with errStopped, and writes no end: a
// snapshot is complete only with one.
func snapshotRecords(w *journal.SnapshotWriter, st *stateRecords, f *table.Frozen) error {
	for _, r := range st.head {
		w.Record(r)
	}
	if f != nil {
		snapshotData(w, f)
	}
	for _, r := range st.tail {
		w.Record(r)
	}
	if f != nil && f.Stopped() {
		return errStopped
	}
	w.Record([]byte{snapEnd})
	return nil
}

// snapshotData writes the counters and the maps of f.
func snapshotData(w *journal.SnapshotWriter, f *table.Frozen) {
	var b []byte
	for k, e := range f.Entries(table.Root) {
		switch name := k[1:]; string(k[:1]) {
		case counterKeyPrefix:
			b = wire.AppendString(append(b[:0], snapCounter), string(name))
			w.Record(binary.AppendVarint(b, int64(binary.NativeEndian.Uint64(e.Value))))
		case mapKeyPrefix:
			mapName, sp := string(name), e.Space()
			b = wire.AppendString(append(b[:0], snapMap), mapName)
			w.Record(binary.AppendUvarint(b, uint64(f.Len(sp))))
			for key, e := range f.Entries(sp) {
				b = wire.AppendString(append(b[:0], snapEntry), mapName)
				b = wire.AppendBytes(b, key)
				b = wire.AppendBytes(b, e.Value)
				b = binary.AppendUvarint(b, e.Version)
				w.Record(binary.AppendVarint(b, e.Deadline))
			}
		}
	}
}

// snapshotAnswers records the saved answers.
func (s *Store) snapshotAnswers(r recorder, b []byte) {
	for id, t := range s.clients {
		if len(t.results) == 0 {
			continue // nothing to answer again: the client may be long gone
		}
		b = binary.AppendUvarint(append(b[:0], snapClient), id)
		b = binary.AppendUvarint(b, t.ack)
		b = binary.AppendUvarint(b, uint64(len(t.results)))
		for _, resp := range t.results {
			b = (*wire.Response)(&resp).AppendFrame(b)
		}
		r.Record(b)
	}
}

// snapshotProcs records the processes of the clients that hold locks or
// have answers saved.
func (s *Store) snapshotProcs(r recorder, b []byte) {
	for id, p := range s.procs {
		b = binary.AppendUvarint(append(b[:0], snapProc), id)
		r.Record(p.append(b))
	}
}

// snapshotLocks records the locks ever taken.
func (s *Store) snapshotLocks(r recorder, b []byte) {
	for name := range s.lockNames.From("", true) {
		l := s.locks[name]
		if l.holder == 0 && l.token == 0 {
			continue
		}
		b = wire.AppendString(append(b[:0], snapLock), name)
		b = binary.AppendUvarint(b, l.holder)
		b = binary.AppendUvarint(b, l.holderReq)
		b = binary.AppendUvarint(b, l.token)
		r.Record(binary.AppendVarint(b, l.since))
	}
}

// loadSnapshot reads the snapshot, if there is one, into the empty store,
// and returns its header and size.
func (s *Store) loadSnapshot() (h journal.Header, found bool, size int, err error) {
	// Its identity first: a snapshot replaced meanwhile is noticed later.
	s.persist.snapshotID, _ = s.persist.dir.Stat(s.persist.snapshotName())
	h, records, size, err := journal.ReadSnapshot(s.persist.dir, s.persist.snapshotName())
	if errors.Is(err, fs.ErrNotExist) {
		return journal.Header{}, false, 0, nil
	}
	if err == nil {
		if err = s.loadSnapshotRecords(records); err != nil {
			err = fmt.Errorf("%w: snapshot %s: %w", ErrDamaged, s.persist.dir.Join(s.persist.snapshotName()), err)
		}
	}
	if err != nil {
		return journal.Header{}, false, 0, err
	}
	return h, true, size, nil
}

func (s *Store) loadSnapshotRecords(records iter.Seq2[[]byte, int]) error {
	defer s.commit()
	var resp transport.Response
	i, complete := -1, false
	for rec := range records {
		i++
		if i%putsPerTx == 0 {
			s.commit() // a transaction holds only so many changes
		}
		switch {
		case len(rec) == 0:
			return fmt.Errorf("record %d is empty", i)
		case complete:
			return fmt.Errorf("record %d follows the end", i)
		}
		d := wire.NewDecoder(rec[1:])
		switch rec[0] {
		case snapMeta:
			s.rev, s.clock, s.owner, s.terms = d.Uvarint(), d.Varint(), d.Uvarint(), d.Uvarint()
		case snapMap:
			_, _ = d.String(), d.Uvarint() // a map and its size: its entries follow
		case snapCounter:
			name := d.String()
			s.setCounter(name, d.Varint())
		case snapEntry:
			mapName, key, value, version, expiry := d.String(), d.String(), d.Bytes(), d.Uvarint(), d.Varint()
			s.put(mapName, key, entry{value: value, version: version, expiry: expiry})
			s.setExpiry(mapName, key, expiry)
		case snapLock:
			name := d.String()
			l := s.lockNamed(name)
			l.holder, l.holderReq, l.token, l.since = d.Uvarint(), d.Uvarint(), d.Uvarint(), d.Varint()
			s.keepLock(name, l)
		case snapClient:
			t := newClientTable()
			client := d.Uvarint()
			s.clients[client] = t
			t.ack = d.Uvarint()
			n := d.Uvarint()
			for range n {
				if err := (*wire.Response)(&resp).Decode(d.Frame()); err != nil {
					return fmt.Errorf("record %d: %w", i, err)
				}
				s.addAnswer(client, t, resp.ID, resp)
				s.commit()
			}
			slices.Sort(t.order) // written from a map, in no order
		case snapProc:
			client := d.Uvarint()
			s.setProc(client, readProcess(d))
		case snapEnd:
			complete = true
		default:
			return fmt.Errorf("record %d: unknown type %d", i, rec[0])
		}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if !complete {
		return errors.New("incomplete: no end record")
	}
	return nil
}
