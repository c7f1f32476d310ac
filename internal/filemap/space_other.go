//go:build unix && !linux && !darwin

package filemap

import "os"

// Allocate sizes f to size bytes with its blocks reserved, by writing
// zeros: the BSDs' calls for it (posix_fallocate) do not work on every file
// system, ZFS among them.
func Allocate(f *os.File, size int) error { return writeZeros(f, size) }

// DataSync flushes f to the disk.
func DataSync(f *os.File) error { return f.Sync() }
