package table

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// The header's words, by offset.
const (
	hMagic   = 0        // magic
	hFormat  = 8        // format
	hBoot    = 16       // 16 bytes: the boot the table was written in
	hSalt    = 32       // the hash's salt, fixed at creation
	hReserve = 40       // bytes of address space that readers map
	hSize    = 48       // bytes of the file that may be used: the arena ends here
	hSeq     = 56       // the sequence number: odd while a plan is applied
	hOffset  = 64       // the table holds the journal's records up to here (Position)
	hBump    = 72       // the arena's first never-allocated byte
	hRoot    = 80       // the root namespace (nsWords words)
	hOwner   = 112      // the client id of the owner writing the table; 0 once retired
	hClock   = 120      // the store's time less Monotonic, as the owner keeps it
	hJournal = 128      // the salt of the journal hOffset is in; 0: none (Position)
	hStacks  = 136      // the free stacks: 3 words per size class
	hIntent  = 6144     // the intent: n, then n (offset, value) pairs
	hEnd     = 64 << 10 // the arena's first byte
	maxPlan  = (hEnd - hIntent - 8) / 16
	magic    = 0x31656c6261745353 // "SStable1"
	format2  = 2
)

// A namespace's words, from its start: its slots' array, their number (0
// or a power of two), the slots in use, and the tombstones among them.
const (
	nsIndex = 0
	nsSlots = 8
	nsUsed  = 16
	nsTombs = 24
	nsWords = 4
)

// Index slots: 0 is empty, 1 a deleted entry's (offsets are never below
// hEnd), else an entry's offset/8 in the low 40 bits and the top 24 bits of
// its key's hash above them.
const (
	slotEmpty = 0
	slotTomb  = 1
	offBits   = 40
	maxOffset = 1<<(offBits+3) - 8
)

// The free stacks end before the intent.
const _ = uint(hIntent - hStacks - nClasses*24)

// home is the slot a key of hash h is first looked for in, of slots (a
// power of two): its hash's top bits, which the slot's tag holds too, so
// that growing a table of up to 1<<tagBits slots reads no key.
func home(h, slots uint64) uint64 { return h >> (64 - bits.TrailingZeros64(slots)) }

// homeOfSlot is home for the key in slot s, if its tag says (ok).
func homeOfSlot(s, slots uint64) (i uint64, ok bool) {
	k := uint64(bits.TrailingZeros64(slots))
	if k > tagBits {
		return 0, false
	}
	return slotTag(s) >> (tagBits - k), true
}

const tagBits = 64 - offBits

func slotOf(off, hash uint64) uint64 { return hash>>offBits<<offBits | off>>3 }
func slotOff(s uint64) uint64        { return (s & (1<<offBits - 1)) << 3 }
func slotTag(s uint64) uint64        { return s >> offBits }
func hashTag(h uint64) uint64        { return h >> offBits }

// An entry's block: w0 holds the key's length (31 bits), whether a deadline
// word follows the version, and the value's length (32 bits); w1 the
// version; then the deadline, the key padded to 8 bytes, and the value.
const (
	eLens       = 0
	eVersion    = 8
	eDeadline   = 16
	hasDeadline = 1 << 31
	maxKey      = 1<<31 - 1
	maxValue    = 1<<32 - 1
)

func entryLens(w0 uint64) (keyLen, valLen uint64, deadline bool) {
	return w0 & maxKey, w0 >> 32, w0&hasDeadline != 0
}

// entryHeader is the bytes before an entry's key.
func entryHeader(deadline bool) uint64 {
	if deadline {
		return 24
	}
	return 16
}

// entrySize is the bytes of an entry's block before rounding to its class.
func entrySize(keyLen, valLen uint64, deadline bool) uint64 {
	return entryHeader(deadline) + align(keyLen) + valLen
}

func align(n uint64) uint64 { return (n + 7) &^ 7 }

// Size classes: multiples of 8 bytes up to 512, then four per power of two.
const (
	smallClasses = 64
	nClasses     = smallClasses + 4*(offBits+3-9)
)

// classOf returns the class of a block of size bytes (at least 1).
func classOf(size uint64) int {
	if size <= 512 {
		return int((size+7)/8) - 1
	}
	e := uint64(bits.Len64(size-1)) - 1 // 1<<e < size <= 1<<(e+1)
	step := uint64(1) << (e - 2)
	return smallClasses + int(e-9)*4 + int((size-1-1<<e)/step)
}

// classSize returns the bytes of a block of class c.
func classSize(c int) uint64 {
	if c < smallClasses {
		return uint64(c+1) * 8
	}
	e, m := uint64(9+(c-smallClasses)/4), uint64((c-smallClasses)%4)
	return 1<<e + (m+1)*(1<<(e-2))
}

// stack returns the offset of size class c's free stack: its array, its
// length and the array's capacity.
func stack(c int) uint64 { return hStacks + uint64(c)*24 }

// word returns the word at off. Slicing checks the bounds.
func word(m []byte, off uint64) uint64 {
	return *(*uint64)(unsafe.Pointer(unsafe.SliceData(m[off : off+8])))
}

func setWord(m []byte, off, v uint64) {
	*(*uint64)(unsafe.Pointer(unsafe.SliceData(m[off : off+8]))) = v
}

func atomicWord(m []byte, off uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(unsafe.SliceData(m[off : off+8])))
}
