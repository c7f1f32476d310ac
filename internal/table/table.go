package table

import (
	"errors"
	"fmt"

	"github.com/sharedstate/sharedstate/internal/filemap"
)

var (
	// ErrCorrupt means that the table's bytes are inconsistent while no
	// transaction changes them: damaged, not torn.
	ErrCorrupt = errors.New("table: corrupt")
	// ErrFull means that the table has no room to grow: its reservation of
	// address space is used up, or the disk holding its file is full.
	ErrFull = errors.New("table: no room to grow")
	// ErrTooLarge means a key or a value beyond what an entry holds.
	ErrTooLarge = errors.New("table: key or value too large")
)

// Table is a table as its owner, its only writer, has it.
type Table struct {
	m    []byte // the whole reservation, mapped read-write
	salt uint64
	// grow makes the first size bytes of m usable: the file's length.
	grow func(size uint64) error
	tx   Tx
	// frozen, if not nil, is the table as it was at a Freeze, which the
	// commits keep until Thaw.
	frozen *Frozen
	// pending are the blocks a Thaw freed that no commit has yet.
	pending []freed
}

// growStep is the least the file grows by, and its first size beyond the
// header: small, for the many states that stay small.
const growStep = 64 << 10

// format makes m, whose first size bytes are usable and zero, an empty
// table written in boot.
func format(m []byte, size uint64, boot [16]byte, salt uint64) {
	setWord(m, hMagic, magic)
	setWord(m, hFormat, format2)
	copy(m[hBoot:hBoot+16], boot[:])
	setWord(m, hSalt, salt)
	setWord(m, hReserve, uint64(len(m)))
	setWord(m, hSize, size)
	setWord(m, hBump, hEnd)
}

// open returns the owner's side of the table in m, checking its header and
// finishing the transaction an earlier owner left (see recoverIntent).
// fileSize is the length of the file behind m.
func open(m []byte, fileSize uint64, boot [16]byte, grow func(uint64) error) (*Table, error) {
	if err := checkHeader(m, fileSize); err != nil {
		return nil, err
	}
	if [16]byte(m[hBoot:hBoot+16]) != boot {
		return nil, ErrOtherBoot
	}
	t := &Table{m: m, salt: word(m, hSalt), grow: grow}
	if err := t.recoverIntent(); err != nil {
		return nil, err
	}
	return t, nil
}

// ErrOtherBoot means a table written before the host last booted: what it
// holds may be torn (its pages were written back to the disk in no order),
// so it is rebuilt instead of read.
var ErrOtherBoot = errors.New("table: written before the last boot")

// checkHeader checks the words of the header that readers and owners rely
// on, in m, mapped from a file of fileSize bytes.
func checkHeader(m []byte, fileSize uint64) error {
	if uint64(len(m)) < hEnd || fileSize < hEnd {
		return fmt.Errorf("%w: %d bytes, less than a header", ErrCorrupt, min(uint64(len(m)), fileSize))
	}
	switch size, bump := word(m, hSize), word(m, hBump); {
	case word(m, hMagic) != magic:
		return fmt.Errorf("%w: not a table", ErrCorrupt)
	case word(m, hFormat) != format2:
		return fmt.Errorf("%w: format %d, not %d", ErrCorrupt, word(m, hFormat), format2)
	case size > fileSize || size > uint64(len(m)) || size > maxOffset:
		return fmt.Errorf("%w: %d bytes in use, of a file of %d mapped for %d", ErrCorrupt, size, fileSize, len(m))
	case bump < hEnd || bump > size:
		return fmt.Errorf("%w: arena end %d outside %d-%d", ErrCorrupt, bump, hEnd, size)
	}
	return nil
}

// ensure makes the first n bytes of the reservation usable.
func (t *Table) ensure(n uint64) error {
	size := word(t.m, hSize)
	if n <= size {
		return nil
	}
	if n > uint64(len(t.m)) || n > maxOffset {
		return fmt.Errorf("%w: %d bytes needed, %d reserved", ErrFull, n, len(t.m))
	}
	grown := min((max(n, 2*size)+growStep-1)&^(growStep-1), uint64(len(t.m)))
	if err := t.grow(grown); err != nil {
		return err
	}
	atomicWord(t.m, hSize).Store(grown)
	return nil
}

// Position is a place in the owner's journal: the file, by its salt, and
// an offset in it. A table whose position is P holds the effects of the
// journal's records before P and of none after it, so a new owner that
// opens the table needs to replay only the records from P on. The zero
// Position is no place: the table is not to be trusted for any journal (it
// was being rebuilt, or its owner keeps no journal of its contents).
type Position struct{ Journal, Offset uint64 }

// Position returns the position of the table's last transaction.
func (t *Table) Position() Position {
	return Position{Journal: word(t.m, hJournal), Offset: word(t.m, hOffset)}
}

// Reserve makes room for a transaction that writes n bytes of blocks, and
// may rehash a namespace or grow a free stack, before the operation it
// publishes is journaled: so that a full disk refuses the operation, and a
// Commit never fails for lack of space.
func (t *Table) Reserve(n uint64) error {
	bump := word(t.m, hBump)
	return t.ensure(bump + n + bump/4 + growStep)
}

// NewMemory returns a table in memory of its own, for a process that
// reads a state's files without owning it, and for tests. Close unmaps it.
func NewMemory() (*File, *Table, error) {
	var m []byte
	var err error
	for _, size := range reservations {
		if m, err = filemap.MapAnonymous(int(size)); err == nil {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	format(m, uint64(len(m)), [16]byte{}, 0)
	t, err := open(m, uint64(len(m)), [16]byte{}, nil)
	if err != nil {
		filemap.Unmap(m)
		return nil, nil, err
	}
	return &File{m: m}, t, nil
}

// Claim makes the table owner's, whose store's time is Monotonic plus
// clock, for the views that read it for that owner (see OpenView).
func (t *Table) Claim(owner uint64, clock int64) error {
	tx := t.Begin()
	tx.set(hOwner, owner)
	tx.set(hClock, uint64(clock))
	return tx.Commit()
}

// Retired reports whether the table has no owner (Retire).
func (t *Table) Retired() bool { return word(t.m, hOwner) == 0 }

// Retire tells the views of the table's last owner that it is not theirs
// anymore: a new owner writes elsewhere, and their reads go to it.
func (t *Table) Retire() error { return t.Claim(0, 0) }
