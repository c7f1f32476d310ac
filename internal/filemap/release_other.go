//go:build !linux

package filemap

// Release does nothing here: the systems other than Linux do not promise
// that advice keeps what was written to a shared mapping's pages.
func Release([]byte) {}

// Prefault makes b, part of a shared mapping of a file, ready to be
// written without a page fault, by writing to each of its pages.
func Prefault(b []byte) { touch(b) }
