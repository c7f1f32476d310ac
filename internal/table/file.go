package table

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/sharedstate/sharedstate/internal/filemap"
	"github.com/sharedstate/sharedstate/internal/statedir"
)

// reservations are the sizes of address space tried for a table, largest
// first: the first bounds the entries of a state (64 GiB, a billion small
// ones), and leaves room for a thousand states in a process, each mapped
// twice if it is both their owner and a reader (128 TiB of address space
// on amd64); a process whose address space is limited (ulimit -v) gets
// what it can.
var reservations = []uint64{64 << 30, 4 << 30, 256 << 20}

// File is a table's file, mapped: its owner's Table, or a View.
type File struct {
	f  *os.File
	m  []byte
	id statedir.FileID
}

// ID is the file's identity, to tell it from a file made in its place.
func (f *File) ID() statedir.FileID { return f.id }

// Close unmaps the file. Nothing read from it may be used after.
func (f *File) Close() error {
	filemap.Unmap(f.m)
	if f.f == nil { // NewMemory's
		return nil
	}
	return f.f.Close()
}

// Create makes a new empty table as name in dir, in place of any, and
// returns it with its owner's side.
func Create(dir *statedir.Dir, name string) (*File, *Table, error) {
	boot, err := bootID()
	if err != nil {
		return nil, nil, err
	}
	var salt [8]byte
	rand.Read(salt[:])
	f, err := dir.CreateTemp(name)
	if err != nil {
		return nil, nil, err
	}
	file, t, err := mapOwner(f, func(m []byte) error {
		if err := allocate(f, growStep); err != nil {
			return err
		}
		format(m, growStep, boot, binary.LittleEndian.Uint64(salt[:]))
		return nil
	})
	if err == nil {
		err = dir.Commit(f, name, false)
	}
	if err != nil {
		if file != nil {
			filemap.Unmap(file.m)
		}
		dir.Discard(f, name)
		return nil, nil, err
	}
	return file, t, nil
}

// OpenOwner opens the table name in dir for a new owner, finishing what
// the last one left (see recoverIntent). A table of another boot is
// ErrOtherBoot: rebuild it.
func OpenOwner(dir *statedir.Dir, name string) (*File, *Table, error) {
	f, err := dir.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	file, t, err := mapOwner(f, nil)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return file, t, nil
}

// mapOwner maps f for its owner, after init (if not nil) has made it a
// table, and opens the table.
func mapOwner(f *os.File, init func(m []byte) error) (*File, *Table, error) {
	file, err := mapFile(f, true)
	if err != nil {
		return nil, nil, err
	}
	if init != nil {
		if err := init(file.m); err != nil {
			filemap.Unmap(file.m)
			return nil, nil, err
		}
	}
	fi, err := f.Stat()
	if err == nil {
		var boot [16]byte
		if boot, err = bootID(); err == nil {
			var t *Table
			t, err = open(file.m, uint64(fi.Size()), boot, func(size uint64) error { return allocate(f, size) })
			if err == nil {
				return file, t, nil
			}
		}
	}
	filemap.Unmap(file.m)
	return nil, nil, err
}

// OpenView maps the table name in dir for reading it while owner writes
// it: once owner does not (Claim), reads fail with ErrRetired.
func OpenView(dir *statedir.Dir, name string, owner uint64) (*File, *View, error) {
	f, err := dir.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	file, err := mapFile(f, false)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	var v *View
	fi, err := f.Stat()
	if err == nil {
		v, err = newView(file.m, uint64(fi.Size()), owner)
	}
	if err != nil {
		file.Close()
		return nil, nil, err
	}
	return file, v, nil
}

// mapFile maps f with the largest reservation the process can have, or
// for readers the one the table's owner has, which the table may grow into.
func mapFile(f *os.File, writable bool) (*File, error) {
	id, err := statedir.IDOf(f)
	if err != nil {
		return nil, err
	}
	sizes := reservations
	if !writable {
		var hdr [hReserve + 8]byte
		if _, err := f.ReadAt(hdr[:], 0); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, f.Name(), err)
		}
		sizes = []uint64{binary.NativeEndian.Uint64(hdr[hReserve:])}
	}
	for _, size := range sizes {
		if size < hEnd || size > maxOffset+8 {
			return nil, fmt.Errorf("%w: %s: a reservation of %d bytes", ErrCorrupt, f.Name(), size)
		}
		var m []byte
		if m, err = filemap.Map(f, int(size), writable); err == nil {
			return &File{f: f, m: m, id: id}, nil
		}
	}
	return nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
}

// allocate makes f size bytes long, its blocks reserved.
func allocate(f *os.File, size uint64) error {
	if err := filemap.Allocate(f, int(size)); err != nil {
		return fmt.Errorf("%w: growing %s to %d bytes: %v", ErrFull, f.Name(), size, err)
	}
	return nil
}
