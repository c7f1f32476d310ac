package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// idleWindow is how long idleCPU leaves the processes idle.
const idleWindow = 10 * time.Second

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux the bench runs on).
const clockTick = 10 * time.Millisecond

// idleCPU starts an owner and b.cfg.procs proxies, has the proxies make
// calls for a moment (so that every connection and its mailbox is in use),
// then leaves them idle and adds the CPU time they took meanwhile: a state
// with no traffic must cost nothing, whatever spins under load.
func (b *bench) idleCPU(ctx context.Context, s *section) error {
	dir, err := b.fresh("idle")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	j := job{Target: targetState, Op: opAdd, Dir: dir, G: 1}
	var ws []*worker
	defer func() { stopAll(ws) }()
	for range b.cfg.procs + 1 {
		w, err := b.spawn(ctx, j)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(500 * time.Millisecond)
	for _, w := range ws[1:] {
		if err := w.send(command{Cmd: "run", Start: start.UnixNano(), End: end.UnixNano()}); err != nil {
			return err
		}
	}
	for _, w := range ws[1:] {
		if _, err := w.recv(ctx, time.Until(end)+time.Minute); err != nil {
			return err
		}
	}
	before, err := cpuTime(ws)
	if err != nil {
		s.note("CPU while idle not measured: %v", err)
		return nil
	}
	select {
	case <-time.After(idleWindow):
	case <-ctx.Done():
		return ctx.Err()
	}
	after, err := cpuTime(ws)
	if err != nil {
		return err
	}
	used := after - before
	s.add(fmt.Sprintf("CPU taken in %v idle, owner + %d proxies", idleWindow, b.cfg.procs), float64(used)/float64(time.Millisecond), "ms").
		valueAtMost(float64(idleWindow/100) / float64(time.Millisecond)) // 1 % of one core
	return nil
}

// cpuTime returns the user and system CPU time the workers' processes
// have taken so far.
func cpuTime(ws []*worker) (time.Duration, error) {
	var total time.Duration
	for _, w := range ws {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.pid))
		if err != nil {
			return 0, err
		}
		// The command name, in parentheses, may hold spaces: the fields
		// counted are those after it, utime and stime the 12th and 13th.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat: unexpected layout", w.pid)
		}
		for _, s := range f[11:13] {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, err
			}
			total += time.Duration(n) * clockTick
		}
	}
	return total, nil
}
