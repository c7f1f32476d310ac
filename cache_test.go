//go:build unix

package sharedstate_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

const stampedeGoroutines = 250

func init() {
	// stampede: once the map "signal" has "go", 250 goroutines ask for
	// one cold key at once; the computation counts itself in "computed".
	workerRoles["stampede"] = func() int {
		return withState(func(ctx context.Context, st *sharedstate.State) error {
			signal := sharedstate.NewMap[bool](st, "signal")
			cache := sharedstate.NewMap[string](st, "cache")
			computed := st.Counter("computed")
			fmt.Println("ready")
			for {
				if _, ok, err := signal.Load(ctx, "go"); err != nil || ok {
					if err != nil {
						return err
					}
					break
				}
				time.Sleep(time.Millisecond)
			}
			var wg sync.WaitGroup
			var wrong atomic.Int64
			errs := make(chan error, stampedeGoroutines)
			for range stampedeGoroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, _, err := cache.LoadOrCompute(ctx, "cold", func(ctx context.Context) (string, error) {
						if _, err := computed.Add(ctx, 1); err != nil {
							return "", err
						}
						time.Sleep(100 * time.Millisecond) // the others ask meanwhile
						return "computed", nil
					})
					if err != nil {
						errs <- err
					} else if v != "computed" {
						wrong.Add(1)
					}
				}()
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				return err
			}
			fmt.Println("wrong", wrong.Load())
			return nil
		})
	}
	// computeblock: claims the computation of "cache"/"k" and never ends it.
	workerRoles["computeblock"] = func() int {
		return withState(func(ctx context.Context, st *sharedstate.State) error {
			if os.Getenv("SS_OWNER") == "true" && !st.IsOwner() {
				return fmt.Errorf("not the owner")
			}
			_, _, err := sharedstate.NewMap[string](st, "cache").LoadOrCompute(ctx, "k", func(ctx context.Context) (string, error) {
				fmt.Println("computing")
				<-ctx.Done()
				return "", ctx.Err()
			})
			return err
		})
	}
}

// withState runs fn with the state "app" in SS_DIR, for a worker role.
func withState(fn func(ctx context.Context, st *sharedstate.State) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
	if err == nil {
		err = fn(ctx, st)
		st.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestStampedeAcrossProcesses: 4 processes of 250 goroutines each ask for
// one cold key at once; it is computed once, and every caller gets it.
func TestStampedeAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir, "app")
	ctx := testContext(t)
	var workers []*worker
	for range 4 {
		w := startWorker(t, "stampede", "SS_DIR="+dir)
		w.expectLine(t, "ready")
		workers = append(workers, w)
	}
	if err := sharedstate.NewMap[bool](st, "signal").Store(ctx, "go", true); err != nil {
		t.Fatal(err)
	}
	for i, w := range workers {
		if wrong := w.expectLine(t, "wrong"); wrong != "0" {
			t.Errorf("worker %d: %s callers got another value than the one computed", i, wrong)
		}
		w.wait(t)
	}
	if n, err := st.Counter("computed").Load(ctx); err != nil || n != 1 {
		t.Errorf("one cold key asked for by 1,000 callers in 4 processes was computed %d times (%v), want once", n, err)
	}
}

