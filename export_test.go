//go:build unix

package sharedstate

import "time"

// WithClockShift runs a state's wall clock off by shift, for the tests of
// package sharedstate_test.
func WithClockShift(shift time.Duration) Option {
	return func(c *config) { c.clock = func() time.Time { return time.Now().Add(shift) } }
}

// AwaitCompacted is awaitCompacted, for the tests of package
// sharedstate_test.
var AwaitCompacted = awaitCompacted
