//go:build unix

package sharedstate_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestAnswerToItsCall: calls of a proxy that give up while their answers
// are on the way (the context ends after the request left) never hand
// those answers to the calls after them, which reuse the channels answers
// come on. Each goroutine adds 1 to a counter of its own with deadlines of
// a few microseconds, then adds a delta larger than all of those together
// with no deadline: its answer must include that delta (an answer left over
// from an abandoned call does not), and it must come at all. (The abandoned
// Adds may still be applied after it: they were never answered.)
func TestAnswerToItsCall(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "answers")
	proxy := open(t, dir, "answers")
	if proxy.IsOwner() {
		t.Fatal("the second State is the owner")
	}
	ctx := testContext(t)
	const goroutines, calls = 8, 2000
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := proxy.Counter(fmt.Sprintf("c%d", g))
			abandoned := 0
			for i := range calls {
				callCtx, cancel := context.WithTimeout(ctx, time.Duration(i%20)*time.Microsecond)
				if _, err := c.Add(callCtx, 1); err != nil {
					abandoned++
				}
				cancel()
			}
			// An answer taken by another call leaves this one waiting:
			// a deadline, so that it fails rather than hangs.
			lastCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			const last = 1 << 40
			got, err := c.Add(lastCtx, last)
			if err != nil {
				errs <- fmt.Errorf("counter c%d: the last Add: %w", g, err)
				return
			}
			if got < last || got > last+calls {
				errs <- fmt.Errorf("counter c%d: the last Add of %d reported %d, not its own answer (%d of %d calls gave up)", g, int64(last), got, abandoned, calls)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