// TestComputingProcessKilled: a process that computes an entry is killed;
// a caller waiting for the computation takes it over, and not before. The
// killed process is a proxy (its connection ends) or the owner (a
// takeover).
func TestComputingProcessKilled(t *testing.T) {
	for _, owner := range []bool{false, true} {
		t.Run(map[bool]string{false: "proxy", true: "owner"}[owner], func(t *testing.T) {
			dir := t.TempDir()
			ctx := testContext(t)
			var st *sharedstate.State
			if !owner {
				st = open(t, dir, "app")
			}
			w := startWorker(t, "computeblock", "SS_DIR="+dir, "SS_OWNER="+strconv.FormatBool(owner))
			w.expectLine(t, "computing")
			if owner {
				st = open(t, dir, "app")
			}
			var runs atomic.Int64
			got := make(chan string, 1)
			go func() {
				v, _, err := sharedstate.NewMap[string](st, "cache").LoadOrCompute(ctx, "k", func(context.Context) (string, error) {
					runs.Add(1)
					return "taken over", nil
				})
				if err != nil {
					v = err.Error()
				}
				got <- v
			}()
			time.Sleep(200 * time.Millisecond)
			if n := runs.Load(); n != 0 {
				t.Fatalf("a waiter computed %d times while the computation was alive", n)
			}
			st.Locks(ctx, func(l sharedstate.LockInfo) bool {
				t.Errorf("Locks lists %q, a computation's claim", l.Name)
				return true
			})
			st.Names(ctx, sharedstate.KindLock, func(name string, _ int64) bool {
				t.Errorf("Names lists the lock %q, a computation's claim", name)
				return true
			})
			w.cmd.Process.Kill()
			select {
			case v := <-got:
				if v != "taken over" || runs.Load() != 1 {
					t.Errorf("after the computing process died: %q, %d computations; want the waiter's, once", v, runs.Load())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the waiter did not take the computation over from the dead process")
			}
		})
	}
}

// TestComputeInOneProcess: the calls of one process for one cold key wait
// for one of them; each gets a value of its own, even one that holds
// references; a computation that panics leaves the next caller to compute.
func TestComputeInOneProcess(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "app") // the owner
	st := open(t, dir, "app")
	ctx := testContext(t)
	type item struct {
		Tags []string
		N    int
	}
	bytesMap := sharedstate.NewMap[[]byte](st, "bytes")
	items := sharedstate.NewMap[item](st, "items")
	var runs atomic.Int64
	const callers = 20
	got := make(chan []byte, callers)
	gotItems := make(chan item, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			v, _, err := bytesMap.LoadOrCompute(ctx, "k", func(context.Context) ([]byte, error) {
				runs.Add(1)
				time.Sleep(50 * time.Millisecond)
				return []byte("value"), nil
			})
			if err != nil {
				t.Error(err)
			}
			got <- v
		}()
		go func() {
			defer wg.Done()
			v, _, err := items.LoadOrCompute(ctx, "k", func(context.Context) (item, error) {
				runs.Add(1)
				time.Sleep(50 * time.Millisecond)
				return item{Tags: []string{"a"}, N: 1}, nil
			})
			if err != nil {
				t.Error(err)
			}
			gotItems <- v
		}()
	}
	wg.Wait()
	close(got)
	close(gotItems)
	if n := runs.Load(); n != 2 {
		t.Errorf("%d computations of two cold keys by %d callers each, want 2", n, callers)
	}
	var values [][]byte
	for v := range got {
		values = append(values, v)
	}
	// A caller's value is its own to change: no two share memory.
	arrays := make(map[*byte]bool)
	for _, v := range values {
		if string(v) != "value" || arrays[&v[0]] {
			t.Fatalf("a caller got %q, or the same bytes as another caller", v)
		}
		arrays[&v[0]] = true
	}
	tags := make(map[*string]bool)
	for v := range gotItems {
		if v.N != 1 || len(v.Tags) != 1 || v.Tags[0] != "a" || tags[&v.Tags[0]] {
			t.Fatalf("a caller got %+v, or the same tags as another caller", v)
		}
		tags[&v.Tags[0]] = true
	}

	// A computation that panics: its caller panics, the one waiting
	// computes.
	started := make(chan struct{})
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		bytesMap.LoadOrCompute(ctx, "p", func(context.Context) ([]byte, error) {
			close(started)
			time.Sleep(50 * time.Millisecond)
			panic("compute broke")
		})
	}()
	<-started
	v, loaded, err := bytesMap.LoadOrCompute(ctx, "p", func(context.Context) ([]byte, error) { return []byte("after"), nil })
	if err != nil || loaded || string(v) != "after" {
		t.Errorf("after a computation panicked: %q, loaded %v, %v; want this caller's own computation", v, loaded, err)
	}
	if p := <-panicked; p != "compute broke" {
		t.Errorf("the computation's caller recovered %v, want its panic", p)
	}
}

// TestEvictionsSeen: a proxy's Watch reports the entries a bounded map
// evicts, and Stats counts them.
func TestEvictionsSeen(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, "app") // the owner
	st := open(t, dir, "app")
	ctx := testContext(t)
	m := sharedstate.NewMap[int](st, "bounded", sharedstate.WithMaxEntries(10))
	changes, err := m.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := m.Store(ctx, strconv.Itoa(i), i); err != nil {
			t.Fatal(err)
		}
	}
	evicted := 0
	for evicted < 20 {
		select {
		case c := <-changes:
			if c.Evicted {
				if !c.Deleted {
					t.Errorf("%+v: an eviction is a removal too", c)
				}
				evicted++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Watch reported %d of 20 evictions", evicted)
		}
	}
	if s, err := st.Stats(ctx); err != nil || s.Evictions != 20 || s.Entries != 10 {
		t.Errorf("Stats: %d evictions, %d entries (%v); want 20 and 10", s.Evictions, s.Entries, err)
	}
}
