//go:build unix

package sharedstate_test

// Chaos tests: worker processes hammer one state while the test SIGKILLs
// whichever of them owns it, over and over, then checks that no
// acknowledged write was lost or applied twice, that the history of every
// key is linearizable (checked with porcupine), and that the cross-process
// lock never had two holders.
//
//	go test -run Chaos -v .                      # 20 kills (10 for the lock test)
//	go test -run Chaos -v -chaos.kills=200 .     # long run

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"golang.org/x/sys/unix"

	"github.com/sharedstate/sharedstate"
)

var chaosKills = flag.Int("chaos.kills", 20, "how many owners TestChaosKillOwner kills (TestChaosLockSafety kills half as many); 200 for a long run")

const (
	chaosWorkers     = 4
	chaosGoroutines  = 8 // per worker, in TestChaosKillOwner
	chaosLockers     = 2 // goroutines per worker, in TestChaosLockSafety
	chaosCallTimeout = 30 * time.Second
	// chaosStepTimeout bounds each wait of the kill loop. It is longer than
	// a call's timeout, so that a call stuck in a takeover reports its error
	// before the loop gives up waiting for it.
	chaosStepTimeout = 45 * time.Second
	chaosStopTimeout = chaosCallTimeout + 30*time.Second
	// chaosWindow is how many operations porcupine checks at once (see
	// checkLinearizable).
	chaosWindow = 2000
	// chaosCheckTimeout bounds porcupine's search in one window, which takes
	// milliseconds when the window is linearizable but can take forever
	// when it is not.
	chaosCheckTimeout = 10 * time.Second
)

func init() {
	workerRoles["chaos"] = runChaosWorker
	workerRoles["chaoslock"] = runChaosLockWorker
}

// monotonicNow reads CLOCK_MONOTONIC, which every process on the host shares,
// so that the timestamps of different workers and of the test compare.
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// emitLine writes one line to standard output in a single write(2): lines of
// concurrent goroutines do not interleave, and a line is either wholly
// written or not at all when the process is killed.
func emitLine(format string, args ...any) {
	os.Stdout.Write(fmt.Appendf(nil, format+"\n", args...))
}

// openChaosWorker opens the state for a chaos worker role. The returned
// channel is closed when the test closes the worker's standard input: the
// signal to finish the current operation and exit. (If the test process
// dies, its workers see the same end of input and exit too.)
func openChaosWorker() (*sharedstate.State, <-chan struct{}, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
	defer cancel()
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
	if err != nil {
		return nil, nil, err
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	emitLine("ready %d", os.Getpid())
	return st, stop, nil
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// runChaosWorker loops Adds, Updates and Loads until told to stop, printing
// for each operation a line when it starts and one when it returns:
//
//	c <goroutine> <seq> <kind> <time>
//	r <goroutine> <seq> <kind> <time> <value> <time of last attempt>
//	e <goroutine> <seq> <kind> <time> <quoted error>
//
// The start line is written before the call, so that every operation that
// may have taken effect is known to the test.
//
// An Update takes effect at its last compare-and-swap, sent after its
// function's last call, so the time of that call narrows down when: the
// test uses it as the Update's start, and porcupine need not consider
// the Update (which may retry for a while under contention) taking effect
// before reads that saw the old value.
func runChaosWorker() int {
	st, stop, err := openChaosWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer st.Close()
	hits := st.Counter("hits")
	reg := sharedstate.NewMap[int64](st, "reg")
	var wg sync.WaitGroup
	for g := range chaosGoroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := 0
			var attempt int64 // when the current operation last tried
			do := func(kind string, call func(context.Context) (int64, error)) {
				seq++
				attempt = monotonicNow()
				emitLine("c %d %d %s %d", g, seq, kind, attempt)
				ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
				v, err := call(ctx)
				now := monotonicNow()
				cancel()
				if err != nil {
					emitLine("e %d %d %s %d %q", g, seq, kind, now, err.Error())
					return
				}
				emitLine("r %d %d %s %d %d %d", g, seq, kind, now, v, attempt)
			}
			inc := func(old int64, _ bool) (int64, error) {
				attempt = monotonicNow()
				return old + 1, nil
			}
			for i := 0; !stopped(stop); i++ {
				do("add", func(ctx context.Context) (int64, error) { return hits.Add(ctx, 1) })
				do("upd", func(ctx context.Context) (int64, error) { return reg.Update(ctx, "k", inc) })
				if i%4 == 3 {
					do("load", func(ctx context.Context) (int64, error) {
						v, _, err := reg.Load(ctx, "k")
						return v, err
					})
				}
			}
		}()
	}
	wg.Wait()
	return 0
}

