package table

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"time"
	"unsafe"
)

// View is a table as any process reads it, while its owner writes it. Its
// methods are safe for concurrent use. A View never trusts the bytes: every
// offset and length it follows is checked against the mapping, and what it
// read counts only if no transaction ran meanwhile (see the package doc).
type View struct {
	m     []byte // the reservation, mapped read-only
	salt  uint64
	owner uint64 // whose table it must be (Claim)
}

// ErrBusy means that the owner held a transaction open for longer than a
// reader waits: it died in the middle of one, or is stopped. The reader
// asks the owner instead, which waits for a new one.
var ErrBusy = errors.New("table: a transaction is in progress")

// patience is how long a read keeps trying while transactions run beside
// it before ErrBusy: one takes well under a microsecond, and an owner that
// commits back to back leaves room between them, but one killed or stopped
// in the middle of a transaction leaves its sequence number odd.
const patience = time.Millisecond

// ErrRetired means that the table is not, or no longer, the one its
// owner writes: read through the owner.
var ErrRetired = errors.New("table: not the owner's")

// newView returns the view of the table in m, for owner.
func newView(m []byte, fileSize, owner uint64) (*View, error) {
	if err := checkHeader(m, fileSize); err != nil {
		return nil, err
	}
	return &View{m: m, salt: word(m, hSalt), owner: owner}, nil
}

// Now returns the store's time now, as its owner keeps it (see
// Monotonic): the time that entries' deadlines are in.
func (v *View) Now() int64 { return Monotonic() + int64(atomicWord(v.m, hClock).Load()) }

// Read is what a View read of an entry: Value is the caller's buffer.
type Read struct {
	Value    []byte
	Version  uint64
	Deadline int64
	Found    bool
}

// Get reads key in the namespace of space (a key of the root), or in the
// root if space is "", copying its value into dst's array if it fits.
func (v *View) Get(space, key string, dst []byte) (Read, error) {
	var r Read
	if err := v.consistent(func(c *cursor) { r = c.get(space, key, dst[:0]) }); err != nil {
		return Read{}, err // what the last try read may be torn
	}
	return r, nil
}

// Count returns the number of entries of space (a key of the root), and
// the extra word of its value (see Tx.NewSpace); zeros if it is not there.
func (v *View) Count(space string, extra int) (n int, w uint64, err error) {
	var entries uint64
	if err := v.consistent(func(c *cursor) {
		e, ok := c.find(hRoot, space)
		if !ok || len(e.value) < nsWords*8 {
			return
		}
		entries = c.word(e.val + nsUsed)
		if at := (nsWords + uint64(extra)) * 8; uint64(len(e.value)) >= at+8 {
			w = c.word(e.val + at)
		}
	}); err != nil {
		return 0, 0, err
	}
	return int(entries), w, nil
}

// Item is an entry of a Scan: its bytes are a copy.
type Item struct {
	Key      []byte
	Value    []byte
	Version  uint64
	Deadline int64
}

// scanChunk is how many slots one consistent read of a Scan covers.
const scanChunk = 64

// Scan returns every entry of space (a key of the root) in key order. It
// is not a snapshot: each entry is as it was when its part of the slots
// was read.
func (v *View) Scan(space string) ([]Item, error) {
restart:
	var sp, index, slots uint64
	err := v.consistent(func(c *cursor) {
		var ok bool
		if sp, ok = c.space(space); ok {
			index, slots = c.word(sp+nsIndex), c.word(sp+nsSlots)
		}
	})
	if err != nil {
		return nil, err
	}
	var items []Item
	for from := uint64(0); from < slots; from += scanChunk {
		moved := false
		var chunk []Item
		err := v.consistent(func(c *cursor) {
			chunk = chunk[:0]
			if c.word(sp+nsIndex) != index || c.word(sp+nsSlots) != slots {
				moved = true // rehashed: the slots are elsewhere now
				return
			}
			for i := from; i < min(from+scanChunk, slots) && c.err == nil; i++ {
				s := c.word(index + i*8)
				if s == slotEmpty || s == slotTomb {
					continue
				}
				e := c.entry(slotOff(s))
				chunk = append(chunk, Item{Key: bytes.Clone(e.key), Value: bytes.Clone(e.value), Version: e.version, Deadline: e.deadline})
			}
		})
		if err != nil {
			return nil, err
		}
		if moved {
			goto restart
		}
		items = append(items, chunk...)
	}
	slices.SortFunc(items, func(a, b Item) int { return bytes.Compare(a.Key, b.Key) })
	return items, nil
}

