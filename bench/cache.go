package main

// Workload 12: bounded maps and compute-once loading (issue 18): whether a
// bound holds, how a bounded map's hit ratio compares with an in-process
// LRU cache's on the same stream, and how a stampede on a cold key goes.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/sharedstate/sharedstate"
)

const (
	cacheBound      = 10_000 // entries of the bounded maps
	zipfKeys        = 10 * cacheBound
	zipfRequests    = 400_000
	zipfSkew        = 1.1
	zipfSeed        = 18
	stampedeG       = 250 // goroutines per process asking for the cold key
	stampedeRuns    = 5
	stampedeCompute = 20 * time.Millisecond // how long the computation takes
)

// cacheBytes bounds the map bounded by bytes: cacheBound entries of a
// 16-byte key and a 64-byte value (66 bytes of msgpack).
const cacheBytes = cacheBound * (16 + 66)

// Names of the bounded maps and of the stampede's counter.
const (
	bytesName    = "bytes"
	boundedName  = "bounded"
	zipfName     = "zipf"
	stampedeName = "stampede"
)

// caches is workload 12.
func (b *bench) caches(ctx context.Context, s *section) error {
	p := b.cfg.procs
	s.Title = fmt.Sprintf("Bounded maps and LoadOrCompute, %d proxies and an idle owner", p)
	dir, err := b.fresh("state")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	j := job{Target: targetState, Dir: dir, Bound: cacheBound, ValueSize: 64}
	owner, err := b.spawn(ctx, j)
	if err != nil {
		return err
	}
	defer owner.stop()
	var proxies []*worker
	for range p {
		w, err := b.spawn(ctx, j)
		if err != nil {
			return err
		}
		defer w.stop()
		proxies = append(proxies, w)
	}

	// The bound: the first bound of keys, then nine more, written across
	// the proxies.
	b.progress("workload 12: writing %d distinct keys to a map bounded at %d", 10*cacheBound, cacheBound)
	before, err := ownerMemory(ctx, owner)
	if err != nil {
		return err
	}
	if _, err := proxies[0].call(ctx, command{Cmd: "cachefill", N: cacheBound}, 5*time.Minute); err != nil {
		return err
	}
	atBound, err := ownerMemory(ctx, owner)
	if err != nil {
		return err
	}
	// The nine bounds after in two halves: the first may still grow the
	// table's files to where evictions and compactions keep them; flat is
	// the second half growing them no further.
	per := 9 * cacheBound / 2 / p
	halfway := func(half int) (procMemory, error) {
		from := cacheBound + half*per*p
		if _, err := callAll(ctx, proxies, func(i int) command {
			return command{Cmd: "cachefill", From: from + i*per, N: per}
		}); err != nil {
			return procMemory{}, err
		}
		return ownerMemory(ctx, owner)
	}
	mid, err := halfway(0)
	if err != nil {
		return err
	}
	after, err := halfway(1)
	if err != nil {
		return err
	}
	r, err := proxies[0].call(ctx, command{Cmd: "cachelen"}, time.Minute)
	if err != nil {
		return err
	}
	n := float64(r.Ops)
	s.add(fmt.Sprintf("entries after %d distinct keys written, bound %d", 10*cacheBound, cacheBound), n, "entries").
		target("within 5% of the bound", n >= 0.95*cacheBound && n <= 1.05*cacheBound)
	// The same by bytes, across the proxies at once.
	per = 10 * cacheBound / p
	if _, err := callAll(ctx, proxies, func(i int) command {
		return command{Cmd: "cachefill", From: i * per, N: per, Bytes: true}
	}); err != nil {
		return err
	}
	if r, err = proxies[0].call(ctx, command{Cmd: "cachelen", Bytes: true}, time.Minute); err != nil {
		return err
	}
	size, bound := float64(r.Ops)/1e3, float64(cacheBytes)/1e3
	s.add(fmt.Sprintf("bytes after %d distinct keys written, bound %.0f kB", 10*cacheBound, bound), size, "kB").
		target("within 5% of the bound", size >= 0.95*bound && size <= 1.05*bound)
	s.add("owner RSS growth, first bound of keys", atBound.rss-before.rss, "MiB")
	s.add("owner RSS growth, the next 4.5 bounds", mid.rss-atBound.rss, "MiB")
	s.add("owner RSS growth, the last 4.5 bounds", after.rss-mid.rss, "MiB").
		target("flat: under a quarter of the first bound's", after.rss-mid.rss <= (atBound.rss-before.rss)/4)

	// The hit ratio, against golang-lru of the same size on the same
	// stream.
	b.progress("workload 12: Zipf(%v) stream of %d requests over %d keys, cache of %d", zipfSkew, zipfRequests, zipfKeys, cacheBound)
	reps, err := callAll(ctx, proxies, func(i int) command {
		return command{Cmd: "zipf", Part: i, Parts: p, N: zipfRequests}
	})
	if err != nil {
		return err
	}
	hits := 0
	for _, r := range reps {
		hits += int(r.Ops)
	}
	ours, theirs := 100*float64(hits)/zipfRequests, 100*lruHitRatio()
	s.add(fmt.Sprintf("golang-lru hits, %d entries, one process", cacheBound), theirs, "%")
	s.add(fmt.Sprintf("bounded Map hits, %d entries, %d proxies", cacheBound, p), ours, "%").vs("golang-lru", theirs).
		target("within 10% of golang-lru", ours >= 0.9*theirs)

	// Stampedes: every goroutine of every proxy asks for one cold key at
	// one instant.
	b.progress("workload 12: %d stampedes of %d processes x %d goroutines on a cold key", stampedeRuns, p, stampedeG)
	computes := 0
	lags, err := stampedeLags(ctx, proxies, "stampede", func(r report) { computes += int(r.Computed) })
	if err != nil {
		return err
	}
	floor, err := stampedeLags(ctx, proxies, "wakefloor", func(report) {})
	if err != nil {
		return err
	}
	s.add(fmt.Sprintf("computations in %d stampedes of %d callers", stampedeRuns, p*stampedeG), float64(computes), "computations").
		target(fmt.Sprintf("exactly %d, one each", stampedeRuns), computes == stampedeRuns)
	median, worst := len(lags)/2, len(lags)-1
	s.add(fmt.Sprintf("Go alone: %d goroutines parked on a channel per proxy, last to run after it closed, median of 5", stampedeG), floor[median], "ms")
	s.add("Go alone: the same, worst of 5", floor[worst], "ms")
	s.add("last caller answered after the computation returned, median of 5", lags[median], "ms").vs("Go alone", floor[median])
	s.add("last caller answered after the computation returned, worst of 5", lags[worst], "ms").vs("Go alone", floor[worst]).
		target("<= 2 ms", lags[worst] <= 2)
	return nil
}

