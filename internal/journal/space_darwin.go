package journal

import (
	"os"

	"golang.org/x/sys/unix"
)

// sysAllocate sizes f to size bytes with its blocks reserved: F_PREALLOCATE
// of the space past the file's end, then ftruncate; zeros written where
// the file system cannot preallocate.
func sysAllocate(f *os.File, size int) error {
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

// sysDataSync flushes f to the disk: fsync on macOS stops at the drive's
// cache, F_FULLFSYNC goes through it.
func sysDataSync(f *os.File) error {
	if _, err := unix.FcntlInt(f.Fd(), unix.F_FULLFSYNC, 0); err != nil {
		return f.Sync()
	}
	return nil
}
