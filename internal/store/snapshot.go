package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate/internal/journal"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// compact writes a snapshot of the store and starts an empty journal on it;
// s.mu is held. The new journal's space is reserved first, and the
// snapshot is written next: a full disk fails either before anything is
// in place, and leaves the journal as it was, to try again later.
func (s *Store) compact() {
	start := time.Now()
	j := s.log.Header()
	snap := journal.Header{Gen: j.Gen + 1, Salt: journal.NewSalt(), Link: j.Salt, End: uint64(s.log.Size())}
	next, err := s.log.Prepare(snap.Gen, snap.Salt)
	size := 0
	if err == nil {
		size, s.persist.snapshotID, err = journal.WriteSnapshot(s.persist.dir, s.persist.snapshotName(), snap, s.persist.sync, s.snapshotRecords)
		if err != nil {
			s.log.Discard(next)
		}
	}
	if err == nil {
		if err = s.log.Switch(next); err != nil {
			// The snapshot holds everything and replaces the old journal
			// (see follows): nothing more may be appended to it.
			s.broken = err
			s.persist.onBroken(err)
		}
	}
	// Whatever happened, wait for the journal to grow well past the live
	// state before trying again.
	s.persist.compactAt = s.log.Size() + max(minCompact, size)
	if err != nil {
		s.persist.logger.Error("sharedstate: cannot write a snapshot", "err", err)
		return
	}
	s.persist.logger.Debug("sharedstate: wrote a snapshot", "bytes", size, "took", time.Since(start))
}

// putsPerTx bounds the records one transaction of loading a snapshot
// holds: each puts a key, which changes a slot and a count, and the
// transaction's plan is searched at each change.
const putsPerTx = 16

// snapshotRecords writes every part of the store as records.
func (s *Store) snapshotRecords(w *journal.SnapshotWriter) {
	b := []byte{snapMeta}
	b = binary.AppendUvarint(b, s.rev)
	b = binary.AppendVarint(b, s.clock)
	b = binary.AppendUvarint(b, s.owner)
	w.Record(binary.AppendUvarint(b, s.terms))
	s.snapshotLocks(w, b)
	s.snapshotProcs(w, b)
	if !s.persist.locksOnly {
		s.snapshotData(w, b)
	}
	w.Record([]byte{snapEnd})
}

// snapshotData writes the counters, the maps and the saved answers.
func (s *Store) snapshotData(w *journal.SnapshotWriter, b []byte) {
	s.names()
	for name := range s.counterNames.From("", true) {
		v, _ := s.counter(name)
		b = wire.AppendString(append(b[:0], snapCounter), name)
		w.Record(binary.AppendVarint(b, v))
	}
	for mapName := range s.mapNames.From("", true) {
		sp, _ := s.mapSpace(mapName)
		b = wire.AppendString(append(b[:0], snapMap), mapName)
		w.Record(binary.AppendUvarint(b, uint64(s.txn().Len(sp))))
		for key, e := range s.txn().InFileOrder(sp) {
			b = wire.AppendString(append(b[:0], snapEntry), mapName)
			b = wire.AppendBytes(b, key)
			b = wire.AppendBytes(b, e.Value)
			b = binary.AppendUvarint(b, e.Version)
			w.Record(binary.AppendVarint(b, e.Deadline))
		}
	}
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
		w.Record(b)
	}
}

// snapshotProcs writes the processes of the clients that hold locks or
// have answers saved.
func (s *Store) snapshotProcs(w *journal.SnapshotWriter, b []byte) {
	for id, p := range s.procs {
		b = binary.AppendUvarint(append(b[:0], snapProc), id)
		w.Record(p.append(b))
	}
}

// snapshotLocks writes the locks ever taken.
func (s *Store) snapshotLocks(w *journal.SnapshotWriter, b []byte) {
	for name := range s.lockNames.From("", true) {
		l := s.locks[name]
		if l.holder == 0 && l.token == 0 {
			continue
		}
		b = wire.AppendString(append(b[:0], snapLock), name)
		b = binary.AppendUvarint(b, l.holder)
		b = binary.AppendUvarint(b, l.holderReq)
		b = binary.AppendUvarint(b, l.token)
		w.Record(binary.AppendVarint(b, l.since))
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
