//go:build unix

package sharedstate_test

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

type chaosOp struct {
	kind      string // "add", "upd" or "load"
	proc      *chaosProc
	g, seq    int
	call, ret int64 // ret is 0 while pending
	attempt   int64 // start of its last attempt, if known: it took effect after
	value     int64
	err       string // the error it returned
	known     bool   // it returned a value
}

func (op *chaosOp) String() string {
	if op.proc.idx < 0 {
		return "the test's final read"
	}
	return fmt.Sprintf("worker %d (pid %d), goroutine %d, op %d", op.proc.idx, op.proc.pid, op.g, op.seq)
}

// chaosOps is the history of TestChaosKillOwner; it is guarded by the
// cluster's mu.
type chaosOps struct {
	c       *chaosCluster
	ops     []*chaosOp
	pending map[[3]int]*chaosOp // by worker, goroutine, seq
	errors  []*chaosOp
}

func (h *chaosOps) parse(p *chaosProc, line string) error {
	f := strings.SplitN(line, " ", 6) // the error, last, may hold spaces
	if len(f) < 5 {
		return fmt.Errorf("unexpected line %q", line)
	}
	g, err1 := strconv.Atoi(f[1])
	seq, err2 := strconv.Atoi(f[2])
	at, err3 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("line %q: %v", line, err)
	}
	key := [3]int{p.idx, g, seq}
	if f[0] == "c" {
		op := &chaosOp{kind: f[3], proc: p, g: g, seq: seq, call: at, attempt: at}
		h.ops = append(h.ops, op)
		h.pending[key] = op
		return nil
	}
	op := h.pending[key]
	if op == nil || len(f) < 6 {
		return fmt.Errorf("line %q: no such operation started", line)
	}
	delete(h.pending, key)
	op.ret = at
	switch f[0] {
	case "r":
		if _, err := fmt.Sscan(f[5], &op.value, &op.attempt); err != nil {
			return fmt.Errorf("line %q: %v", line, err)
		}
		op.known = true
		h.c.progressed(at)
	case "e":
		msg, err := strconv.Unquote(f[5])
		if err != nil {
			msg = f[5]
		}
		op.err = msg
		h.errors = append(h.errors, op)
		if len(h.errors) == 1 { // stop killing: the run has failed
			h.c.fail("worker %d (pid %d): %s returned an error: %s", p.idx, p.pid, op.kind, msg)
		}
	default:
		return fmt.Errorf("unexpected line %q", line)
	}
	return nil
}

