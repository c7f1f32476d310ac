//go:build !linux && !freebsd && !darwin

package table

import "time"

var start = time.Now()

// Monotonic: elsewhere there are no tables to share (see bootID), and a
// process's own clock does.
func Monotonic() int64 { return int64(time.Since(start)) }
