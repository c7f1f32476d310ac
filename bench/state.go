package main

// The sharedstate target: one worker process of an app using the library.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/redisstate"
)

// Names inside the benchmarked state.
const (
	stateName   = "bench"
	counterName = "hits"
	mapName     = "kv"
	hotKey      = "hot" // opHotUpdate's and opHotAdd's, a key of mapName
)

type stateTarget struct {
	j    job
	st   *sharedstate.State
	ctr  *sharedstate.Counter
	kv   *sharedstate.Map[[]byte]
	hot  *sharedstate.Map[int64]
	keys []string // opMap's keys, named once rather than per op

	client io.Closer    // the Redis engine's client, closed after st
	snaps  *snapshotLog // the embedded engine's snapshots
}

func openState(ctx context.Context, j job) (*stateTarget, error) {
	d, err := parseDurability(j.Durability)
	if err != nil {
		return nil, err
	}
	// Role changes are logged at Info and Warn; takeovers are the point of
	// one workload, so only errors are worth a line.
	snaps := &snapshotLog{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})}
	st, err := sharedstate.Open(ctx, stateName,
		sharedstate.WithDir(j.Dir), sharedstate.WithDurability(d), sharedstate.WithLogger(slog.New(snaps)))
	if err != nil {
		return nil, err
	}
	t, err := newStateTarget(ctx, j, st)
	if err == nil {
		t.snaps = snaps
	}
	return t, err
}

// snapshotLog keeps what the owner logs (at Debug) of each snapshot it
// writes: how long it took, and the longest it held up operations. Other
// records go to its Handler.
type snapshotLog struct {
	slog.Handler
	mu      sync.Mutex
	paused  []int64 // ns
	took    []int64
	started int // snapshots begun
	ended   int // written, or failed
}

func (h *snapshotLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l == slog.LevelDebug || h.Handler.Enabled(ctx, l)
}

func (h *snapshotLog) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	switch r.Message {
	case "sharedstate: writing a snapshot":
		h.started++
	case "sharedstate: cannot write a snapshot":
		h.ended++
	}
	h.mu.Unlock()
	if r.Message != "sharedstate: wrote a snapshot" {
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
		return h.Handler.Handle(ctx, r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended++
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "paused":
			h.paused = append(h.paused, int64(a.Value.Duration()))
		case "took":
			h.took = append(h.took, int64(a.Value.Duration()))
		}
		return true
	})
	return nil
}

// settle waits until no snapshot is being written (or 30 s have passed):
// a snapshot in progress holds memory (the table's pre-images, a sorted
// array of a map's entries) that the steady state does not.
func (h *snapshotLog) settle() {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		busy := h.started > h.ended
		h.mu.Unlock()
		if !busy {
			return
		}
	}
}

// report returns the snapshots logged so far.
func (h *snapshotLog) report() report {
	h.mu.Lock()
	defer h.mu.Unlock()
	return report{Paused: append([]int64(nil), h.paused...), Took: append([]int64(nil), h.took...)}
}

// openRedisState opens the state on the Redis engine, through a go-redis
// client as an app would make one (see redisClient), closed with the state.
func openRedisState(ctx context.Context, j job) (*stateTarget, error) {
	var opts []sharedstate.Option
	if j.Replicas > 0 {
		opts = append(opts, redisstate.WithReplicas(j.Replicas, time.Second))
	}
	client := redisClient(j)
	st, err := redisstate.OpenClient(ctx, client, stateName, opts...)
	if err != nil {
		client.Close()
		return nil, err
	}
	t, err := newStateTarget(ctx, j, st)
	if err != nil {
		client.Close()
		return nil, err
	}
	t.client = client
	return t, nil
}

func newStateTarget(ctx context.Context, j job, st *sharedstate.State) (*stateTarget, error) {
	t := &stateTarget{j: j, st: st, ctr: st.Counter(counterName), kv: sharedstate.NewMap[[]byte](st, mapName),
		hot: sharedstate.NewMap[int64](st, mapName), keys: keyNames(j.Keys)}
	if j.Preload > 0 && st.IsOwner() {
		if err := storeKeys(ctx, t.kv, j.Preload, j.ValueSize); err != nil {
			st.Close()
			return nil, fmt.Errorf("preloading %d keys: %w", j.Preload, err)
		}
	}
	return t, nil
}

