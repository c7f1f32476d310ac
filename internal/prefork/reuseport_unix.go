//go:build unix

package prefork

import "golang.org/x/sys/unix"

func reusePort(fd uintptr) error { return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, soReusePort, 1) }