// stampedeLags runs stampedeRuns of cmd (stampede or wakefloor) in every
// proxy at once, each run's callers starting at one instant, and returns,
// sorted, each run's time from the computation's return (the first
// channel's closing, for wakefloor) to its last caller's answer, in ms. seen
// gets every report.
func stampedeLags(ctx context.Context, proxies []*worker, cmd string, seen func(report)) ([]float64, error) {
	var lags []float64
	for run := range stampedeRuns {
		start := time.Now().Add(100 * time.Millisecond).UnixNano()
		reps, err := callAll(ctx, proxies, func(int) command {
			return command{Cmd: cmd, N: run, Start: start}
		})
		if err != nil {
			return nil, err
		}
		var returned, last int64
		for _, r := range reps {
			seen(r)
			if r.Returned != 0 { // only the process that computed, in a stampede
				returned = min(cmp.Or(returned, r.Returned), r.Returned)
			}
			last = max(last, r.Last)
		}
		lags = append(lags, float64(last-returned)/1e6)
	}
	slices.Sort(lags)
	return lags, nil
}

// callAll sends each worker its command at once and waits for every report.
func callAll(ctx context.Context, ws []*worker, cmd func(i int) command) ([]report, error) {
	reps := make([]report, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = w.call(ctx, cmd(i), 5*time.Minute)
			if errs[i] == nil && reps[i].Err != "" {
				errs[i] = errors.New(reps[i].Err)
			}
		}()
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}

// zipfStream returns the workload's stream of keys, the same in every
// process.
func zipfStream() []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(zipfSeed, 0)), zipfSkew, 1, zipfKeys-1)
	stream := make([]uint64, zipfRequests)
	for i := range stream {
		stream[i] = z.Uint64()
	}
	return stream
}

// lruHitRatio is golang-lru's hit ratio on the stream, as a cache: a miss
// adds the key.
func lruHitRatio() float64 {
	c, _ := lru.New[uint64, struct{}](cacheBound)
	hits := 0
	for _, k := range zipfStream() {
		if _, ok := c.Get(k); ok {
			hits++
		} else {
			c.Add(k, struct{}{})
		}
	}
	return float64(hits) / zipfRequests
}

// cacheTarget is what the cache commands need of a worker.
func cacheTarget(t target) (*stateTarget, error) {
	st, ok := t.(*stateTarget)
	if !ok || st.j.Bound == 0 {
		return nil, errors.New("the cache commands need a sharedstate worker with a bound")
	}
	return st, nil
}