func parseDurability(s string) (sharedstate.Durability, error) {
	switch s {
	case "", "process":
		return sharedstate.DurabilityProcess, nil
	case "disk":
		return sharedstate.DurabilityDisk, nil
	case "memory":
		return sharedstate.DurabilityMemory, nil
	}
	return 0, fmt.Errorf("unknown durability %q", s)
}

func (t *stateTarget) owner() bool { return t.st.IsOwner() }
func (t *stateTarget) close() {
	t.st.Close()
	if t.client != nil {
		t.client.Close()
	}
}

func (t *stateTarget) op(g int) func(context.Context) error {
	switch t.j.Op {
	case opAdd:
		return func(ctx context.Context) error {
			_, err := t.ctr.Add(ctx, 1)
			return err
		}
	case opLoad:
		return func(ctx context.Context) error {
			_, err := t.ctr.Load(ctx)
			return err
		}
	case opMapLoad:
		return func(ctx context.Context) error {
			_, _, err := t.kv.Load(ctx, t.keys[0])
			return err
		}
	case opMap:
		r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
		val := make([]byte, t.j.ValueSize)
		return func(ctx context.Context) error {
			k := t.keys[r.IntN(len(t.keys))]
			if r.IntN(10) == 0 {
				return t.kv.Store(ctx, k, val)
			}
			_, _, err := t.kv.Load(ctx, k)
			return err
		}
	case opHotUpdate:
		return func(ctx context.Context) error {
			_, err := t.hot.Update(ctx, hotKey, func(n int64, _ bool) (int64, error) { return n + 1, nil })
			return err
		}
	case opHotAdd:
		return func(ctx context.Context) error {
			_, err := t.hot.Add(ctx, hotKey, 1)
			return err
		}
	}
	return func(context.Context) error { return fmt.Errorf("unknown op %q", t.j.Op) }
}

// key names key i of a map: 16 bytes, as the memory workload specifies.
func key(i int) string { return fmt.Sprintf("key:%012d", i) }

func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = key(i)
	}
	return keys
}

// storeKeys stores keys 0..n-1 with values of size bytes, from several
// goroutines so that a million keys load in seconds.
func storeKeys(ctx context.Context, kv *sharedstate.Map[[]byte], n, size int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	val := make([]byte, size)
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := kv.Store(ctx, key(i), val); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// touch loads keys 0..n-1 once, as a proxy that reads them all would, so
// that the memory workload counts the pages of the owner's table it maps.
func touch(ctx context.Context, t target, n int) report {
	st, ok := t.(*stateTarget)
	if !ok {
		return report{Err: "touch needs a sharedstate worker"}
	}
	for i := range n {
		if _, _, err := st.kv.Load(ctx, key(i)); err != nil {
			return report{Err: err.Error()}
		}
	}
	collect(t)
	return report{Ops: int64(n)}
}

// collect waits for a snapshot in progress to end, collects garbage and
// returns freed memory to the kernel, so that the RSS read next is the
// state's and not a snapshot's or garbage's.
func collect(t target) {
	if st, ok := t.(*stateTarget); ok && st.snaps != nil {
		st.snaps.settle()
	}
	runtime.GC()
	debug.FreeOSMemory()
}

// fill stores n keys for the memory workload, then collects garbage and
// returns freed memory to the kernel, so that the RSS read next is the
// state's and not the loading's leftovers.
func fill(ctx context.Context, t target, n, size int) report {
	st, ok := t.(*stateTarget)
	if !ok {
		return report{Err: "fill needs a sharedstate worker"}
	}
	if err := storeKeys(ctx, st.kv, n, size); err != nil {
		return report{Err: err.Error()}
	}
	collect(t)
	return report{Ops: int64(n)}
}
