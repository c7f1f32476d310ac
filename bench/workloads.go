package main

// The throughput and latency workloads (1 to 5, 8 and 9): each one a few cells
// of worker processes, ours and the peers', run one after the other so that
// they never share the two CPUs.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate/internal/redisrun"
)

// bench is one run of the tool.
type bench struct {
	cfg   config
	exe   string           // this binary, re-executed as workers
	dir   string           // the run's temporary directory
	redis *redisrun.Server // persistence off
	bars  []bar            // for the chart
	n     int              // fresh directories made
}

// fresh returns a new empty directory in the run's directory.
func (b *bench) fresh(name string) (string, error) {
	b.n++
	d := filepath.Join(b.dir, fmt.Sprintf("%s%d", name, b.n))
	return d, os.MkdirAll(d, 0o700)
}

func (b *bench) spawn(ctx context.Context, j job) (*worker, error) {
	j.ProfileDir = b.cfg.profileDir
	return spawn(ctx, b.exe, j, 2*time.Minute)
}

// cell is the outcome of one throughput cell.
type cell struct {
	opsPerSec  float64
	ownerShare float64 // the owner process's part of the ops (sharedstate)
	errors     int64
}

// throughput runs j in p processes for the configured window and returns
// the operations per second of all of them together. For sharedstate the
// processes are started one by one, so that the first is the owner: like
// any app's workers, the others then reach the state through it. With
// idleOwner an extra process is started first that owns the state and runs
// no ops, so that all p processes are proxies, as all Redis clients are.
func (b *bench) throughput(ctx context.Context, j job, p int, idleOwner bool) (cell, error) {
	if j.Target == targetState {
		dir, err := b.fresh("state")
		if err != nil {
			return cell{}, err
		}
		defer os.RemoveAll(dir)
		j.Dir = dir
	}
	// Proxies stop before the owner, so that none of them takes over.
	var ws, idle []*worker
	defer func() { stopAll(ws); stopAll(idle) }()
	if idleOwner {
		w, err := b.spawn(ctx, j)
		if err != nil {
			return cell{}, err
		}
		idle = append(idle, w)
	}
	for range p {
		w, err := b.spawn(ctx, j)
		if err != nil {
			return cell{}, err
		}
		ws = append(ws, w)
	}
	start := time.Now().Add(b.cfg.warmup + 20*time.Millisecond)
	end := start.Add(b.cfg.duration)
	for _, w := range ws {
		if err := w.send(command{Cmd: "run", Start: start.UnixNano(), End: end.UnixNano()}); err != nil {
			return cell{}, err
		}
	}
	var c cell
	var total, owner int64
	for _, w := range ws {
		r, err := w.recv(ctx, time.Until(end)+time.Minute)
		if err != nil {
			return cell{}, err
		}
		total += r.Ops
		c.errors += r.Errors
		if r.Owner {
			owner += r.Ops
		}
		if r.Errors > 0 {
			fmt.Fprintf(os.Stderr, "bench: %s %s G=%d: %d errors, first: %s\n", j.Target, j.Op, j.G, r.Errors, r.Err)
		}
	}
	c.opsPerSec = float64(total) / b.cfg.duration.Seconds()
	if total > 0 {
		c.ownerShare = float64(owner) / float64(total)
	}
	return c, nil
}

