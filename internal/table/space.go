package table

import (
	"bytes"
	"encoding/binary"
	"iter"
	"sync/atomic"
)

// Space is a namespace: the offset of its words (see nsIndex), in the header
// for the root, in the value of its key in the root for the others.
type Space uint64

// Root is the root namespace.
const Root Space = hRoot

// Entry is an entry as the owner reads it. Value is the table's own bytes:
// valid until the transaction that replaces or deletes the entry commits.
type Entry struct {
	Value    []byte
	Version  uint64
	Deadline int64  // 0: none
	off      uint64 // the entry's block
	val      uint64 // its value
}

// Space returns the namespace that e's value holds (see Tx.NewSpace).
func (e Entry) Space() Space { return Space(e.val) }

// probe is the outcome of looking a key up in a namespace.
type probe struct {
	slot  uint64 // offset of the key's slot, or of the slot to insert it at
	entry uint64 // the entry's offset, if found
	found bool
}

// find looks key up in sp, as the transaction has them.
func (tx *Tx) find(sp Space, key string, h uint64) probe {
	m := tx.t.m
	slots := tx.word(uint64(sp) + nsSlots)
	if slots == 0 {
		return probe{}
	}
	index, mask := tx.word(uint64(sp)+nsIndex), slots-1
	insert := uint64(0)
	for i, n := home(h, slots), uint64(0); n < slots; i, n = (i+1)&mask, n+1 {
		at := index + i*8
		s := tx.word(at)
		switch {
		case s == slotEmpty:
			return probe{slot: cmpOr(insert, at)}
		case s == slotTomb:
			insert = cmpOr(insert, at)
		case slotTag(s) == hashTag(h) && string(entryKey(m, slotOff(s))) == key:
			return probe{slot: at, entry: slotOff(s), found: true}
		}
	}
	return probe{slot: insert}
}

func cmpOr(a, b uint64) uint64 {
	if a != 0 {
		return a
	}
	return b
}

// entryKey returns the key of the entry at off.
func entryKey(m []byte, off uint64) []byte {
	k, _, d := entryLens(word(m, off))
	start := off + entryHeader(d)
	return m[start : start+k]
}

// readEntry returns the entry at off.
func readEntry(m []byte, off uint64) Entry {
	k, v, d := entryLens(word(m, off))
	e := Entry{Version: word(m, off+eVersion), off: off, val: off + entryHeader(d) + align(k)}
	if d {
		e.Deadline = int64(word(m, off+eDeadline))
	}
	e.Value = m[e.val : e.val+v : e.val+v]
	return e
}

// Get returns the entry of key in sp, as the transaction has it.
func (tx *Tx) Get(sp Space, key string) (Entry, bool) {
	p := tx.find(sp, key, tx.t.hash(key))
	if !p.found {
		return Entry{}, false
	}
	return tx.readEntry(p.entry), true
}

// readEntry returns the entry at off as the transaction has it: with the
// words it set in place (SetWord).
func (tx *Tx) readEntry(off uint64) Entry {
	e := readEntry(tx.t.m, off)
	e.Version = tx.word(off + eVersion)
	end := e.val + uint64(len(e.Value))
	patched := false
	for _, p := range tx.plan {
		if p.off >= e.val && p.off < end {
			if !patched {
				e.Value, patched = bytes.Clone(e.Value), true
			}
			binary.NativeEndian.PutUint64(e.Value[p.off-e.val:], p.val)
		}
	}
	return e
}

// Put sets key in sp to a new entry, and returns it, and the entry it
// replaced if there was one (its value stays readable until the commit).
func (tx *Tx) Put(sp Space, key string, value []byte, version uint64, deadline int64) (e, old Entry, replaced bool) {
	h := tx.t.hash(key)
	p := tx.find(sp, key, h)
	off := tx.newEntry(key, value, version, deadline)
	if tx.err != nil {
		return Entry{}, Entry{}, false
	}
	if p.found {
		old = tx.readEntry(p.entry)
		tx.set(p.slot, slotOf(off, h))
		tx.freeEntry(p.entry)
	} else {
		tx.insert(sp, p, off, h)
	}
	return readEntry(tx.t.m, off), old, p.found
}

