package journal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// sysAllocate sizes f to size bytes with its blocks reserved: fallocate, or
// zeros written where the file system cannot reserve (some network ones).
func sysAllocate(f *os.File, size int) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size))
	if errors.Is(err, unix.EOPNOTSUPP) {
		return writeZeros(f, size)
	}
	return err
}

// sysDataSync flushes f's data to the disk.
func sysDataSync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
