//go:build !unix

package store

// Where there is no embedded engine (see statedir.Unsupported), there are
// no client processes to watch either.

func ProcessOf(pid int) Process { return Process{pid: pid} }

func (p Process) Exited() bool { return false }