// runChaosLockWorker takes the lock "crit" in a loop, from chaosLockers
// goroutines each with its own Mutex, printing
//
//	in <goroutine> <token> <time>     once Lock returned
//	out <goroutine> <token> <time>    before Unlock is called
//	violation <text>                  another holder was seen inside
//	notlocked <goroutine> <token> <quoted error>
//	err <goroutine> <Lock|Unlock|files> <quoted error>
func runChaosLockWorker() int {
	st, stop, err := openChaosWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaoslock:", err)
		return 1
	}
	defer st.Close()
	me, err := thisProcess()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaoslock:", err)
		return 1
	}
	dir := os.Getenv("SS_DIR")
	var wg sync.WaitGroup
	for g := range chaosLockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu := st.Mutex("crit")
			for !stopped(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
				err := mu.Lock(ctx)
				cancel()
				if err != nil {
					emitLine("err %d Lock %q", g, err.Error())
					continue
				}
				tok := mu.Token()
				emitLine("in %d %d %d", g, tok, monotonicNow())
				if err := criticalSection(dir, me, tok); err != nil {
					emitLine("err %d files %q", g, err.Error())
				}
				emitLine("out %d %d %d", g, tok, monotonicNow())
				ctx, cancel = context.WithTimeout(context.Background(), chaosCallTimeout)
				err = mu.Unlock(ctx)
				cancel()
				switch {
				case errors.Is(err, sharedstate.ErrNotLocked):
					emitLine("notlocked %d %d %q", g, tok, err.Error())
				case err != nil:
					emitLine("err %d Unlock %q", g, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	return 0
}

// criticalSection checks, through files that every worker shares, that no
// one else is inside, and that fencing tokens only grow. It prints a
// violation line for each breach it sees.
//
// The marker file names the process inside. A marker left by a holder that
// was killed inside is removed; one of a live process means two holders.
// The marker is created with link(2), so that it appears with its contents
// or not at all, and a leftover is taken away with rename(2), so that two
// overlapping holders cannot each remove the other's marker unseen.
func criticalSection(dir string, me procIdent, tok uint64) error {
	marker := filepath.Join(dir, "marker")
	mine := filepath.Join(dir, fmt.Sprintf("marker-%d-%d", me.pid, tok))
	if err := os.WriteFile(mine, fmt.Appendf(nil, "%d %d %d", me.pid, me.start, tok), 0o600); err != nil {
		return err
	}
	defer os.Remove(mine)
	placed := false
	for {
		err := os.Link(mine, marker)
		if err == nil {
			placed = true
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		taken := mine + "-seen"
		if err := os.Rename(marker, taken); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		b, err := os.ReadFile(taken)
		os.Remove(taken)
		if err != nil {
			return err
		}
		var other procIdent
		var otherTok uint64
		if _, err := fmt.Sscan(string(b), &other.pid, &other.start, &otherTok); err != nil {
			return fmt.Errorf("marker %q: %v", b, err)
		}
		if other.alive() {
			emitLine("violation token %d of pid %d entered while token %d of live pid %d was inside", tok, me.pid, otherTok, other.pid)
			break
		}
		// Left by a holder killed inside: its lock died with it.
	}

	maxFile := filepath.Join(dir, "maxtoken")
	b, err := os.ReadFile(maxFile)
	var prev uint64
	switch {
	case err == nil:
		if prev, err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return fmt.Errorf("maxtoken %q: %v", b, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if tok <= prev {
		emitLine("violation token %d of pid %d is not above token %d of an earlier holder", tok, me.pid, prev)
	} else {
		// Through rename, so that a holder killed while writing leaves the
		// old value or the new one, never a torn one.
		tmp := maxFile + "-" + strconv.FormatUint(tok, 10)
		if err := os.WriteFile(tmp, strconv.AppendUint(nil, tok, 10), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, maxFile); err != nil {
			return err
		}
	}

	// Hold the lock a little, so that owners are often killed while a
	// process holds it and others wait for it.
	time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
	if placed {
		os.Remove(marker)
	}
	return nil
}

// procIdent names a process across pid reuse: pid_max is often 32768, and a
// long run starts hundreds of processes.
type procIdent struct {
	pid   int
	start uint64 // clock ticks after boot, from /proc/<pid>/stat
}

func thisProcess() (procIdent, error) {
	start, _, err := procStat(os.Getpid())
	return procIdent{os.Getpid(), start}, err
}

// alive reports whether p is still running. A zombie counts as dead: a
// killed worker stays one until the test reaps it, and kill(pid, 0) still
// succeeds on it.
func (p procIdent) alive() bool {
	start, state, err := procStat(p.pid)
	return err == nil && start == p.start && state != 'Z' && state != 'X'
}

// procStat returns the start time and state of process pid.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64) // field 22, starttime
	return start, f[0][0], err
}

// flockHolders returns the pids holding an flock on the file at path, from
// /proc/locks, whose lines read
//
//	1: FLOCK  ADVISORY  WRITE 12345 00:1a:67890 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 12346 00:1a:67890 0 EOF   (a waiter)
//
// with the pid, then major:minor:inode of the file. Only the inode is
// compared: on overlay file systems the device shown can differ from the
// one stat reports.
func flockHolders(path string) ([]int, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, err
	}
	var pids []int
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		ino, err := strconv.ParseUint(f[5][strings.LastIndexByte(f[5], ':')+1:], 10, 64)
		if err != nil || ino != st.Ino {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil {
			return nil, fmt.Errorf("/proc/locks: %q: %v", line, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// chaosCluster runs the worker processes of a chaos test and kills their
// owner again and again.
type chaosCluster struct {
	t        *testing.T
	dir      string
	role     string
	lockPath string
	// parse handles a line of a worker's output other than "ready". It is
	// called with mu held.
	parse func(p *chaosProc, line string) error

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever anything below changes
	procs    []*chaosProc  // every worker started
	problems []string      // why the run went wrong; any stops the kill loop
	since    int64         // progress counts events after this time
	progress int
	deaths   []int64 // when each killed owner was seen dead
}

// chaosProc is one worker process; its fields are guarded by the cluster's mu.
type chaosProc struct {
	idx      int
	pid      int
	w        *worker
	stdin    io.Closer
	ready    bool
	killed   bool // by the test: its unfinished operations have unknown outcomes
	stopping bool // told to stop: it should exit by itself, with status 0
	exited   bool
	death    int64 // when the test saw it gone
}

func newChaosCluster(t *testing.T, role string, parse func(*chaosProc, string) error) *chaosCluster {
	dir := t.TempDir()
	return &chaosCluster{
		t:        t,
		dir:      dir,
		role:     role,
		lockPath: filepath.Join(dir, "app.lock"),
		parse:    parse,
		changed:  make(chan struct{}),
	}
}

// fail records a problem; the caller holds mu.
func (c *chaosCluster) fail(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
	c.broadcast()
}

func (c *chaosCluster) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// progressed counts an event (an operation served, a lock taken) that
// happened at time at; the caller holds mu.
func (c *chaosCluster) progressed(at int64) {
	if at > c.since {
		c.progress++
	}
}

func (c *chaosCluster) start() *chaosProc {
	cmd := exec.Command(os.Args[0])
	stdin, err := cmd.StdinPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	w := startWorkerCmd(c.t, cmd, c.role, "SS_DIR="+c.dir)
	c.mu.Lock()
	p := &chaosProc{idx: len(c.procs), pid: cmd.Process.Pid, w: w, stdin: stdin}
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	exited := make(chan struct{})
	go c.consume(p, exited)
	// Registered after startWorkerCmd's cleanup, so run before it: consume
	// must have reaped the process before that cleanup's own cmd.Wait.
	c.t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return p
}

// consume reads a worker's output until it exits, then reaps it.
func (c *chaosCluster) consume(p *chaosProc, exited chan<- struct{}) {
	defer close(exited)
	for line := range p.w.lines {
		c.mu.Lock()
		if strings.HasPrefix(line, "ready ") {
			p.ready = true
		} else if err := c.parse(p, line); err != nil {
			c.fail("worker %d (pid %d): %v", p.idx, p.pid, err)
		}
		c.broadcast()
		c.mu.Unlock()
	}
	// The output ended, so every line the worker wrote has been handled:
	// only now may Wait close the pipe.
	err := p.w.cmd.Wait()
	death := monotonicNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	p.exited, p.death = true, death
	switch {
	case p.killed:
	case !p.stopping:
		c.fail("worker %d (pid %d) exited unasked: %v; stderr:\n%s", p.idx, p.pid, err, tail(p.w.out.String()))
	case err != nil:
		c.fail("worker %d (pid %d) did not stop cleanly: %v; stderr:\n%s", p.idx, p.pid, err, tail(p.w.out.String()))
	}
	c.broadcast()
}

func tail(s string) string {
	const limit = 4000
	if len(s) > limit {
		return "..." + s[len(s)-limit:]
	}
	return s
}

// waitFor waits until cond, called with mu held, is true. It gives up after
// timeout, and also as soon as a problem is recorded if abort is set.
func (c *chaosCluster) waitFor(timeout time.Duration, what string, abort bool, cond func() bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok, failed, changed := cond(), abort && len(c.problems) > 0, c.changed
		c.mu.Unlock()
		switch {
		case ok:
			return nil
		case failed:
			return errChaosAborted
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("gave up after %v waiting for %s", timeout, what)
		}
	}
}

var errChaosAborted = errors.New("aborted")

// live returns the workers neither killed nor exited; the caller holds mu.
func (c *chaosCluster) live() []*chaosProc {
	var live []*chaosProc
	for _, p := range c.procs {
		if !p.killed && !p.exited {
			live = append(live, p)
		}
	}
	return live
}

// run starts the workers, and kills the owner kills times. After each kill
// it starts a replacement worker, and waits until that one has joined and
// the new owner has served some events (a random number up to maxNeed,
// counted by progressed), so that owners die at every stage of a takeover:
// while replaying, just after, or well into serving. It stops early if
// anything goes wrong; the caller reports c.problems.
func (c *chaosCluster) run(kills, maxNeed int) {
	for range chaosWorkers {
		c.start()
	}
	// Leave time for the checks and for every wait below to run out, so
	// that a stuck run fails with its own message before go test's -timeout
	// panics.
	end := time.Now().Add(24 * time.Hour)
	if d, ok := c.t.Deadline(); ok {
		end = d.Add(-chaosStopTimeout - 2*chaosStepTimeout)
	}
	// The number of events to wait for before each kill is log-uniform
	// (as often 1 as maxNeed).
	need := func() int { return 1 << rand.IntN(bits.Len(uint(maxNeed))) }
	n := need()
	err := c.waitFor(chaosStepTimeout, "the workers to start and serve", true, func() bool {
		return !slices.ContainsFunc(c.procs, func(p *chaosProc) bool { return !p.ready }) && c.progress >= n
	})
	for i := 0; i < kills && err == nil; i++ {
		if time.Now().After(end) {
			err = fmt.Errorf("stopped after %d of %d kills: the test's -timeout is near", i, kills)
			break
		}
		var victim *chaosProc
		if victim, err = c.killOwner(); err != nil {
			break
		}
		c.mu.Lock()
		c.since, c.progress = victim.death, 0
		c.deaths = append(c.deaths, victim.death)
		c.mu.Unlock()
		p := c.start()
		n := need()
		err = c.waitFor(chaosStepTimeout, fmt.Sprintf("a new owner after kill %d (of pid %d), and worker %d to join", i+1, victim.pid, p.idx), true, func() bool {
			return p.ready && c.progress >= n
		})
	}
	if err != nil && err != errChaosAborted {
		c.mu.Lock()
		c.fail("%v", err)
		c.mu.Unlock()
	}
}

// killOwner SIGKILLs the worker that holds the state's lock file, and waits
// until it is gone.
func (c *chaosCluster) killOwner() (*chaosProc, error) {
	deadline := time.Now().Add(chaosStepTimeout)
	var victim *chaosProc
	for {
		pids, err := flockHolders(c.lockPath)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		live := c.live()
		if i := slices.IndexFunc(live, func(p *chaosProc) bool { return slices.Contains(pids, p.pid) }); i >= 0 {
			victim = live[i]
			victim.killed = true // before the signal, so that its exit is expected
		}
		c.mu.Unlock()
		if victim != nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no live worker holds %s after %v (holders: %v)", c.lockPath, chaosStepTimeout, pids)
		}
		// No notice comes when an flock changes hands: poll.
		time.Sleep(time.Millisecond)
	}
	if err := victim.w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, err
	}
	err := c.waitFor(chaosStepTimeout, fmt.Sprintf("the killed owner (pid %d) to exit", victim.pid), false, func() bool { return victim.exited })
	return victim, err
}

// stop tells every live worker to stop and waits for them to exit. Those
// that do not are killed, and reported.
func (c *chaosCluster) stop() {
	c.mu.Lock()
	live := c.live()
	for _, p := range live {
		p.stopping = true
	}
	c.mu.Unlock()
	for _, p := range live {
		p.stdin.Close()
	}
	allExited := func() bool {
		return !slices.ContainsFunc(live, func(p *chaosProc) bool { return !p.exited })
	}
	if err := c.waitFor(chaosStopTimeout, "the workers to stop", false, allExited); err != nil {
		c.mu.Lock()
		c.fail("%v", err)
		for _, p := range live {
			if !p.exited {
				p.killed = true
				p.w.cmd.Process.Kill()
			}
		}
		c.mu.Unlock()
		c.waitFor(chaosStepTimeout, "the workers to die", false, allExited)
	}
}

// report fails the test with the problems recorded.
func (c *chaosCluster) report() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.problems {
		if i == 10 {
			c.t.Errorf("... and %d more problems", len(c.problems)-i)
			break
		}
		c.t.Error(p)
	}
}

// chaosOp is one operation of a worker, as the test saw it.
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
	ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
	defer cancel()
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(c.dir), quietLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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

// checkIncrements checks the increments of one key against its final
// value: each acknowledged one returned a value of its own, no higher than
// the final one, and the final value counts every acknowledged increment
// and at most every other (failed or cut short by a kill).
func checkIncrements(incs []*chaosOp, final int64) []string {
	var problems []string
	seen := make(map[int64]*chaosOp)
	acked, unknown, dups, above := 0, 0, 0, 0
	var firstDup, dupOf, firstAbove *chaosOp
	for _, op := range incs {
		if !op.known {
			unknown++
			continue
		}
		acked++
		if prev := seen[op.value]; prev != nil {
			if dups++; firstDup == nil {
				firstDup, dupOf = op, prev
			}
		}
		seen[op.value] = op
		if op.value < 1 || op.value > final {
			if above++; firstAbove == nil {
				firstAbove = op
			}
		}
	}
	if dups > 0 {
		problems = append(problems, fmt.Sprintf("%d values returned twice (the first: %d, to %v and %v): increments were lost or applied twice",
			dups, firstDup.value, dupOf, firstDup))
	}
	if above > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged increments returned values outside 1..%d, the final value (the first: %d, to %v): acknowledged writes were lost",
			above, final, firstAbove.value, firstAbove))
	}
	if int64(acked) > final || final > int64(acked+unknown) {
		problems = append(problems, fmt.Sprintf("final value %d, but %d increments were acknowledged and %d more may have been applied", final, acked, unknown))
	}
	return problems
}

