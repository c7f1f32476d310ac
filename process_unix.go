//go:build unix && !linux

package sharedstate

import (
	"errors"

	"golang.org/x/sys/unix"
)

// processOf returns the process with id pid: by its id alone here, which
// the system may reuse, so an exit can be missed (and a lock kept for its
// grace).
func processOf(pid int) process { return process{pid: pid} }

// exited reports whether no process has p's id. An unknown process (pid
// 0: the system did not tell) never exits.
func (p process) exited() bool {
	return p.pid > 0 && errors.Is(unix.Kill(p.pid, 0), unix.ESRCH)
}
