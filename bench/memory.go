package main

// Workload 7: what a million small entries cost in memory, in the owner
// process, in all the workers that read them, and in redis-server.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procMemory is the resident set of a process, from /proc/PID/status, in
// MiB: the total (VmRSS) and its anonymous and file-backed parts (the
// journal is a mapped file).
type procMemory struct{ rss, anon, file float64 }

func readProcMemory(pid int) (procMemory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMemory{}, err
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "VmRSS":
			dst = &m.rss
		case "RssAnon":
			dst = &m.anon
		case "RssFile":
			dst = &m.file
		default:
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if err != nil {
			return m, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		*dst = kb / 1024
	}
	return m, sc.Err()
}

// ownerMemory reads w's memory once it has collected its garbage, which
// an owner serving other processes' calls, allocating nothing of its own
// meanwhile, may not have done for a long time.
func ownerMemory(ctx context.Context, w *worker) (procMemory, error) {
	if _, err := w.call(ctx, command{Cmd: "collect"}, time.Minute); err != nil {
		return procMemory{}, err
	}
	return readProcMemory(w.pid)
}

// stateMemory returns the owner's memory growth from storing keys entries
// of valueSize bytes, at the given durability, and the growth of the Pss
// of the owner and 3 proxies that then read every key (the owner's table
// pages that they share counted once between them), in MiB.
func (b *bench) stateMemory(ctx context.Context, durability string, keys, valueSize int) (owner procMemory, pss float64, err error) {
	dir, err := b.fresh("state")
	if err != nil {
		return procMemory{}, 0, err
	}
	defer os.RemoveAll(dir)
	j := job{Target: targetState, Dir: dir, Durability: durability, ValueSize: valueSize}
	w, err := b.spawn(ctx, j)
	if err != nil {
		return procMemory{}, 0, err
	}
	defer w.stop()
	before, err := readProcMemory(w.pid)
	if err != nil {
		return procMemory{}, 0, err
	}
	pssBefore, err := readPss(w.pid)
	if err != nil {
		return procMemory{}, 0, err
	}
	if _, err := w.call(ctx, command{Cmd: "fill", N: keys}, 5*time.Minute); err != nil {
		return procMemory{}, 0, err
	}
	after, err := readProcMemory(w.pid)
	if err != nil {
		return procMemory{}, 0, err
	}
	owner = procMemory{after.rss - before.rss, after.anon - before.anon, after.file - before.file}
	ws := []*worker{w}
	for range 3 {
		p, err := b.spawn(ctx, j)
		if err != nil {
			return owner, 0, err
		}
		defer p.stop()
		p0, err := readPss(p.pid)
		if err != nil {
			return owner, 0, err
		}
		pssBefore += p0
		if _, err := p.call(ctx, command{Cmd: "touch", N: keys}, 5*time.Minute); err != nil {
			return owner, 0, err
		}
		ws = append(ws, p)
	}
	for _, p := range ws {
		v, err := readPss(p.pid)
		if err != nil {
			return owner, 0, err
		}
		pss += v
	}
	return owner, pss - pssBefore, nil
}

// readPss returns a process's proportional set size in MiB: its resident
// pages, each shared one divided among the processes that map it.
func readPss(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup has no Pss", pid)
}

// redisMemory returns redis-server's used_memory_rss growth, in MiB, from
// the same entries set through pipelines, on a server of its own.
func (b *bench) redisMemory(ctx context.Context, keys, valueSize int) (growth, total float64, err error) {
	dir, err := b.fresh("redis-mem")
	if err != nil {
		return 0, 0, err
	}
	srv, err := startRedis(ctx, dir, "")
	if err != nil {
		return 0, 0, err
	}
	defer srv.Stop()
	c := socketClient(srv)
	defer c.Close()
	before, err := infoField(ctx, c, "memory", "used_memory_rss")
	if err != nil {
		return 0, 0, err
	}
	if err := preloadRedis(ctx, c, keys, valueSize); err != nil {
		return 0, 0, err
	}
	after, err := infoField(ctx, c, "memory", "used_memory_rss")
	return (after - before) / (1 << 20), after / (1 << 20), err
}

// memory is workload 7.
func (b *bench) memory(ctx context.Context, s *section) error {
	keys, size := b.cfg.bigKeys, 8
	s.Title = fmt.Sprintf("Memory for %d keys (16-byte keys, %d-byte values): growth of the owner's RSS, and of the Pss of all workers, vs Redis used_memory_rss", keys, size)
	b.progress("workload 7: Redis memory")
	redisMiB, redisTotal, err := b.redisMemory(ctx, keys, size)
	if err != nil {
		return err
	}
	s.add("Redis used_memory_rss growth", redisMiB, "MiB")
	for _, d := range []string{"process", "memory"} {
		b.progress("workload 7: sharedstate memory, durability %s", d)
		m, pss, err := b.stateMemory(ctx, d, keys, size)
		if err != nil {
			return err
		}
		r := s.add(fmt.Sprintf("sharedstate owner VmRSS growth, Durability%s", title(d)), m.rss, "MiB").vs("Redis", redisMiB)
		if d == "process" {
			r.ratioAtMost(1)
		}
		// Rows are values in a slice: each is done with before the next.
		r = s.add(fmt.Sprintf("sharedstate Pss growth, owner + 3 proxies that read every key, Durability%s", title(d)), pss, "MiB").vs("Redis", redisMiB)
		if d == "process" {
			r.ratioAtMost(0.8)
		}
		s.note("Durability%s: RssAnon +%.1f MiB, RssFile +%.1f MiB (the mapped journal and table)", title(d), m.anon, m.file)
	}
	s.note("Redis used_memory_rss after loading: %.1f MiB in all; the owner's RSS is read once it has no snapshot in progress, after runtime.GC and debug.FreeOSMemory", redisTotal)
	return nil
}
