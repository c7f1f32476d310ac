//go:build unix && !linux && !darwin

package journal

import "os"

// sysAllocate sizes f to size bytes with its blocks reserved, by writing
// zeros: the BSDs' calls for it (posix_fallocate) do not work on every file
// system, ZFS among them.
func sysAllocate(f *os.File, size int) error { return writeZeros(f, size) }

// sysDataSync flushes f to the disk.
func sysDataSync(f *os.File) error { return f.Sync() }