// registerHistory turns the operations on one key into the input of
// checkLinearizable: Add and Update are increments that return the new
// value, Load a read.
func registerHistory(ops []*chaosOp) []registerOp {
	out := make([]registerOp, 0, len(ops))
	for _, op := range ops {
		call := op.call
		if op.known {
			call = max(call, op.attempt)
		}
		out = append(out, registerOp{
			read:   op.kind == "load",
			known:  op.known,
			value:  op.value,
			call:   call,
			ret:    op.ret,
			client: [2]int{op.proc.idx, op.g},
			meta:   op,
		})
	}
	return out
}

// registerOp is an operation on an int64 register that starts at 0: an
// increment returning the new value, or a read.
type registerOp struct {
	read      bool
	known     bool  // it returned value; else its outcome is unknown
	value     int64 // new value (increment) or value read
	call, ret int64 // an unknown increment took effect by ret, or never
	client    [2]int
	meta      fmt.Stringer // for the visualization; may be nil
}

// registerInput is the input of a porcupine operation on the register.
type registerInput struct {
	kind     registerKind
	deadline int64  // of a maybe: it took effect before this time, or never
	desc     string // why a maybe is one
}

type registerKind uint8

const (
	regInc    registerKind = iota // an increment that returned the new value
	regRead                       // a read that returned the value
	regMaybe                      // an increment that may have taken effect, or not
	regExpire                     // the deadline of the maybes due now
)

