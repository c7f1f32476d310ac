//go:build unix

package sharedstate_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// TestCombinedAdds: proxies' Adds of one counter go in batches, and still
// each call gets a value of its own: the values given out by the owner and
// two proxies, 32 goroutines each, are exactly 1 to N, as if the calls ran
// one after another.
func TestCombinedAdds(t *testing.T) {
	dir := t.TempDir()
	states := []*sharedstate.State{open(t, dir, "app"), open(t, dir, "app"), open(t, dir, "app")}
	ctx := testContext(t)
	const goroutines, each = 32, 200
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	for _, st := range states {
		c := st.Counter("hits")
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := make([]int64, 0, each)
				for range each {
					v, err := c.Add(ctx, 1)
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, v)
				}
				mu.Lock()
				got = append(got, mine...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("the %dth smallest value given out is %d: values repeat or skip", i+1, v)
		}
	}
	if n := len(got); n != len(states)*goroutines*each {
		t.Fatalf("%d values for %d Adds", n, len(states)*goroutines*each)
	}

	// A caller that gives up while its Add waits for a batch returns its
	// context's error at once.
	c := states[1].Counter("hits")
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	var failed sync.WaitGroup
	for range 64 {
		failed.Add(1)
		go func() {
			defer failed.Done()
			for short.Err() == nil {
				if _, err := c.Add(short, 1); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("an Add whose context ended: %v", err)
				}
			}
		}()
	}
	failed.Wait()
}
