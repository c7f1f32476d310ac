package filemap

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Allocate sizes f to size bytes with its blocks reserved: fallocate, or
// zeros written where the file system cannot reserve (some network ones).
func Allocate(f *os.File, size int) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size))
	if errors.Is(err, unix.EOPNOTSUPP) {
		return writeZeros(f, size)
	}
	return err
}

// DataSync flushes f's data to the disk.
func DataSync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
