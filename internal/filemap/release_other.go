//go:build !linux

package filemap

// Release does nothing here: the systems other than Linux do not promise
// that advice keeps what was written to a shared mapping's pages.
func Release([]byte) {}
