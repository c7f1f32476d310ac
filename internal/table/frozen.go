package table

import (
	"iter"
	"sync/atomic"

	"github.com/sharedstate/sharedstate/internal/filemap"
)

// Frozen is the table as it was when its owner froze it, for a snapshot
// written by another goroutine while the owner goes on changing the table:
// copy-on-write, word by word. From Freeze until Thaw, a commit keeps the
// first value of every word it changes in place (its pre-image), and the
// blocks it frees stay allocated, so that every word and block reachable
// at the freeze reads as it was then.
//
// Neither side waits for the other. The commit writes a word's pre-image,
// then sets the word's bit in changed (atomically), then changes the word;
// a reader reads the word, then its bit (after a fence), and takes the
// pre-image if the bit is set: a bit still clear after the read means that
// the word read had not changed. Pre-images lie at the words' own offsets
// in an anonymous mapping as large as the arena was, of which only the
// pages written take memory.
//
// Nothing of it is in the file: an owner that dies while the table is
// frozen leaves the held blocks allocated, space that is lost until the
// table is next rebuilt.
type Frozen struct {
	t *Table
	// bump is the arena's end at the freeze: every block reachable then
	// lies below it.
	bump    uint64
	changed []byte // a bit per word below bump: set once it has a pre-image
	pre     []byte // the pre-images, at their words' offsets
	// held are the blocks freed since the freeze, freed again by Thaw.
	held []freed
	// stopped makes the readers stop (Stop).
	stopped atomic.Bool
}

// Freeze returns the table as it is now (it must not be frozen already):
// the owner's next commits keep it readable until Thaw.
func (t *Table) Freeze() (*Frozen, error) {
	bump := word(t.m, hBump)
	changed, err := filemap.MapAnonymous(int(align(bump/64) + 8))
	if err != nil {
		return nil, err
	}
	pre, err := filemap.MapAnonymous(int(bump))
	if err != nil {
		filemap.Unmap(changed)
		return nil, err
	}
	t.frozen = &Frozen{t: t, bump: bump, changed: changed, pre: pre}
	return t.frozen, nil
}

// Thaw ends the freeze: the blocks that were held are freed by the commits
// that follow, a slice at a time (see pushFrees). The frozen table is not
// read after this, and is let go of with Release.
func (t *Table) Thaw() {
	t.pending = append(t.pending, t.frozen.held...)
	t.frozen = nil
}

// Release lets go of the pre-images, after Thaw: outside the owner's locks,
// since unmapping many pages takes a while.
func (f *Frozen) Release() {
	filemap.Unmap(f.changed)
	filemap.Unmap(f.pre)
}

// Stop makes the readers of f stop soon: Entries yields no more. Its caller
// knows that what they read is incomplete.
func (f *Frozen) Stop() { f.stopped.Store(true) }

// Stopped reports whether Stop was called: what was read since may lack
// entries.
func (f *Frozen) Stopped() bool { return f.stopped.Load() }

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

// keep records what a transaction that commits changes, before it changes
// it: the pre-images of the words of plan, and the blocks it holds.
func (f *Frozen) keep(plan []pair, held []freed) {
	f.held = append(f.held, held...)
	for _, p := range plan {
		if p.off >= f.bump {
			continue
		}
		bits, bit := f.bitOf(p.off)
		if bits.Load()&bit == 0 {
			setWord(f.pre, p.off, word(f.t.m, p.off))
			bits.Or(bit) // after the pre-image, before the word changes
		}
	}
}

// bitOf returns the word of changed that holds off's bit, and the bit.
func (f *Frozen) bitOf(off uint64) (bits *atomic.Uint64, bit uint64) {
	i := off / 8
	return atomicWord(f.changed, i/64*8), 1 << (i % 64)
}

// word returns the word at off as it was at the freeze.
func (f *Frozen) word(off uint64) uint64 {
	w := word(f.t.m, off)
	fence()
	if bits, bit := f.bitOf(off); bits.Load()&bit != 0 {
		return word(f.pre, off)
	}
	return w
}

// Len returns the entries sp had.
func (f *Frozen) Len(sp Space) int { return int(f.word(uint64(sp) + nsUsed)) }

// Entries yields the entries sp had, in the order their blocks lie in the
// table (which reading a large namespace needs: in its slots' order, it
// would miss the cache at nearly every entry). Keys and values are copies,
// valid until the next entry is yielded.
func (f *Frozen) Entries(sp Space) iter.Seq2[[]byte, Entry] {
	return func(yield func([]byte, Entry) bool) {
		var buf []byte
		for i, off := range f.offsets(sp) {
			if i%stopEvery == 0 && f.stopped.Load() {
				return
			}
			var e Entry
			buf, e = f.entry(buf[:0], off)
			if !yield(entryKey(buf, 0), e) {
				return
			}
		}
	}
}

// stopEvery is how many slots or entries a reader reads between looks at
// whether it is stopped.
const stopEvery = 4096

// offsets returns the blocks of sp's entries, sorted, or none if stopped.
func (f *Frozen) offsets(sp Space) []uint64 {
	slots, index := f.word(uint64(sp)+nsSlots), f.word(uint64(sp)+nsIndex)
	offs := make([]uint64, 0, f.word(uint64(sp)+nsUsed))
	for i := range slots {
		if i%stopEvery == 0 && f.stopped.Load() {
			return nil
		}
		if s := f.word(index + i*8); s != slotEmpty && s != slotTomb {
			offs = append(offs, slotOff(s))
		}
	}
	if !sortOffsets(offs, &f.stopped) {
		return nil
	}
	return offs
}

// entry appends to buf a copy of the block of the entry at off as it was
// at the freeze, and returns it with the entry read from it.
func (f *Frozen) entry(buf []byte, off uint64) ([]byte, Entry) {
	size := align(entrySize(entryLens(f.word(off))))
	buf = append(buf, f.t.m[off:off+size]...)
	fence()
	for i := uint64(0); i < size; i += 8 {
		if bits, bit := f.bitOf(off + i); bits.Load()&bit != 0 {
			setWord(buf, i, word(f.pre, off+i))
		}
	}
	e := readEntry(buf, 0)
	e.off, e.val = off, off+e.val
	return buf, e
}
