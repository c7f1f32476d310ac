//go:build darwin || freebsd

package table

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// bootID identifies the host's current boot: the time it booted.
func bootID() ([16]byte, error) {
	var id [16]byte
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return id, err
	}
	binary.LittleEndian.PutUint64(id[:8], uint64(tv.Sec))
	binary.LittleEndian.PutUint64(id[8:], uint64(tv.Usec))
	return id, nil
}
