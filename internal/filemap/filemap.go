// Package filemap is what the state's files that every process maps need
// of the system: mapping them, and growing them with their blocks reserved,
// so that a full disk is an error when a file grows, not a SIGBUS when a
// process writes to its mapping.
package filemap

import (
	"os"
	"sync/atomic"
	"unsafe"
)

// writeZeros reserves blocks where the file system has no call for it:
// writing zeros from the file's end to size allocates them, but on a file
// system that copies blocks on write (ZFS, btrfs) a later write may still
// find the disk full.
func writeZeros(f *os.File, size int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for off := fi.Size(); off < int64(size); off += int64(len(zeros)) {
		n := min(int64(len(zeros)), int64(size)-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// touch writes to each page of b, which begins on a page: it adds 0 to
// each page's first word, a write the compiler keeps.
func touch(b []byte) {
	page := os.Getpagesize()
	for i := 0; i+4 <= len(b); i += page {
		atomic.AddUint32((*uint32)(unsafe.Pointer(&b[i])), 0)
	}
}
