// Package filemap is what the state's files that every process maps need
// of the system: mapping them, and growing them with their blocks reserved,
// so that a full disk is an error when a file grows, not a SIGBUS when a
// process writes to its mapping.
package filemap

import "os"

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
