package filemap

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Release lets go of the pages of b, part of a shared mapping of a file,
// whole pages only: they stay in the page cache, with what was written to
// them (Linux moves a page's dirty bit to the cache), and are read from
// it again if b is. So a file written once and not read again (a journal)
// is not counted in the memory of its writer.
func Release(b []byte) {
	page := os.Getpagesize()
	start := (page - int(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%page) % page
	if end := (len(b) - start) / page * page; start < len(b) && end > 0 {
		unix.Madvise(b[start:start+end], unix.MADV_DONTNEED)
	}
}

// Prefault makes b, part of a shared mapping of a file, ready to be
// written without a page fault: the file system's work for each first
// write of a page (a block allocated by fallocate is converted, on ext4,
// in a journal transaction) is done now rather than in the writes.
func Prefault(b []byte) {
	if len(b) == 0 || unix.Madvise(b, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	touch(b) // a kernel before 5.14
}
