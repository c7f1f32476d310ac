//go:build !linux

package prefork

import "syscall"

// workerAttr is nil: a worker outlives this process if it dies without
// stopping it (only Linux has Pdeathsig).
func workerAttr() *syscall.SysProcAttr { return nil }
