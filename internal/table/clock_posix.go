//go:build linux || freebsd

package table

import "golang.org/x/sys/unix"

// monotonicClock is the clock Go's monotonic readings come from.
const monotonicClock = unix.CLOCK_MONOTONIC
