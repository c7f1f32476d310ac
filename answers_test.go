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
// come on. Each goroutine adds to a counter of its own with deadlines of a
// few microseconds, then once with none: that last Add must report the
// counter's value, not an answer left over from an abandoned call, and
// must get its own answer at all.
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
			got, err := c.Add(lastCtx, 1)
			if err != nil {
				errs <- fmt.Errorf("counter c%d: the last Add: %w", g, err)
				return
			}
			if want, err := c.Load(ctx); err != nil || got != want {
				errs <- fmt.Errorf("counter c%d: the last Add reported %d, the counter holds %d (err %v; %d of %d calls gave up)", g, got, want, err, abandoned, calls)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