// TestChaosKillOwner kills the owner again and again while workers add to a
// counter and increment a map entry, and checks that each acknowledged
// operation took effect exactly once, no operation failed, and both keys'
// histories are linearizable.
func TestChaosKillOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short mode")
	}
	began := time.Now()
	h := &chaosOps{pending: make(map[[3]int]*chaosOp)}
	c := newChaosCluster(t, "chaos", h.parse)
	h.c = c
	c.run(*chaosKills, 1<<13)
	c.stop()
	ran := time.Since(began)
	c.report() // first: why the run stopped, if it did

	// Operations cut short by a kill may or may not have taken effect
	// before their process died, and not after: the process was the owner,
	// which applies its own operations itself.
	c.mu.Lock()
	var unfinished []*chaosOp
	for _, op := range h.pending {
		op.ret = op.proc.death
		if !op.proc.killed {
			unfinished = append(unfinished, op)
		}
	}
	kills := len(c.deaths)
	deaths := slices.Clone(c.deaths)
	c.mu.Unlock()
	for _, op := range unfinished {
		t.Errorf("worker %d (pid %d) exited during its %s %d.%d", op.proc.idx, op.proc.pid, op.kind, op.g, op.seq)
	}

	// (a) No operation failed: calls wait for the next owner, and retries
	// are answered exactly once.
	if n := len(h.errors); n > 0 {
		var b strings.Builder
		for _, op := range h.errors[:min(n, 5)] {
			fmt.Fprintf(&b, "\n\tworker %d (pid %d) %s: %s", op.proc.idx, op.proc.pid, op.kind, op.err)
		}
		t.Errorf("%d operations returned an error; the first:%s", n, b.String())
	}

	// Read the outcome as a new process would, once every worker is gone.
	ctx, st := c.reopen()
	hitsCall := monotonicNow()
	hits, err := st.Counter("hits").Load(ctx)
	hitsRet := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	kCall := monotonicNow()
	k, _, err := sharedstate.NewMap[int64](st, "reg").Load(ctx, "k")
	kRet := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}

	// (b), (c): every acknowledged increment counted once; the unknown
	// ones at most once.
	var adds, updates, loads []*chaosOp
	var maxLatency time.Duration
	for _, op := range h.ops {
		switch op.kind {
		case "add":
			adds = append(adds, op)
		case "upd":
			updates = append(updates, op)
		default:
			loads = append(loads, op)
		}
		if op.known {
			maxLatency = max(maxLatency, time.Duration(op.ret-op.call))
		}
	}
	for _, e := range checkIncrements(adds, hits) {
		t.Errorf("counter hits: %s", e)
	}
	for _, e := range checkIncrements(updates, k) {
		t.Errorf("map reg, key k: %s", e)
	}

	// (d) Linearizability of each key, with the final reads.
	final := func(v, call, ret int64) *chaosOp {
		return &chaosOp{kind: "load", proc: &chaosProc{idx: -1, pid: os.Getpid()}, call: call, ret: ret, value: v, known: true}
	}
	for _, key := range []struct {
		name string
		ops  []*chaosOp
	}{
		{"hits", append(slices.Clone(adds), final(hits, hitsCall, hitsRet))},
		{"k", append(append(slices.Clone(updates), loads...), final(k, kCall, kRet))},
	} {
		if err := checkLinearizable(registerHistory(key.ops), chaosWindow, deaths, true); err != nil {
			t.Errorf("%s: %v", key.name, err)
		}
	}

	// (e) What the owner keeps for retries went with the processes.
	savedAnswersWithin(t, st, 0, "once every worker is dead")

	t.Logf("state files: %s", stateFiles(c.dir))
	t.Logf("%d owners killed in %v, checked in %v; %d operations (%d adds, %d updates, %d loads; %d errors); slowest call %v; final hits=%d k=%d",
		kills, ran.Round(time.Millisecond), (time.Since(began) - ran).Round(time.Millisecond), len(h.ops), len(adds), len(updates), len(loads), len(h.errors), maxLatency, hits, k)
}

// lockSection is one acquisition of the lock, as the test saw it.
type lockSection struct {
	proc        *chaosProc
	g           int
	token       uint64
	enter, exit int64 // exit is 0 if the holder was killed inside
}

// lockHistory is the history of TestChaosLockSafety; it is guarded by the
// cluster's mu.
type lockHistory struct {
	c          *chaosCluster
	sections   []*lockSection
	inside     map[[2]int]*lockSection // by worker, goroutine
	lastEnter  map[*chaosProc]int64
	violations []string
	errors     []string
	notLocked  int
}

func (h *lockHistory) parse(p *chaosProc, line string) error {
	kind, rest, _ := strings.Cut(line, " ")
	switch kind {
	case "in", "out":
		var g int
		var tok uint64
		var at int64
		if _, err := fmt.Sscan(rest, &g, &tok, &at); err != nil {
			return fmt.Errorf("line %q: %v", line, err)
		}
		key := [2]int{p.idx, g}
		if kind == "in" {
			s := &lockSection{proc: p, g: g, token: tok, enter: at}
			h.sections = append(h.sections, s)
			h.inside[key] = s
			h.lastEnter[p] = at
			h.c.progressed(at)
			return nil
		}
		s := h.inside[key]
		if s == nil || s.token != tok {
			return fmt.Errorf("line %q: not inside", line)
		}
		delete(h.inside, key)
		s.exit = at
	case "violation":
		h.violations = append(h.violations, fmt.Sprintf("worker %d: %s", p.idx, rest))
		h.c.fail("worker %d (pid %d): %s", p.idx, p.pid, rest)
	case "notlocked", "err":
		// "notlocked <goroutine> <token> <error>", "err <goroutine> <what> <error>"
		f := strings.SplitN(rest, " ", 3)
		if len(f) != 3 {
			return fmt.Errorf("unexpected line %q", line)
		}
		msg, err := strconv.Unquote(f[2])
		if err != nil {
			msg = f[2]
		}
		if kind == "notlocked" {
			h.notLocked++
			h.c.fail("worker %d (pid %d): Unlock of token %s after a takeover: %s", p.idx, p.pid, f[1], msg)
		} else {
			h.errors = append(h.errors, msg)
			h.c.fail("worker %d (pid %d): %s: %s", p.idx, p.pid, f[1], msg)
		}
	default:
		return fmt.Errorf("unexpected line %q", line)
	}
	return nil
}