// Delete removes key from sp, and reports whether it was there.
func (tx *Tx) Delete(sp Space, key string) bool {
	p := tx.find(sp, key, tx.t.hash(key))
	if !p.found {
		return false
	}
	tx.set(p.slot, slotTomb)
	tx.set(uint64(sp)+nsUsed, tx.word(uint64(sp)+nsUsed)-1)
	tx.set(uint64(sp)+nsTombs, tx.word(uint64(sp)+nsTombs)+1)
	tx.freeEntry(p.entry)
	return true
}

// SetWord sets word i of e's value in place: for values that change
// without changing size, such as a counter's.
func (tx *Tx) SetWord(e Entry, i int, v uint64) { tx.set(e.val+uint64(i)*8, v) }

// Word returns word i of e's value, as the transaction has it.
func (tx *Tx) Word(e Entry, i int) uint64 { return tx.word(e.val + uint64(i)*8) }

// SpaceWords is the words of a namespace, at the start of the value that
// holds it.
const SpaceWords = nsWords

// NewSpace puts key in the root with a namespace for its value, followed
// by extra words of the caller's (zero, then set with SetWord from
// SpaceWords on), and returns its entry. The entry stays where it is: change
// it with SetWord only, and remove it with DeleteSpace.
func (tx *Tx) NewSpace(key string, extra int) Entry {
	e, _, _ := tx.Put(Root, key, make([]byte, (nsWords+extra)*8), 0, 0)
	return e
}

// ClearSpace removes every entry of sp.
func (tx *Tx) ClearSpace(sp Space) {
	slots, index := tx.word(uint64(sp)+nsSlots), tx.word(uint64(sp)+nsIndex)
	for i := range slots {
		if s := tx.word(index + i*8); s != slotEmpty && s != slotTomb {
			tx.freeEntry(slotOff(s))
		}
	}
	if slots > 0 {
		tx.free(index, slots*8)
	}
	for _, w := range []uint64{nsIndex, nsSlots, nsUsed, nsTombs} {
		tx.set(uint64(sp)+w, 0)
	}
}

// DeleteSpace clears the namespace of key in the root, and removes key.
func (tx *Tx) DeleteSpace(key string) bool {
	e, ok := tx.Get(Root, key)
	if !ok {
		return false
	}
	tx.ClearSpace(e.Space())
	return tx.Delete(Root, key)
}

// Len returns the entries of sp.
func (tx *Tx) Len(sp Space) int { return int(tx.word(uint64(sp) + nsUsed)) }

// newEntry writes a new entry's block, unreachable until the commit.
func (tx *Tx) newEntry(key string, value []byte, version uint64, deadline int64) uint64 {
	k, v, d := uint64(len(key)), uint64(len(value)), deadline != 0
	if k > maxKey || v > maxValue {
		tx.fail(ErrTooLarge)
		return 0
	}
	off := tx.alloc(entrySize(k, v, d))
	if tx.err != nil {
		return 0
	}
	m := tx.t.m
	w0 := k | v<<32
	if d {
		w0 |= hasDeadline
		setWord(m, off+eDeadline, uint64(deadline))
	}
	setWord(m, off+eLens, w0)
	setWord(m, off+eVersion, version)
	start := off + entryHeader(d)
	copy(m[start:], key)
	clear(m[start+k : start+align(k)])
	copy(m[start+align(k):], value)
	return off
}

// freeEntry frees the block of the entry at off.
func (tx *Tx) freeEntry(off uint64) {
	k, v, d := entryLens(word(tx.t.m, off))
	tx.free(off, entrySize(k, v, d))
}

// insert puts the entry at off, of hash h, in sp at the slot p found,
// growing the slots first if they are three quarters full.
func (tx *Tx) insert(sp Space, p probe, off, h uint64) {
	ns := uint64(sp)
	used, tombs, slots := tx.word(ns+nsUsed), tx.word(ns+nsTombs), tx.word(ns+nsSlots)
	if (used+tombs+1)*4 > slots*3 {
		tx.rehash(sp, max(8, nextPow2((used+1)*2)))
		if tx.err != nil {
			return
		}
		p = tx.find(sp, string(entryKey(tx.t.m, off)), h)
		tombs = 0
	} else if tx.word(p.slot) == slotTomb {
		tombs--
	}
	tx.set(p.slot, slotOf(off, h))
	tx.set(ns+nsUsed, used+1)
	tx.set(ns+nsTombs, tombs)
}

