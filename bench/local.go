package main

// Owner-local operations: the owner's own calls skip the socket, so their
// cost is the library's bookkeeping (request building, the store's lock,
// the journal append). The floor is a Go map behind a sync.Mutex.

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// benchLocal measures each local operation for d, one goroutine, in ns/op.
// It runs in a worker that owns a fresh state.
func benchLocal(ctx context.Context, t target, d time.Duration) report {
	st, ok := t.(*stateTarget)
	if !ok || !st.owner() {
		return report{Err: "local ops need the owner of a sharedstate state"}
	}
	var mu sync.Mutex
	m := map[string]int64{}
	val := make([]byte, 64)
	if err := st.kv.Store(ctx, key(0), val); err != nil {
		return report{Err: err.Error()}
	}
	k := key(0)
	ops := []struct {
		name string
		fn   func() error
	}{
		{localMutexAdd, func() error {
			mu.Lock()
			m[counterName]++
			mu.Unlock()
			return nil
		}},
		{localMutexLoad, func() error {
			mu.Lock()
			_ = m[counterName]
			mu.Unlock()
			return nil
		}},
		{localAdd, func() error {
			_, err := st.ctr.Add(ctx, 1)
			return err
		}},
		{localLoad, func() error {
			_, err := st.ctr.Load(ctx)
			return err
		}},
		{localMapLoad, func() error {
			_, found, err := st.kv.Load(ctx, k)
			if err == nil && !found {
				err = fmt.Errorf("key %s not found", k)
			}
			return err
		}},
	}
	r := report{NS: map[string]float64{}}
	for _, op := range ops {
		ns, err := nsPerOp(d, op.fn)
		if err != nil {
			return report{Err: fmt.Sprintf("%s: %v", op.name, err)}
		}
		r.NS[op.name] = ns
	}
	return r
}

// Names of benchLocal's measurements.
const (
	localMutexAdd  = "mutex map add"
	localMutexLoad = "mutex map load"
	localAdd       = "Counter.Add"
	localLoad      = "Counter.Load"
	localMapLoad   = "Map.Load 64 B"
)

// nsPerOp runs op for a tenth of d to warm up, then for d, and returns the
// mean time per call. The clock is read once per thousand calls, so that
// reading it does not weigh on operations of a few nanoseconds.
func nsPerOp(d time.Duration, op func() error) (float64, error) {
	if _, err := timeOps(d/10, op); err != nil {
		return 0, err
	}
	return timeOps(d, op)
}

func timeOps(d time.Duration, op func() error) (float64, error) {
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		for range 1000 {
			if err := op(); err != nil {
				return 0, err
			}
		}
		n += 1000
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n), nil
}