// registerState is the set of values the register may hold: those in
// [lo, hi] plus up to len(pending)/8 increments, the maybes that may still
// take effect. pending holds their deadlines, as sorted big-endian int64s
// (a string, so that states compare with ==).
//
// An exact operation spends the pending increments it needs, earliest
// deadline first; at its deadline, a maybe still pending widens the
// interval instead (it took effect or not, no later). Keeping this
// uncertainty in the state, rather than having porcupine try each maybe
// both applied and not at every place, keeps the search from exploding
// when dozens of operations are cut short or in flight across a takeover:
// linearizing a maybe as early as possible is never worse than later.
type registerState struct {
	lo, hi  int64
	pending string
}

var anyRegister = registerState{lo: math.MinInt64, hi: math.MaxInt64}

func registerModel(init registerState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s, in := state.(registerState), input.(registerInput)
			switch in.kind {
			case regMaybe:
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(in.deadline))
				i := sort.Search(len(s.pending)/8, func(i int) bool { return s.pending[8*i:8*i+8] > string(b[:]) })
				s.pending = s.pending[:8*i] + string(b[:]) + s.pending[8*i:]
				return true, s
			case regExpire:
				n := sort.Search(len(s.pending)/8, func(i int) bool {
					return int64(binary.BigEndian.Uint64([]byte(s.pending[8*i:8*i+8]))) > in.deadline
				})
				s.pending = s.pending[8*n:]
				if s.hi <= math.MaxInt64-int64(n) {
					s.hi += int64(n)
				} else {
					s.hi = math.MaxInt64
				}
				return true, s
			}
			v := output.(int64)
			before := v // the value the operation saw
			if in.kind == regInc {
				before--
			}
			spend := max(before-s.hi, 0)
			if before < s.lo || spend > int64(len(s.pending)/8) {
				return false, s
			}
			return true, registerState{lo: v, hi: v, pending: s.pending[8*spend:]}
		},
		Hash: func(state any) uint64 {
			s := state.(registerState)
			return uint64(s.lo)*0x9e3779b97f4a7c15 ^ uint64(s.hi) ^ uint64(len(s.pending))<<48
		},
		DescribeOperation: func(input, output any) string {
			switch in := input.(registerInput); in.kind {
			case regInc:
				return fmt.Sprintf("inc() → %d", output)
			case regRead:
				return fmt.Sprintf("read() → %d", output)
			case regMaybe:
				return "inc() → ? (" + in.desc + ")"
			default:
				return "deadline of the increments that may have taken effect"
			}
		},
		DescribeOperationMetadata: func(meta any) string {
			if s, ok := meta.(fmt.Stringer); ok {
				return s.String()
			}
			return ""
		},
		DescribeState: func(state any) string {
			s := state.(registerState)
			var v string
			switch {
			case s.lo == anyRegister.lo && s.hi == anyRegister.hi:
				v = "any"
			case s.lo == s.hi:
				v = strconv.FormatInt(s.lo, 10)
			default:
				v = fmt.Sprintf("%d..%d", s.lo, s.hi)
			}
			if n := len(s.pending) / 8; n > 0 {
				v += fmt.Sprintf(", and %d increments that may take effect", n)
			}
			return v
		},
	}
}