// rehash moves sp's entries into a new array of slots (a power of two),
// unreachable until the commit, and drops the tombstones.
func (tx *Tx) rehash(sp Space, slots uint64) {
	ns, m := uint64(sp), tx.t.m
	index := tx.alloc(slots * 8)
	if tx.err != nil {
		return
	}
	clear(m[index : index+slots*8])
	oldSlots, oldIndex, mask := tx.word(ns+nsSlots), tx.word(ns+nsIndex), slots-1
	for i := range oldSlots {
		s := tx.word(oldIndex + i*8)
		if s == slotEmpty || s == slotTomb {
			continue
		}
		j, ok := homeOfSlot(s, slots)
		if !ok {
			j = home(tx.t.hashBytes(entryKey(m, slotOff(s))), slots)
		}
		for word(m, index+j*8) != slotEmpty {
			j = (j + 1) & mask
		}
		setWord(m, index+j*8, s)
	}
	if oldSlots > 0 {
		tx.free(oldIndex, oldSlots*8)
	}
	tx.set(ns+nsIndex, index)
	tx.set(ns+nsSlots, slots)
	tx.set(ns+nsTombs, 0)
}

func nextPow2(n uint64) uint64 {
	p := uint64(1)
	for p < n {
		p <<= 1
	}
	return p
}

// sortOffsets sorts block offsets, least significant 11 bits first (a radix
// sort: a comparison sort took a third of a snapshot's time), unless stop
// is set (it looks between its passes) and it reports false.
func sortOffsets(offs []uint64, stop *atomic.Bool) bool {
	const bits = 11
	tmp := make([]uint64, len(offs))
	for shift := uint(3); shift < offBits+3; shift += bits {
		if stop.Load() {
			return false
		}
		var count [1<<bits + 1]int
		for _, o := range offs {
			count[(o>>shift)&(1<<bits-1)+1]++
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, o := range offs {
			d := (o >> shift) & (1<<bits - 1)
			tmp[count[d]] = o
			count[d]++
		}
		offs, tmp = tmp, offs
	}
	if (offBits+bits-1)/bits%2 == 1 { // an odd number of passes: the result is in the other array
		copy(tmp, offs)
	}
	return true
}

// All yields the entries of sp, as the transaction has them, in no order.
// The keys are the table's bytes, valid as the entries' values are.
func (tx *Tx) All(sp Space) iter.Seq2[[]byte, Entry] {
	return func(yield func([]byte, Entry) bool) {
		m := tx.t.m
		slots, index := tx.word(uint64(sp)+nsSlots), tx.word(uint64(sp)+nsIndex)
		for i := range slots {
			if s := tx.word(index + i*8); s != slotEmpty && s != slotTomb {
				if !yield(entryKey(m, slotOff(s)), tx.readEntry(slotOff(s))) {
					return
				}
			}
		}
	}
}

// Sample yields up to n entries of sp, in slot order from the slot at
// start (modulo the number of slots) on. A key's slot follows its salted
// hash, so the entries of neighbouring slots are a random choice of the
// namespace's keys, for a random start: how a bounded map picks the entries
// it may evict without keeping an order of its own.
func (tx *Tx) Sample(sp Space, start uint64, n int) iter.Seq2[[]byte, Entry] {
	return func(yield func([]byte, Entry) bool) {
		m := tx.t.m
		slots, index := tx.word(uint64(sp)+nsSlots), tx.word(uint64(sp)+nsIndex)
		for i, found := uint64(0), 0; i < slots && found < n; i++ {
			s := tx.word(index + (start+i)%slots*8)
			if s == slotEmpty || s == slotTomb {
				continue
			}
			found++
			if !yield(entryKey(m, slotOff(s)), tx.readEntry(slotOff(s))) {
				return
			}
		}
	}
}
