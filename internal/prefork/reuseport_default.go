//go:build unix && !freebsd

package prefork

import "golang.org/x/sys/unix"

// soReusePort is the option of ReusePort.
const soReusePort = unix.SO_REUSEPORT
