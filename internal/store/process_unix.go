//go:build unix && !linux

package store

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ProcessOf returns the Process with id pid: by its id alone here, which
// the system may reuse, so an exit can be missed (and a lock kept for its
// grace).
func ProcessOf(pid int) Process { return Process{pid: pid} }

// exited reports whether no Process has p's id. An unknown Process (pid
// 0: the system did not tell) never exits.
func (p Process) Exited() bool {
	return p.pid > 0 && errors.Is(unix.Kill(p.pid, 0), unix.ESRCH)
}
