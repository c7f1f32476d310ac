//go:build linux || freebsd || darwin

package table

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMonotonicIsTheSystemsClock: every process reads the same clock.
func TestMonotonicIsTheSystemsClock(t *testing.T) {
	var ts unix.Timespec
	before := Monotonic()
	unix.ClockGettime(monotonicClock, &ts)
	after := Monotonic()
	// Off by at most half a system call each way; a millisecond is plenty.
	if sys := ts.Nano(); sys < before-int64(time.Millisecond) || sys > after+int64(time.Millisecond) {
		t.Fatalf("the system's clock read %d between %d and %d", sys, before, after)
	}
}
