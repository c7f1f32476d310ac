//go:build unix

package journal

import (
	"os"

	"golang.org/x/sys/unix"
)

func sysMap(f *os.File, size int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func sysUnmap(b []byte) { unix.Munmap(b) }
