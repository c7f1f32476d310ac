//go:build unix

package sharedstate_test

// Chaos tests: worker processes hammer one state while the test SIGKILLs
// whichever of them owns it, over and over, then checks that no
// acknowledged write was lost or applied twice, that the history of every
// key is linearizable (checked with porcupine), and that the cross-process
// lock never had two holders. This file is their harness (the workers and
// the cluster of them); chaos_model_test.go checks a history;
// chaos_test.go holds the tests.
//
//	go test -run Chaos -v .                      # 20 kills (10 for the lock test)
//	go test -run Chaos -v -chaos.kills=200 .     # long run

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// reopen opens the state as a new process would once every worker is
// gone, closed when the test ends; ctx bounds the calls that read it.
func (c *chaosCluster) reopen() (context.Context, *sharedstate.State) {
	ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
	c.t.Cleanup(cancel)
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(c.dir), quietLogger(io.Discard))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { st.Close() })
	return ctx, st
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
