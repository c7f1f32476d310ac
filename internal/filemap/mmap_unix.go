//go:build unix

package filemap

import (
	"os"

	"golang.org/x/sys/unix"
)

// Map maps the first size bytes of f, shared with every process that maps
// it: for reading and writing, or for reading only. The mapping may reach
// past the file's end, as address space reserved for it to grow into.
func Map(f *os.File, size int, writable bool) ([]byte, error) {
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	return unix.Mmap(int(f.Fd()), 0, size, prot, unix.MAP_SHARED)
}

// Unmap unmaps what Map mapped.
func Unmap(b []byte) { unix.Munmap(b) }

// MapAnonymous maps size bytes of memory of the process's own, whose pages
// exist once written.
func MapAnonymous(size int) ([]byte, error) {
	return unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|mapNoReserve)
}
