//go:build !linux && !freebsd && !darwin

package table

import "time"

var start = time.Now()

// Monotonic: elsewhere there are no tables to share (see bootID), and a
// process's own clock does.
func Monotonic() int64 { return MonotonicAt(time.Now()) }

// MonotonicAt is Monotonic at t, a reading of this process's clock.
func MonotonicAt(t time.Time) int64 { return int64(t.Sub(start)) }
