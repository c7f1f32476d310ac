package prefork

import "syscall"

// workerAttr makes a worker stop if this process dies without stopping it.
func workerAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} }