// boundedMap returns the map bounded by entries, or with c.Bytes the one
// bounded by bytes.
func boundedMap(st *stateTarget, c command) *sharedstate.Map[[]byte] {
	if c.Bytes {
		return sharedstate.NewMap[[]byte](st.st, bytesName, sharedstate.WithMaxBytes(cacheBytes))
	}
	return sharedstate.NewMap[[]byte](st.st, boundedName, sharedstate.WithMaxEntries(st.j.Bound))
}

// cacheFill stores keys From..From+N-1 in a bounded map.
func cacheFill(ctx context.Context, t target, c command) report {
	st, err := cacheTarget(t)
	if err != nil {
		return report{Err: err.Error()}
	}
	m := boundedMap(st, c)
	val := make([]byte, st.j.ValueSize)
	for i := c.From; i < c.From+c.N; i++ {
		if err := m.Store(ctx, key(i), val); err != nil {
			return report{Err: err.Error()}
		}
	}
	return report{Ops: int64(c.N)}
}

// cacheLen reports the entries of a bounded map, or with c.Bytes the bytes
// of its keys and encoded values.
func cacheLen(ctx context.Context, t target, c command) report {
	st, err := cacheTarget(t)
	if err != nil {
		return report{Err: err.Error()}
	}
	m := boundedMap(st, c)
	if !c.Bytes {
		n, err := m.Len(ctx)
		if err != nil {
			return report{Err: err.Error()}
		}
		return report{Ops: int64(n)}
	}
	var size int64
	err = m.Range(ctx, func(key string, v []byte) bool {
		size += int64(len(key) + 2 + len(v)) // msgpack's bin 8: 2 bytes of header
		return true
	})
	if err != nil {
		return report{Err: err.Error()}
	}
	return report{Ops: size}
}

// zipfPart plays this process's part of the Zipf stream against a bounded
// map used as a cache (a miss stores the key), and reports its hits in Ops.
func zipfPart(ctx context.Context, t target, c command) report {
	st, err := cacheTarget(t)
	if err != nil {
		return report{Err: err.Error()}
	}
	m := sharedstate.NewMap[[]byte](st.st, zipfName, sharedstate.WithMaxEntries(st.j.Bound))
	val := make([]byte, st.j.ValueSize)
	var hits int64
	for i, k := range zipfStream() {
		if i%c.Parts != c.Part {
			continue
		}
		_, ok, err := m.Load(ctx, key(int(k)))
		if err == nil && !ok {
			err = m.Store(ctx, key(int(k)), val)
		}
		if err != nil {
			return report{Err: err.Error()}
		}
		if ok {
			hits++
		}
	}
	return report{Ops: hits}
}

// stampede has stampedeG goroutines ask for the cold key of run N at
// Start, and reports whether this process computed it and when the
// computation returned, and when its last caller was answered.
func stampede(ctx context.Context, t target, c command) report {
	st, err := cacheTarget(t)
	if err != nil {
		return report{Err: err.Error()}
	}
	m := sharedstate.NewMap[[]byte](st.st, stampedeName, sharedstate.WithMaxEntries(st.j.Bound))
	k := fmt.Sprintf("cold:%d", c.N)
	var computed, returned atomic.Int64
	r := callers(c.Start, func() error {
		_, _, err := m.LoadOrCompute(ctx, k, func(ctx context.Context) ([]byte, error) {
			computed.Add(1)
			time.Sleep(stampedeCompute)
			returned.Store(time.Now().UnixNano())
			return make([]byte, st.j.ValueSize), nil
		})
		return err
	})
	r.Computed, r.Returned = computed.Load(), returned.Load()
	return r
}

// wakeFloor is a stampede's floor in Go itself: stampedeG goroutines park
// on a channel at Start, which closes stampedeCompute later, in every
// process at once. It reports when it closed and when the last goroutine
// ran, with no state, no socket and no process waiting for another.
func wakeFloor(c command) report {
	done := make(chan struct{})
	var closed int64
	go func() {
		sleepUntil(c.Start + stampedeCompute.Nanoseconds())
		closed = time.Now().UnixNano()
		close(done)
	}()
	r := callers(c.Start, func() error { <-done; return nil })
	r.Returned = closed // written before done closed, read after every caller saw it
	return r
}

// callers runs call in stampedeG goroutines from Start, and reports when the
// last of them returned, or the first error.
func callers(start int64, call func() error) report {
	answered := make([]int64, stampedeG) // each caller's own slot: no contention added to what is measured
	var wg sync.WaitGroup
	errs := make(chan error, stampedeG)
	for i := range stampedeG {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleepUntil(start)
			err := call()
			answered[i] = time.Now().UnixNano()
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return report{Err: err.Error()}
	}
	return report{Last: slices.Max(answered)}
}
