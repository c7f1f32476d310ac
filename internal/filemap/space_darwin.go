package filemap

import (
	"os"

	"golang.org/x/sys/unix"
)

// Allocate sizes f to size bytes with its blocks reserved: F_PREALLOCATE
// of the space past the file's end, then ftruncate; zeros written where
// the file system cannot preallocate.
func Allocate(f *os.File, size int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if more := int64(size) - fi.Size(); more > 0 {
		store := unix.Fstore_t{Flags: unix.F_ALLOCATEALL, Posmode: unix.F_PEOFPOSMODE, Length: more}
		if err := unix.FcntlFstore(f.Fd(), unix.F_PREALLOCATE, &store); err != nil {
			return writeZeros(f, size)
		}
	}
	return f.Truncate(int64(size))
}

// DataSync flushes f to the disk: fsync on macOS stops at the drive's
// cache, F_FULLFSYNC goes through it.
func DataSync(f *os.File) error {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_FULLFSYNC, 0); err != nil {
		return f.Sync()
	}
	return nil
}