// latency runs j with one goroutine and returns the p50 and p99 of its
// operations, in µs. If server is not nil it is started first: the echo
// server, or a sharedstate worker that becomes the owner so that j is a
// proxy.
func (b *bench) latency(ctx context.Context, j job, server *job) (p50, p99 float64, err error) {
	var ws []*worker
	defer func() { stopAll(ws) }()
	if server != nil {
		w, err := b.spawn(ctx, *server)
		if err != nil {
			return 0, 0, err
		}
		ws = append(ws, w)
	}
	j.G = 1
	w, err := b.spawn(ctx, j)
	if err != nil {
		return 0, 0, err
	}
	ws = append(ws, w)
	if w.ready.Owner {
		return 0, 0, fmt.Errorf("the measuring %s worker is the owner, not a proxy", j.Target)
	}
	start := time.Now().Add(b.cfg.warmup + 20*time.Millisecond)
	end := start.Add(b.cfg.duration)
	r, err := w.call(ctx, command{Cmd: "run", Start: start.UnixNano(), End: end.UnixNano(), Latency: true}, time.Until(end)+time.Minute)
	if err != nil {
		return 0, 0, err
	}
	return r.P50 / 1e3, r.P99 / 1e3, nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// peers are the Redis clients each throughput workload is compared with.
func (b *bench) redisJobs(op string) []job {
	return []job{
		{Target: targetGoRedis, Op: op, Socket: b.redis.Addr()},
		{Target: targetRueidis, Op: op, Socket: b.redis.Addr()},
	}
}

// versusRedis runs ours and both Redis clients for each G, adding rows.
// targets sets the targets of our row for G against a peer.
func (b *bench) versusRedis(ctx context.Context, s *section, ours job, opName, group string,
	targets func(g int, peer string, r *row)) error {
	p := b.cfg.procs
	for _, g := range b.cfg.goroutines {
		peers := map[string]float64{}
		for _, pj := range b.redisJobs(ours.Op) {
			pj.G, pj.Keys, pj.ValueSize = g, ours.Keys, ours.ValueSize
			b.progress("workload %d: Redis via %s, %s, G=%d", s.ID, pj.Target, opName, g)
			c, err := b.throughput(ctx, pj, p, false)
			if err != nil {
				return err
			}
			peers[pj.Target] = c.opsPerSec
			s.add(fmt.Sprintf("Redis + %s, G=%d", pj.Target, g), c.opsPerSec, "ops/s")
		}
		j := ours
		j.G = g
		b.progress("workload %d: sharedstate %s, G=%d, %d proxies and an idle owner", s.ID, opName, g, p)
		c, err := b.throughput(ctx, j, p, true)
		if err != nil {
			return err
		}
		for _, peer := range []string{targetGoRedis, targetRueidis} {
			r := s.add(fmt.Sprintf("sharedstate %s, G=%d, %d proxies", opName, g, p), c.opsPerSec, "ops/s").vs("Redis + "+peer, peers[peer])
			if targets != nil {
				targets(g, peer, r)
			}
			b.bars = append(b.bars, bar{Group: fmt.Sprintf("%d. %s | G=%d", s.ID, group, g), Series: "vs Redis + " + peer, Ratio: r.Ratio})
		}
		b.progress("workload %d: sharedstate %s, G=%d, %d workers, the owner among them", s.ID, opName, g, p)
		if c, err = b.throughput(ctx, j, p, false); err != nil {
			return err
		}
		s.add(fmt.Sprintf("sharedstate %s, G=%d, owner + %d proxies", opName, g, p-1), c.opsPerSec, "ops/s").vs("Redis + "+targetGoRedis, peers[targetGoRedis])
		s.note("G=%d, owner + %d proxies: the owner did %.0f%% of the ops, as its own calls skip the socket", g, p-1, 100*c.ownerShare)
	}
	s.note("targets apply to the %d-proxies rows: every op crosses a process boundary, as with Redis", p)
	return nil
}

// counterAdd is workload 1.
func (b *bench) counterAdd(ctx context.Context, s *section) error {
	s.Title = fmt.Sprintf("Counter.Add vs Redis INCR, %d processes x G goroutines", b.cfg.procs)
	if err := preloadRedis(ctx, socketClient(b.redis), 0, 0); err != nil {
		return err
	}
	err := b.versusRedis(ctx, s, job{Target: targetState, Op: opAdd}, "Counter.Add", "Add", func(g int, peer string, r *row) {
		switch {
		case peer == targetGoRedis && g == 1:
			r.ratioAtLeast(1.5)
		case peer == targetGoRedis && g >= 32:
			r.ratioAtLeast(2)
		case peer == targetRueidis && g >= 32:
			r.ratioAtLeast(1.5)
		}
	})
	if err != nil {
		return err
	}
	return b.idleCPU(ctx, s)
}

// hotGoroutines are workload 9's goroutines per process: a hot key is
// about what many of them do to one entry at once.
var hotGoroutines = []int{1, 32, 200}

// hotKeyWorkload is workload 9: every goroutine of 4 proxies increments one
// map entry, by Map.Update (a read-modify-write) and by Map.Add, against
// Redis doing the same with a Lua script and with INCRBY.
func (b *bench) hotKeyWorkload(ctx context.Context, s *section) error {
	p := b.cfg.procs
	s.Title = fmt.Sprintf("One hot key: %d proxies x G goroutines increment one entry, vs Redis (Lua read-modify-write, INCRBY)", p)
	for _, op := range []struct{ op, ours, redis string }{
		{opHotUpdate, "Map.Update", "Lua GET+SET"},
		{opHotAdd, "Map.Add", "INCRBY"},
	} {
		var atOne float64
		for _, g := range hotGoroutines {
			peers := map[string]float64{}
			for _, pj := range b.redisJobs(op.op) {
				pj.G = g
				b.progress("workload 9: Redis via %s, %s, G=%d", pj.Target, op.redis, g)
				c, err := b.throughput(ctx, pj, p, false)
				if err != nil {
					return err
				}
				peers[pj.Target] = c.opsPerSec
				s.add(fmt.Sprintf("Redis %s + %s, G=%d", op.redis, pj.Target, g), c.opsPerSec, "ops/s")
			}
			b.progress("workload 9: sharedstate %s, G=%d, %d proxies and an idle owner", op.ours, g, p)
			c, err := b.throughput(ctx, job{Target: targetState, Op: op.op, G: g}, p, true)
			if err != nil {
				return err
			}
			for _, peer := range []string{targetGoRedis, targetRueidis} {
				r := s.add(fmt.Sprintf("sharedstate %s, G=%d, %d proxies", op.ours, g, p), c.opsPerSec, "ops/s").vs("Redis "+op.redis+" + "+peer, peers[peer])
				b.bars = append(b.bars, bar{Group: fmt.Sprintf("9. %s (hot key) | G=%d", op.ours, g), Series: "vs Redis + " + peer, Ratio: r.Ratio})
			}
			if g == 1 {
				atOne = c.opsPerSec
			}
			if op.op == opHotUpdate && g == hotGoroutines[len(hotGoroutines)-1] {
				s.add(fmt.Sprintf("sharedstate %s, G=%d, %d proxies", op.ours, g, p), c.opsPerSec, "ops/s").
					target(">= 30,000 ops/s", c.opsPerSec >= 30_000)
				s.add(fmt.Sprintf("sharedstate %s, G=%d, %d proxies", op.ours, g, p), c.opsPerSec, "ops/s").
					vs("the same at G=1", atOne).ratioAtLeast(0.5)
			}
		}
	}
	s.note("Updates of one key in a process go in batches, one compare-and-swap each; Add is one step at the owner")
	return nil
}

// mapLoadStore is workload 2.
func (b *bench) mapLoadStore(ctx context.Context, s *section) error {
	const keys, size = 10_000, 64
	s.Title = fmt.Sprintf("Map Load/Store 90/10 on %d keys, %d-byte values, vs Redis GET/SET, %d processes x G goroutines", keys, size, b.cfg.procs)
	if err := preloadRedis(ctx, socketClient(b.redis), keys, size); err != nil {
		return err
	}
	ours := job{Target: targetState, Op: opMap, Keys: keys, ValueSize: size, Preload: keys}
	return b.versusRedis(ctx, s, ours, "Map 90% Load/10% Store", "Map 90/10", nil)
}

// proxyLatency is workload 3.
func (b *bench) proxyLatency(ctx context.Context, s *section) error {
	reqSize, respSize := opFrameSizes()
	s.Title = fmt.Sprintf("Latency of one op from a non-owner process, 1 goroutine (frames of %d and %d bytes)", reqSize, respSize)
	if err := preloadRedis(ctx, socketClient(b.redis), 0, 0); err != nil {
		return err
	}
	type cellSpec struct {
		name   string
		j      job
		server *job
	}
	echoDir, err := b.fresh("echo")
	if err != nil {
		return err
	}
	stateDir, err := b.fresh("state")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	echo := job{Target: targetEcho, Socket: echoSocket(echoDir, false), ReqSize: reqSize, RespSize: respSize}
	echoServer := echo
	echoServer.Target = targetEchoServer
	raw := echo
	raw.Raw, raw.Socket = true, echoSocket(echoDir, true)
	rawServer := raw
	rawServer.Target = targetEchoServer
	handoff := echo
	handoff.Handoff = true
	spin := job{Target: targetSpin, Socket: filepath.Join(echoDir, "spin")}
	spinServer := spin
	spinServer.Target = targetSpinServer
	add := job{Target: targetState, Op: opAdd, Dir: stateDir, Keys: 1, ValueSize: 64, Preload: 1}
	load := job{Target: targetState, Op: opLoad, Dir: stateDir}
	mapLoad := job{Target: targetState, Op: opMapLoad, Dir: stateDir, Keys: 1}
	cells := []cellSpec{
		{"ping-pong, Go net.Conn", echo, &echoServer},
		{"ping-pong, blocking syscalls", raw, &rawServer},
		{"ping-pong, Go net.Conn, a reader goroutine's hand-off", handoff, &echoServer},
		{"ping-pong, shared memory, both sides spinning", spin, &spinServer},
		{"sharedstate Counter.Add (proxy)", add, &add},
		{"sharedstate Counter.Load (proxy)", load, &add},
		{"sharedstate Map.Load, 64-byte value (proxy)", mapLoad, &add},
		{"Redis GET, go-redis", job{Target: targetGoRedis, Op: opLoad, Socket: b.redis.Addr()}, nil},
		{"Redis INCR, go-redis", job{Target: targetGoRedis, Op: opAdd, Socket: b.redis.Addr()}, nil},
	}
	// Ratios are to the ping-pong through Go's net package: the same I/O
	// path the library takes, with nothing of the library's own.
	var floor50, floor99, raw50, raw99 float64
	var spinTail float64          // the spinning ping-pong's p99 over its p50: this machine's own tail
	reads := map[string]float64{} // p50s of the reads a proxy answers from the owner's table
	for i, c := range cells {
		b.progress("workload 3: %s", c.name)
		p50, p99, err := b.latency(ctx, c.j, c.server)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if c.j.Op == opLoad || c.j.Op == opMapLoad {
			reads[c.name] = p50
		}
		r50 := s.add(c.name+", p50", p50, "µs")
		r99 := s.add(c.name+", p99", p99, "µs")
		switch i {
		case 0:
			floor50, floor99 = p50, p99
			continue
		case 1:
			raw50, raw99 = p50, p99
		}
		r50.vs("ping-pong p50", floor50)
		r99.vs("ping-pong p99", floor99)
		switch {
		case c.j.Target == targetSpin:
			spinTail = p99 / p50
		case c.j.Target == targetState && c.j.Op == opAdd:
			r50.ratioAtMost(1.5)
			s.add(c.name+", p99 over its p50", p99/p50, "x").vs("the same of the spinning ping-pong", spinTail).valueAtMost(3)
			s.note("Counter.Add against the blocking-syscall ping-pong: p50 %.2fx, p99 %.2fx", p50/raw50, p99/raw99)
		}
	}
	// A proxy's reads come from the owner's table, with no round trip.
	get := reads["Redis GET, go-redis"]
	for _, name := range []string{"sharedstate Counter.Load (proxy)", "sharedstate Map.Load, 64-byte value (proxy)"} {
		s.add(name+", p50", reads[name], "µs").valueAtMost(1)
		s.add(name+", p50", reads[name], "µs").vs("Redis GET p50", get).ratioAtMost(0.1)
	}
	return nil
}

// ownerLocal is workload 4.
func (b *bench) ownerLocal(ctx context.Context, s *section) error {
	s.Title = "Owner-local ops (no socket), 1 goroutine, process durability, vs a Go map behind a sync.Mutex"
	dir, err := b.fresh("state")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := b.spawn(ctx, job{Target: targetState, Dir: dir, Durability: "process"})
	if err != nil {
		return err
	}
	defer w.stop()
	per := max(b.cfg.duration/2, 100*time.Millisecond)
	b.progress("workload 4: owner-local ops, %v each", per)
	r, err := w.call(ctx, command{Cmd: "local", Duration: per}, 20*per+time.Minute)
	if err != nil {
		return err
	}
	s.add("sync.Mutex + map, add", r.NS[localMutexAdd], "ns")
	s.add("sharedstate Counter.Add", r.NS[localAdd], "ns").vs("mutex map add", r.NS[localMutexAdd]).valueAtMost(300)
	s.add("sync.Mutex + map, load", r.NS[localMutexLoad], "ns")
	s.add("sharedstate Counter.Load", r.NS[localLoad], "ns").vs("mutex map load", r.NS[localMutexLoad]).valueAtMost(100)
	s.add("sharedstate Map.Load, 64-byte value", r.NS[localMapLoad], "ns").vs("mutex map load", r.NS[localMutexLoad])
	return nil
}

// pythonRecipe is workload 5.
func (b *bench) pythonRecipe(ctx context.Context, s *section) error {
	p := b.cfg.procs
	s.Title = fmt.Sprintf("The seed recipe: Python BaseManager dict + lock increment, %d processes x 1", p)
	dir, err := b.fresh("python")
	if err != nil {
		return err
	}
	b.progress("workload 5: Python manager recipe")
	py, err := runPythonManager(ctx, dir, p, b.cfg.warmup, b.cfg.duration)
	if err != nil {
		return err
	}
	b.progress("workload 5: sharedstate Counter.Add")
	c, err := b.throughput(ctx, job{Target: targetState, Op: opAdd, G: 1}, p, true)
	if err != nil {
		return err
	}
	s.add("Python manager: with lock: d[k] = d.get(k, 0) + 1", py, "ops/s")
	s.add(fmt.Sprintf("sharedstate Counter.Add, G=1, %d proxies", p), c.opsPerSec, "ops/s").vs("Python manager", py).ratioAtLeast(50)
	return nil
}

// durabilityLevels is workload 8.
func (b *bench) durabilityLevels(ctx context.Context, s *section) error {
	p, g := b.cfg.procs, slices.Max(b.cfg.goroutines)
	s.Title = fmt.Sprintf("Durability levels: Add / INCR (go-redis) throughput, %d processes x %d goroutines", p, g)
	// Each of our levels is paired with the Redis setting that survives the
	// same failures: memory with no persistence, process (every write
	// handed to the kernel before the reply) with appendfsync no, disk with
	// appendfsync always. everysec is shown for reference.
	levels := []struct{ ours, redis, redisName string }{
		{"memory", "", "Redis, persistence off"},
		{"process", "no", "Redis, AOF appendfsync no"},
		{"", "everysec", "Redis, AOF appendfsync everysec"},
		{"disk", "always", "Redis, AOF appendfsync always"},
	}
	for _, l := range levels {
		srv := b.redis
		if l.redis != "" {
			dir, err := b.fresh("redis-aof-" + l.redis)
			if err != nil {
				return err
			}
			if srv, err = startRedis(ctx, dir, l.redis); err != nil {
				return err
			}
		}
		b.progress("workload 8: %s", l.redisName)
		rc, err := b.throughput(ctx, job{Target: targetGoRedis, Op: opAdd, G: g, Socket: srv.Addr()}, p, false)
		if srv != b.redis {
			srv.Stop()
		}
		if err != nil {
			return err
		}
		s.add(l.redisName, rc.opsPerSec, "ops/s")
		if l.ours == "" {
			continue
		}
		b.progress("workload 8: sharedstate, durability %s", l.ours)
		c, err := b.throughput(ctx, job{Target: targetState, Op: opAdd, G: g, Durability: l.ours}, p, true)
		if err != nil {
			return err
		}
		r := s.add(fmt.Sprintf("sharedstate, Durability%s, %d proxies", title(l.ours), p), c.opsPerSec, "ops/s").vs(l.redisName, rc.opsPerSec)
		b.bars = append(b.bars, bar{Group: fmt.Sprintf("8. %s | vs AOF %s", l.ours, cmp.Or(l.redis, "off")), Series: "vs Redis + go-redis", Ratio: r.Ratio})
	}
	return nil
}

func title(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