// checkLinearizable checks with porcupine that ops, the history of one
// register, is linearizable.
//
// Porcupine's memory grows with the square of the history's length, and a
// run has hundreds of thousands of operations, so it checks overlapping
// windows of about window operations (in the order of their calls) each.
// A window [t0, t1] holds the operations that overlap it. Those wholly
// inside are exact. Those that straddle an edge may have taken effect
// outside it: an increment among them becomes a maybe, and a read is
// dropped. The register is then any value at the start of every window but
// the first. This never rejects a linearizable history, and it finds any
// violation that fits in half a window, including a write lost across a
// takeover; checkIncrements sees lost and duplicated writes at any
// distance.
//
// If visualize is set, a failing window is written out as porcupine's HTML
// visualization, with deaths (the times owners were killed) marked.
func checkLinearizable(ops []registerOp, window int, deaths []int64, visualize bool) error {
	slices.SortFunc(ops, func(a, b registerOp) int { return cmp.Compare(a.call, b.call) })
	var straddling []int // operations called before the window that may overlap it
	next := 0
	for i := 0; i < len(ops); i += max(window/2, 1) {
		end := min(i+window, len(ops))
		t0 := ops[i].call
		t1 := int64(math.MinInt64)
		for _, op := range ops[i:end] {
			t1 = max(t1, op.ret)
		}
		// A long call (one waiting out a takeover) stretches the window;
		// past four times its size, the long calls become maybes instead.
		for ; end < len(ops) && ops[end].call <= t1; end++ {
			if end-i >= 4*window {
				t1 = ops[end].call - 1
				break
			}
		}
		for ; next < i; next++ {
			straddling = append(straddling, next)
		}
		straddling = slices.DeleteFunc(straddling, func(j int) bool { return ops[j].ret < t0 })

		var history []porcupine.Operation
		clients := make(map[[2]int]int) // dense ids, for the visualization
		client := func(c [2]int) int {
			id, ok := clients[c]
			if !ok {
				id = len(clients)
				clients[c] = id
			}
			return id
		}
		expiring := make(map[int64]bool)
		add := func(op registerOp) {
			in := registerInput{kind: regInc}
			switch {
			case op.known && op.call >= t0 && op.ret <= t1:
				if op.read {
					in.kind = regRead
				}
			case op.read:
				return
			default:
				in = registerInput{kind: regMaybe, deadline: math.MaxInt64, desc: "cut short"}
				if op.known {
					in.desc = fmt.Sprintf("%d, maybe outside this window", op.value)
				}
				if op.ret < t1 {
					in.deadline = op.ret + 1
					expiring[in.deadline] = true
				}
			}
			history = append(history, porcupine.Operation{
				ClientId: client(op.client),
				Input:    in,
				Call:     op.call,
				Output:   op.value,
				Return:   op.ret,
				Metadata: op.meta,
			})
		}
		for _, j := range straddling {
			add(ops[j])
		}
		for _, op := range ops[i:end] {
			if op.call <= t1 {
				add(op)
			}
		}
		for d := range expiring {
			history = append(history, porcupine.Operation{
				ClientId: client([2]int{-1, -1}),
				Input:    registerInput{kind: regExpire, deadline: d},
				Call:     d,
				Return:   d,
			})
		}
		init := anyRegister
		if i == 0 {
			init = registerState{}
		}
		model := registerModel(init)
		// Without the partial linearizations that the visualization needs,
		// which take most of the time; a failing window is checked again
		// with them.
		res := porcupine.CheckOperationsTimeout(model, history, chaosCheckTimeout)
		if res == porcupine.Ok {
			if end == len(ops) {
				break
			}
			continue
		}
		if res == porcupine.Unknown {
			// Typical of a history that is not linearizable, whose search
			// is exhaustive.
			return fmt.Errorf("porcupine found no answer within %v for %d operations from %.3fs to %.3fs (monotonic clock)",
				chaosCheckTimeout, len(history), float64(t0)/1e9, float64(t1)/1e9)
		}
		err := fmt.Errorf("not linearizable: %d operations from %.3fs to %.3fs (monotonic clock)", len(history), float64(t0)/1e9, float64(t1)/1e9)
		if !visualize {
			return err
		}
		_, info := porcupine.CheckOperationsVerbose(model, history, chaosCheckTimeout)
		var notes []porcupine.Annotation
		for _, d := range deaths {
			if t0 <= d && d <= t1 {
				notes = append(notes, porcupine.Annotation{Tag: "test", Start: d, Description: "owner killed"})
			}
		}
		info.AddAnnotations(notes)
		// Not under t.TempDir, which is deleted when the test ends.
		f, ferr := os.CreateTemp("", "sharedstate-chaos-*.html")
		if ferr == nil {
			ferr = porcupine.Visualize(model, info, f)
			f.Close()
		}
		if ferr != nil {
			return fmt.Errorf("%v (visualization failed: %v)", err, ferr)
		}
		return fmt.Errorf("%v; visualization in %s", err, f.Name())
	}
	return nil
}

