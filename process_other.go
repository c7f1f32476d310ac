//go:build !unix

package sharedstate

// Where there is no embedded engine (see statedir.Unsupported), there are
// no client processes to watch either.

func processOf(pid int) process { return process{pid: pid} }

func (p process) exited() bool { return false }
