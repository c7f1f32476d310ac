//go:build unix && !linux

package sharedstate

import (
	"errors"

	"golang.org/x/sys/unix"
)

// process identifies a process: by its id alone here, which the system may
// reuse, so an exit can be missed (and a lock kept for its grace).
type process struct {
	pid int
}

// processOf returns the process with id pid.
func processOf(pid int) process { return process{pid: pid} }

// exited reports whether no process has p's id.
func (p process) exited() bool {
	return errors.Is(unix.Kill(p.pid, 0), unix.ESRCH)
}