// TestChaosHistoryChecker checks the checks of TestChaosKillOwner on
// made-up histories, so that a pass there means something.
func TestChaosHistoryChecker(t *testing.T) {
	inc := func(client int, call, ret, v int64) registerOp {
		return registerOp{known: true, value: v, call: call, ret: ret, client: [2]int{client}}
	}
	read := func(client int, call, ret, v int64) registerOp {
		r := inc(client, call, ret, v)
		r.read = true
		return r
	}
	lost := func(client int, call, death int64) registerOp {
		return registerOp{call: call, ret: death, client: [2]int{client}}
	}
	// A steady run: 20 increments, one after the other, by three clients.
	// The cases add to it operations cut short ("lost") and late ones.
	var base []registerOp
	v := int64(0)
	for i := range int64(20) {
		v++
		base = append(base, inc(int(i%3), 100*i, 100*i+50, v))
	}
	for _, tc := range []struct {
		name string
		ops  []registerOp
		ok   bool
	}{
		{"steady", base, true},
		{"unknown applied", append(slices.Clone(base), lost(5, 1990, 2100), read(1, 2200, 2300, 21)), true},
		{"unknown not applied", append(slices.Clone(base), lost(5, 1990, 2100), read(1, 2200, 2300, 20)), true},
		{"unknown after return", append(slices.Clone(base), lost(5, 2200, 2300), read(1, 2000, 2100, 21)), false},
		{"both unknown applied", append(slices.Clone(base), lost(5, 1990, 2100), lost(6, 1990, 2100), inc(1, 2200, 2300, 23)), true},
		{"lost acknowledged write", append(slices.Clone(base), inc(1, 2200, 2300, 20)), false},
		{"lost write seen late", append(slices.Clone(base), read(1, 5000, 5100, 19)), false},
		{"stale read", append(slices.Clone(base), read(1, 2000, 2100, 15)), false},
		{"concurrent read", append(slices.Clone(base), read(1, 940, 1500, 10)), true},
		{"unknown applied after a later write", append(slices.Clone(base), lost(5, 1960, 2100), inc(1, 1970, 2500, 21), inc(1, 2600, 2700, 23)), true},
		{"unknown applied after its process died", append(slices.Clone(base), lost(5, 1960, 2100), inc(1, 1970, 1980, 21), read(2, 2150, 2160, 21), inc(1, 2200, 2300, 23)), false},
	} {
		for _, window := range []int{4, 7, 1000} {
			err := checkLinearizable(slices.Clone(tc.ops), window, nil, false)
			if (err == nil) != tc.ok {
				t.Errorf("%s, window %d: err = %v, want ok = %v", tc.name, window, err, tc.ok)
			}
		}
	}

	mk := func(vals ...int64) []*chaosOp {
		var ops []*chaosOp
		for _, v := range vals {
			ops = append(ops, &chaosOp{proc: &chaosProc{}, value: v, known: v > 0})
		}
		return ops
	}
	for _, tc := range []struct {
		name  string
		ops   []*chaosOp
		final int64
		ok    bool
	}{
		{"exact", mk(1, 2, 3), 3, true},
		{"unknown applied", mk(1, 3, 0), 3, true},
		{"unknown not applied", mk(1, 2, 0), 2, true},
		{"duplicate", mk(1, 2, 2), 3, false},
		{"lost", mk(1, 2, 3), 2, false},
		{"extra", mk(1, 2, 3), 4, false},
	} {
		if got := checkIncrements(tc.ops, tc.final); (len(got) == 0) != tc.ok {
			t.Errorf("checkIncrements %s: %v, want ok = %v", tc.name, got, tc.ok)
		}
	}
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

// stateFiles lists the state's files in dir with their sizes, to show how
// far the journal grew and whether a snapshot was written.
func stateFiles(dir string) string {
	entries, _ := os.ReadDir(dir)
	var files []string
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "app.") {
			files = append(files, fmt.Sprintf("%s %d bytes", e.Name(), fi.Size()))
		}
	}
	return strings.Join(files, ", ")
}
