//go:build linux || freebsd || darwin

package table

import (
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The owner and the readers of a table agree on the time through the
// system's monotonic clock, which every process of the host reads alike
// (Go's monotonic readings count from each process's start, so they do
// not): a reader finds the store's time, which expiries follow, as
// Monotonic plus the offset the owner published (Claim).

var anchor struct {
	once sync.Once
	at   time.Time // a reading of Go's clock
	mono int64     // the system's monotonic clock then, in nanoseconds
}

// Monotonic returns the system's monotonic clock (CLOCK_MONOTONIC, on
// macOS CLOCK_UPTIME_RAW, the ones Go's clock reads) in nanoseconds,
// through Go's clock: no system call. It is off by up to half a system
// call, the same in every call of a process.
func Monotonic() int64 { return MonotonicAt(time.Now()) }

// MonotonicAt is Monotonic at t, a reading of Go's clock (with its
// monotonic part): exact for an instant read before, with no race between
// two clocks.
func MonotonicAt(t time.Time) int64 {
	anchor.once.Do(setAnchor)
	return anchor.mono + int64(t.Sub(anchor.at))
}

// setAnchor reads Go's clock between two readings of the system's, and
// keeps the closest pair of a few tries.
func setAnchor() {
	best := int64(math.MaxInt64)
	for range 32 {
		var before, after unix.Timespec
		unix.ClockGettime(monotonicClock, &before)
		at := time.Now()
		unix.ClockGettime(monotonicClock, &after)
		if d := after.Nano() - before.Nano(); d < best {
			best, anchor.at, anchor.mono = d, at, before.Nano()+d/2
		}
	}
}