// TestChaosLockSafety kills the owner again and again while every worker
// takes a lock in a loop, and checks that the lock never had two holders,
// that fencing tokens only grew, and that waiters still get the lock.
func TestChaosLockSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: not in -short mode")
	}
	began := time.Now()
	h := &lockHistory{inside: make(map[[2]int]*lockSection), lastEnter: make(map[*chaosProc]int64)}
	c := newChaosCluster(t, "chaoslock", h.parse)
	h.c = c
	c.run(max(*chaosKills/2, 1), 256)

	// Waiters eventually acquire: every worker alive now takes the lock
	// after the last kill.
	c.mu.Lock()
	last := int64(0)
	if len(c.deaths) > 0 {
		last = c.deaths[len(c.deaths)-1]
	}
	aborted := len(c.problems) > 0
	c.mu.Unlock()
	if !aborted {
		err := c.waitFor(chaosStepTimeout, "every worker to take the lock after the last kill", true, func() bool {
			return !slices.ContainsFunc(c.live(), func(p *chaosProc) bool { return h.lastEnter[p] <= last })
		})
		if err != nil && err != errChaosAborted {
			c.mu.Lock()
			c.fail("%v", err)
			c.mu.Unlock()
		}
	}
	c.stop()
	c.report() // first: why the run stopped, if it did

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range h.inside {
		if !s.proc.killed {
			t.Errorf("worker %d (pid %d) exited inside the critical section", s.proc.idx, s.proc.pid)
		}
	}
	// Violations, errors and failed Unlocks are among the problems that
	// report printed: here, only their counts.
	if n := len(h.violations); n > 0 {
		t.Errorf("%d violations seen by the workers", n)
	}
	if n := len(h.errors); n > 0 {
		t.Errorf("%d errors from Lock, Unlock or the files", n)
	}
	if h.notLocked > 0 {
		t.Errorf("%d Unlocks returned ErrNotLocked: locks of surviving holders were lost in a takeover", h.notLocked)
	}
	if len(h.sections) == 0 {
		t.Fatal("no critical section entered")
	}

	// Tokens grow in the order holders entered (enter times are after the
	// grant, exit times before the release, so for holders that did not
	// overlap the order of entry is the order of grant).
	sections := slices.Clone(h.sections)
	slices.SortFunc(sections, func(a, b *lockSection) int { return cmp.Compare(a.enter, b.enter) })
	reported := 0
	for i := 1; i < len(sections) && reported < 5; i++ {
		if a, b := sections[i-1], sections[i]; b.token <= a.token {
			t.Errorf("token %d (worker %d) entered after token %d (worker %d)", b.token, b.proc.idx, a.token, a.proc.idx)
			reported++
		}
	}
	// No two completed sections overlap. One cut short by a kill has no
	// known end; the marker file covers it.
	var prev *lockSection
	reported = 0
	for _, s := range sections {
		if s.exit == 0 {
			continue
		}
		if prev != nil && s.enter <= prev.exit && reported < 5 {
			t.Errorf("token %d (worker %d, pid %d) entered %v before token %d (worker %d, pid %d) left",
				s.token, s.proc.idx, s.proc.pid, time.Duration(prev.exit-s.enter), prev.token, prev.proc.idx, prev.proc.pid)
			reported++
		}
		if prev == nil || s.exit > prev.exit {
			prev = s
		}
	}
	t.Logf("%d owners killed in %v; %d critical sections; last token %d",
		len(c.deaths), time.Since(began).Round(time.Millisecond), len(h.sections), sections[len(sections)-1].token)
}