// consistent runs read until it runs with no transaction beside it, and
// returns the error it found then, if any: ErrRetired if the table was
// not its owner's then.
func (v *View) consistent(read func(*cursor)) (err error) {
	// A file cut shorter than its header says (by anything but its owner)
	// faults on the pages past its end: a panic here, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("%w: the file is shorter than its header says", ErrCorrupt)
		}
	}()
	seq := atomicWord(v.m, hSeq)
	var began time.Time
	for try := 0; ; try++ {
		s := seq.Load()
		if s%2 == 0 {
			c := cursor{m: v.m, salt: v.salt}
			c.size = min(atomicWord(v.m, hSize).Load(), uint64(len(v.m)))
			read(&c)
			if c.word(hOwner) != v.owner && c.err == nil {
				c.err = ErrRetired
			}
			fence()
			if seq.Load() == s {
				return c.err
			}
		}
		switch {
		case try < 8:
		case try == 8:
			began = time.Now()
		case time.Since(began) > patience:
			return ErrBusy
		default:
			runtime.Gosched()
		}
	}
}

// cursor reads a table within one consistent read: each of its reads is
// checked against the table's size, and the first that fails stops the
// rest (they return zeros) and is the read's error, if no transaction ran.
type cursor struct {
	m    []byte
	size uint64
	salt uint64
	err  error
}

func (c *cursor) corrupt() {
	if c.err == nil {
		c.err = ErrCorrupt
	}
}

// word returns the word at off, or 0 if off is out of the table.
func (c *cursor) word(off uint64) uint64 {
	if c.err != nil || off%8 != 0 || off < hEnd && off >= hIntent || off >= c.size || c.size-off < 8 {
		c.corrupt()
		return 0
	}
	return word(c.m, off)
}

// bytes returns the n bytes at off, or nil if they are not all in the table.
func (c *cursor) bytes(off, n uint64) []byte {
	if c.err != nil || off < hEnd || off > c.size || n > c.size-off {
		c.corrupt()
		return nil
	}
	return c.m[off : off+n : off+n]
}

// rawEntry is an entry's parts, in the mapping.
type rawEntry struct {
	key, value []byte
	val        uint64 // the value's offset
	version    uint64
	deadline   int64
}

// entry reads the entry at off.
func (c *cursor) entry(off uint64) rawEntry {
	k, val, d := entryLens(c.word(off))
	var e rawEntry
	e.version = c.word(off + eVersion)
	if d {
		e.deadline = int64(c.word(off + eDeadline))
	}
	start := off + entryHeader(d)
	e.key = c.bytes(start, k)
	e.val = start + align(k)
	e.value = c.bytes(e.val, val)
	return e
}

// find returns the entry of key in the namespace at sp.
func (c *cursor) find(sp uint64, key string) (rawEntry, bool) {
	slots := c.word(sp + nsSlots)
	if slots == 0 || slots&(slots-1) != 0 {
		if slots != 0 {
			c.corrupt()
		}
		return rawEntry{}, false
	}
	index, mask := c.word(sp+nsIndex), slots-1
	kb := unsafe.Slice(unsafe.StringData(key), len(key))
	h := hashKey(c.salt, kb)
	for i, n := home(h, slots), uint64(0); n < slots && c.err == nil; i, n = (i+1)&mask, n+1 {
		s := c.word(index + i*8)
		switch {
		case s == slotEmpty:
			return rawEntry{}, false
		case s == slotTomb || slotTag(s) != hashTag(h):
			continue
		}
		if e := c.entry(slotOff(s)); bytes.Equal(e.key, kb) {
			return e, true
		}
	}
	c.corrupt() // no empty slot: a table keeps a quarter empty
	return rawEntry{}, false
}

// space returns the namespace of key in the root ("" for the root).
func (c *cursor) space(key string) (uint64, bool) {
	if key == "" {
		return hRoot, true
	}
	e, ok := c.find(hRoot, key)
	if !ok {
		return 0, false
	}
	if len(e.value) < nsWords*8 {
		c.corrupt()
		return 0, false
	}
	return e.val, true
}

func (c *cursor) get(space, key string, dst []byte) Read {
	sp, ok := c.space(space)
	if !ok {
		return Read{}
	}
	e, ok := c.find(sp, key)
	if !ok {
		return Read{}
	}
	return Read{Value: append(dst, e.value...), Version: e.version, Deadline: e.deadline, Found: true}
}
