package table

import (
	"iter"
	"sync"
	"time"
)

// Frozen is the table as it was when its owner froze it, for a snapshot
// written by another goroutine while the owner goes on changing the table:
// copy-on-write, word by word. From Freeze until Thaw, a commit keeps the
// first value of every word it changes in place (its pre-image), and the
// blocks it frees stay allocated, so that every word and block reachable
// at the freeze reads as it was then. Nothing of it is in the file: an
// owner that dies while the table is frozen leaves the held blocks
// allocated, space that is lost until the table is next rebuilt.
type Frozen struct {
	t *Table
	// bump is the arena's end at the freeze: every block reachable then
	// lies below it.
	bump uint64
	// mu is held by a commit while it changes words, and by a reader
	// while it reads words that may have changed.
	mu  sync.Mutex
	pre map[uint64]uint64
	// pages are the pages (offset>>pageShift) that have words in pre: a
	// block on none of them reads as it is.
	pages map[uint64]bool
	// held are the blocks freed since the freeze, freed again by Thaw.
	held []freed
	// since is when a reader took mu, longest the longest a reader held
	// it (Held).
	since   time.Time
	longest time.Duration
}

const pageShift = 12

// Freeze returns the table as it is now (it must not be frozen already):
// the owner's next commits keep it readable until Thaw.
func (t *Table) Freeze() *Frozen {
	f := &Frozen{t: t, bump: word(t.m, hBump), pre: map[uint64]uint64{}, pages: map[uint64]bool{}}
	t.frozen = f
	return f
}

// Thaw ends the freeze: the blocks that were held are freed by the commits
// that follow, a slice at a time (see pushFrees). Nothing reads f after
// this.
func (t *Table) Thaw() {
	t.pending = append(t.pending, t.frozen.held...)
	t.frozen = nil
}

// hold splits frees, a transaction's, into the blocks the freeze may reach,
// which stay allocated until Thaw, and the others, which are freed as
// usual.
func (f *Frozen) hold(frees []freed) (held, rest []freed) {
	for _, fr := range frees {
		if fr.off < f.bump {
			held = append(held, fr)
		} else {
			rest = append(rest, fr)
		}
	}
	return held, rest
}

// keep records what a transaction that commits changes: the pre-images of
// the words plan is about to change, and the blocks it holds; f.mu is
// held.
func (f *Frozen) keep(plan []pair, held []freed) {
	f.held = append(f.held, held...)
	for _, p := range plan {
		if p.off >= f.bump {
			continue
		}
		if _, ok := f.pre[p.off]; !ok {
			f.pre[p.off] = word(f.t.m, p.off)
			f.pages[p.off>>pageShift] = true
		}
	}
}

// lock and unlock are a reader's, which holds up the owner's commits
// meanwhile, and times it.
func (f *Frozen) lock() {
	f.mu.Lock()
	f.since = time.Now()
}

func (f *Frozen) unlock() {
	f.longest = max(f.longest, time.Since(f.since))
	f.mu.Unlock()
}

// Held returns the longest a reader of f has held up the owner's commits.
func (f *Frozen) Held() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.longest
}

// word returns the word at off as it was at the freeze; f.mu is held.
func (f *Frozen) word(off uint64) uint64 {
	if v, ok := f.pre[off]; ok {
		return v
	}
	return word(f.t.m, off)
}

// Len returns the entries sp had.
func (f *Frozen) Len(sp Space) int {
	f.lock()
	defer f.unlock()
	return int(f.word(uint64(sp) + nsUsed))
}

// Entries yields the entries sp had, in the order their blocks lie in the
// table (which reading a large namespace needs: in its slots' order, it
// would miss the cache at nearly every entry). Keys and values are copies,
// valid until the next entry is yielded.
func (f *Frozen) Entries(sp Space) iter.Seq2[[]byte, Entry] {
	return func(yield func([]byte, Entry) bool) {
		offs := f.offsets(sp)
		var b frozenBatch
		for len(offs) > 0 {
			n := min(len(offs), batchSize)
			b.read(f, offs[:n])
			offs = offs[n:]
			for i, e := range b.entries {
				if !yield(b.keys[i], e) {
					return
				}
			}
		}
	}
}

// batchSize is how many slots, then entries, a reader reads each time it
// holds f.mu: the owner's commits wait for it meanwhile.
const batchSize = 512

// offsets returns the blocks of sp's entries, sorted.
func (f *Frozen) offsets(sp Space) []uint64 {
	f.lock()
	slots, index, used := f.word(uint64(sp)+nsSlots), f.word(uint64(sp)+nsIndex), f.word(uint64(sp)+nsUsed)
	f.unlock()
	offs := make([]uint64, 0, used)
	for start := uint64(0); start < slots; start += batchSize {
		end := min(slots, start+batchSize)
		f.lock()
		changed := f.changed(index+start*8, (end-start)*8)
		for i := start; i < end; i++ {
			s := word(f.t.m, index+i*8)
			if changed {
				s = f.word(index + i*8)
			}
			if s != slotEmpty && s != slotTomb {
				offs = append(offs, slotOff(s))
			}
		}
		f.unlock()
	}
	sortOffsets(offs)
	return offs
}

// frozenBatch is a batch of entries read under f.mu: copies of their
// blocks, one after the other in buf.
type frozenBatch struct {
	buf     []byte
	entries []Entry
	keys    [][]byte
	at      []uint64 // where each block's copy is in buf
}

// read reads the entries at offs into b, as they were at the freeze.
func (b *frozenBatch) read(f *Frozen, offs []uint64) {
	b.buf, b.entries, b.keys, b.at = b.buf[:0], b.entries[:0], b.keys[:0], b.at[:0]
	f.lock()
	for _, off := range offs {
		size := align(entrySize(entryLens(f.word(off))))
		start := uint64(len(b.buf))
		b.buf = append(b.buf, f.t.m[off:off+size]...)
		if f.changed(off, size) {
			for i := uint64(0); i < size; i += 8 {
				if v, ok := f.pre[off+i]; ok {
					setWord(b.buf, start+i, v)
				}
			}
		}
		b.at = append(b.at, start)
	}
	f.unlock()
	for i, off := range offs { // buf has stopped moving
		at := b.at[i]
		e, key := readEntry(b.buf, at), entryKey(b.buf, at)
		e.off, e.val = off, off+(e.val-at)
		b.entries = append(b.entries, e)
		b.keys = append(b.keys, key)
	}
}

// changed reports whether a word of the size bytes at off may have changed
// since the freeze; f.mu is held.
func (f *Frozen) changed(off, size uint64) bool {
	for p := off >> pageShift; p <= (off+size-1)>>pageShift; p++ {
		if f.pages[p] {
			return true
		}
	}
	return false
}
