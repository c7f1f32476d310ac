package main

// Worker processes. Every measurement that involves sharedstate or Redis
// runs in child processes, because crossing a process boundary is what is
// being measured: the tool re-executes itself with envRole set, and the
// child runs one target (a sharedstate worker, a Redis client, an echo
// peer) driven by JSON lines on stdin, answering each with a JSON line on
// stdout. The coordinator only spawns, synchronises and sums.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	envRole = "SHAREDSTATE_BENCH_ROLE" // set in worker processes
	envJob  = "SHAREDSTATE_BENCH_JOB"  // the worker's job, as JSON
)

// Targets a worker can run.
const (
	targetState      = "sharedstate"
	targetRedisState = "redisstate" // the library's API on the Redis engine
	targetGoRedis    = "go-redis"
	targetRueidis    = "rueidis"
	targetEchoServer = "echo-server"
	targetEcho       = "echo"
	targetSpinServer = "spin-server"
	targetSpin       = "spin"
)

// Operations a worker's goroutines repeat.
const (
	opAdd  = "add"  // Counter.Add / INCR
	opLoad = "load" // Counter.Load / GET
	// Map.Load of the first of Keys keys, preloaded with values of
	// ValueSize bytes.
	opMapLoad = "mapload"
	opMap     = "map" // 90% Map.Load, 10% Map.Store / GET, SET
	// One key of a map that every goroutine of every process increments.
	opHotUpdate = "hotupdate" // Map.Update / a Lua GET and SET
	opHotAdd    = "hotadd"    // Map.Add / INCRBY
)

// job tells a worker process what to run; it is fixed for the process's life.
type job struct {
	Target     string   `json:"target"`
	Op         string   `json:"op,omitempty"`
	G          int      `json:"g,omitempty"`          // goroutines per process
	Dir        string   `json:"dir,omitempty"`        // the state's directory
	Durability string   `json:"durability,omitempty"` // memory, process or disk
	Socket     string   `json:"socket,omitempty"`     // redis-server's or the echo server's
	Addrs      []string `json:"addrs,omitempty"`      // Redis on loopback TCP: a server, or a Cluster's nodes
	Cluster    bool     `json:"cluster,omitempty"`    // Addrs are a Redis Cluster's
	Replicas   int      `json:"replicas,omitempty"`   // redisstate: WithReplicas(Replicas, time.Second)
	Keys       int      `json:"keys,omitempty"`       // opMap: keys chosen from
	ValueSize  int      `json:"valueSize,omitempty"`  // opMap and fills
	Preload    int      `json:"preload,omitempty"`    // keys the owner stores before it is ready
	ReqSize    int      `json:"reqSize,omitempty"`    // echo: request frame, header included
	RespSize   int      `json:"respSize,omitempty"`   // echo: response frame, header included
	Raw        bool     `json:"raw,omitempty"`        // echo: blocking system calls, no poller
	Handoff    bool     `json:"handoff,omitempty"`    // echo: a reader goroutine hands each response to the caller
	ProfileDir string   `json:"profileDir,omitempty"` // write a CPU profile here
	HTTP       string   `json:"http,omitempty"`       // serve each GET /increment as one op, on this address
	Bound      int      `json:"bound,omitempty"`      // the cache commands' maps: WithMaxEntries(Bound)
}

// command is one line from the coordinator to a worker. Each gets one
// report back.
type command struct {
	Cmd string `json:"cmd"` // run, load, arm, probe, fill, touch, local

	// run: the goroutines start at once (warm-up), count the operations
	// completed between Start and End (unix ns), and stop at End.
	Start   int64 `json:"start,omitempty"`
	End     int64 `json:"end,omitempty"`
	Latency bool  `json:"latency,omitempty"` // also time every counted op

	// probe: report the first op that started after After (the dead
	// owner's exit) and finished, measured from Kill.
	After int64 `json:"after,omitempty"`
	Kill  int64 `json:"kill,omitempty"`

	N        int           `json:"n,omitempty"`        // fill, cachefill: keys to store; touch: to load; zipf: the stream's length; stampede: the run
	Duration time.Duration `json:"duration,omitempty"` // local: time per op kind
	From     int           `json:"from,omitempty"`     // cachefill: the first key
	Bytes    bool          `json:"bytes,omitempty"`    // cachefill, cachelen: the map bounded by bytes
	// zipf: this process plays requests i of the stream with i%Parts == Part.
	Part  int `json:"part,omitempty"`
	Parts int `json:"parts,omitempty"`
}

// report is one line from a worker to the coordinator.
type report struct {
	PID      int                `json:"pid"`
	Owner    bool               `json:"owner"`
	Ops      int64              `json:"ops,omitempty"`
	Errors   int64              `json:"errors,omitempty"`
	Err      string             `json:"err,omitempty"`      // the first error
	P50      float64            `json:"p50,omitempty"`      // ns
	P99      float64            `json:"p99,omitempty"`      // ns
	Takeover int64              `json:"takeover,omitempty"` // ns, probe
	Stall    int64              `json:"stall,omitempty"`    // ns, probe: the longest op around the kill
	NS       map[string]float64 `json:"ns,omitempty"`       // local: ns/op by name
	// snapshots: of each the owner wrote, the longest it held up
	// operations, and how long it took, in ns.
	Paused []int64 `json:"paused,omitempty"`
	Took   []int64 `json:"took,omitempty"`
	// stampede: computations this process ran, when the last returned,
	// and when its last caller was answered (unix ns).
	Computed int64 `json:"computed,omitempty"`
	Returned int64 `json:"returned,omitempty"`
	Last     int64 `json:"last,omitempty"`
}

// target is what a worker's goroutines exercise.
type target interface {
	// op returns the operation goroutine g repeats. Each goroutine gets its
	// own, so an op may keep state such as a random source.
	op(g int) func(context.Context) error
	// owner reports whether this process owns the sharedstate state.
	owner() bool
	close()
}

func openTarget(ctx context.Context, j job) (target, error) {
	switch j.Target {
	case targetState:
		return openState(ctx, j)
	case targetRedisState:
		return openRedisState(ctx, j)
	case targetGoRedis:
		return openGoRedis(ctx, j)
	case targetRueidis:
		return openRueidis(ctx, j)
	case targetEchoServer:
		return listenEcho(j)
	case targetEcho:
		return dialEcho(j)
	case targetSpinServer:
		return listenSpin(j)
	case targetSpin:
		return dialSpin(j)
	case targetNone:
		return &localCounter{}, nil
	}
	return nil, fmt.Errorf("unknown target %q", j.Target)
}

// workerMain is the whole life of a worker process.
func workerMain(ctx context.Context) error {
	var j job
	if err := json.Unmarshal([]byte(os.Getenv(envJob)), &j); err != nil {
		return fmt.Errorf("bad %s: %w", envJob, err)
	}
	t, err := openTarget(ctx, j)
	if err != nil {
		return err
	}
	defer t.close()
	// A worker that is done stops its own calls before it closes its
	// state, as a server shuts down its handlers first: calls on a closed
	// state fail at once, and the loaders would spin on them through the
	// handover that workload 6 times.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if j.ProfileDir != "" {
		stop, err := startProfile(j, t.owner())
		if err != nil {
			return err
		}
		defer stop()
	}
	if j.HTTP != "" {
		stop, err := serveHTTP(ctx, t, j.HTTP)
		if err != nil {
			return err
		}
		defer stop()
	}

	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(report{PID: os.Getpid(), Owner: t.owner()}); err != nil {
		return err
	}
	in := json.NewDecoder(os.Stdin)
	var bg *loader
	for {
		var c command
		if err := in.Decode(&c); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the coordinator is done with us
			}
			return err
		}
		var r report
		switch c.Cmd {
		case "run":
			r = runWindow(ctx, t, j.G, c)
		case "load":
			bg = startLoader(ctx, t, j.G)
		case "arm":
			bg.arm()
		case "probe":
			r = bg.probe(c)
		case "fill":
			r = fill(ctx, t, c.N, j.ValueSize)
		case "touch":
			r = touch(ctx, t, c.N)
		case "local":
			r = benchLocal(ctx, t, c.Duration)
		case "collect":
			collect(t)
		case "cachefill":
			r = cacheFill(ctx, t, c)
		case "cachelen":
			r = cacheLen(ctx, t, c)
		case "zipf":
			r = zipfPart(ctx, t, c)
		case "stampede":
			r = stampede(ctx, t, c)
		case "wakefloor":
			r = wakeFloor(c)
		case "snapshots":
			if st, ok := t.(*stateTarget); ok && st.snaps != nil {
				r = st.snaps.report()
			} else {
				r.Err = "no snapshots: not the embedded engine"
			}
		default:
			r.Err = fmt.Sprintf("unknown command %q", c.Cmd)
		}
		r.PID, r.Owner = os.Getpid(), t.owner()
		if err := out.Encode(r); err != nil {
			return err
		}
	}
}

// startProfile writes a CPU profile of this worker until the returned
// function is called, named so that owner and proxies can be told apart.
func startProfile(j job, owner bool) (func(), error) {
	role := "client"
	if j.Target == targetState {
		role = "proxy"
		if owner {
			role = "owner"
		}
	}
	name := fmt.Sprintf("%s-%s-%s-g%d-%d.pprof", j.Target, j.Op, role, j.G, os.Getpid())
	f, err := os.Create(filepath.Join(j.ProfileDir, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// runWindow runs g goroutines from now until c.End and counts what they
// complete between c.Start and c.End. The time before c.Start is the
// warm-up, overlapping in every process since they share the wall clock.
// Counting reads an atomic phase instead of the clock, so that measuring
// costs nothing per op unless latencies are wanted.
func runWindow(ctx context.Context, t target, g int, c command) report {
	const (
		warming = iota
		counting
		stopped
	)
	var phase atomic.Int32
	var ops, errs atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var samples []float64
	var wg sync.WaitGroup
	for i := range max(g, 1) {
		op := t.op(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n, e int64
			var lat []float64
			if c.Latency {
				lat = touchedSamples()
			}
			for {
				p := phase.Load()
				if p == stopped {
					break
				}
				var t0 time.Time
				if c.Latency && p == counting {
					t0 = time.Now()
				}
				err := op(ctx)
				if p != counting || phase.Load() != counting {
					continue // started or ended outside the window
				}
				if err != nil {
					e++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				n++
				if c.Latency {
					lat = append(lat, float64(time.Since(t0).Nanoseconds()))
				}
			}
			ops.Add(n)
			errs.Add(e)
			mu.Lock()
			samples = append(samples, lat...)
			mu.Unlock()
		}()
	}
	sleepUntil(c.Start)
	phase.Store(counting)
	sleepUntil(c.End)
	phase.Store(stopped)
	wg.Wait()

	r := report{Ops: ops.Load(), Errors: errs.Load()}
	if firstErr != nil {
		r.Err = firstErr.Error()
	}
	if c.Latency {
		slices.Sort(samples)
		r.P50, r.P99 = percentile(samples, 50), percentile(samples, 99)
	}
	return r
}

// latencySamples is room for the latencies of a 2 s window of ops of 0.5 µs.
const latencySamples = 1 << 22

// touchedSamples returns an empty slice with room for latencySamples, its
// pages written once: recording a latency between two timed ops faults no
// page in and copies no growing slice, which would make the ops around it
// slower (an idle owner's watcher sleeps meanwhile) and count against them.
func touchedSamples() []float64 {
	lat := make([]float64, latencySamples) // fresh pages, not yet mapped
	clear(lat)
	return lat[:0]
}

func sleepUntil(unixNano int64) { time.Sleep(time.Until(time.Unix(0, unixNano))) }

// span is one completed operation, in unix ns.
type span struct{ start, end int64 }

// loader keeps g goroutines busy until the process ends, for takeovers.
// While armed, each goroutine records its successful ops, so that a probe
// can find the first op that started after the owner died.
type loader struct {
	armed atomic.Bool
	gs    []*loaderLog
}

type loaderLog struct {
	mu    sync.Mutex
	spans []span
}

func startLoader(ctx context.Context, t target, g int) *loader {
	l := &loader{}
	for i := range max(g, 1) {
		lg := &loaderLog{}
		l.gs = append(l.gs, lg)
		op := t.op(i)
		go func() {
			for ctx.Err() == nil {
				start := time.Now().UnixNano()
				if op(ctx) != nil {
					continue
				}
				if l.armed.Load() {
					end := time.Now().UnixNano()
					lg.mu.Lock()
					lg.spans = append(lg.spans, span{start, end})
					lg.mu.Unlock()
				}
			}
		}()
	}
	return l
}

func (l *loader) arm() {
	if l == nil {
		return
	}
	for _, lg := range l.gs {
		lg.mu.Lock()
		lg.spans = lg.spans[:0]
		lg.mu.Unlock()
	}
	l.armed.Store(true)
}

// probe waits for an op that started after c.After to succeed, and reports
// when it did, measured from c.Kill, and the longest op that ended after
// c.Kill: how long a caller waited at worst.
func (l *loader) probe(c command) report {
	if l == nil {
		return report{Err: "probe before load"}
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		first, stall := int64(0), int64(0)
		for _, lg := range l.gs {
			lg.mu.Lock()
			for _, s := range lg.spans {
				if s.start > c.After && (first == 0 || s.end < first) {
					first = s.end
				}
				if s.end > c.Kill {
					stall = max(stall, s.end-s.start)
				}
			}
			lg.mu.Unlock()
		}
		if first != 0 {
			l.armed.Store(false)
			return report{Takeover: first - c.Kill, Stall: stall}
		}
		time.Sleep(time.Millisecond)
	}
	return report{Err: "no operation succeeded within a minute of the kill"}
}

// worker is the coordinator's handle on one worker process.
type worker struct {
	job      job
	pid      int
	stdin    *os.File
	enc      *json.Encoder
	reports  chan report   // closed when the worker's stdout ends
	exited   chan struct{} // closed when the process has been reaped
	exitedAt time.Time     // valid once exited is closed
	ready    report        // its first report: pid and ownership
}

// spawn starts a worker process for j and waits up to timeout for it to
// report ready.
func spawn(ctx context.Context, exe string, j job, timeout time.Duration) (*worker, error) {
	js, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	// Plain pipes rather than exec's: no copying goroutines, so Wait
	// returns as soon as the process is gone, which takeovers time.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envRole+"=worker", envJob+"="+string(js))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	w := &worker{
		job:     j,
		pid:     cmd.Process.Pid,
		stdin:   inW,
		enc:     json.NewEncoder(inW),
		reports: make(chan report, 16),
		exited:  make(chan struct{}),
	}
	go func() {
		defer outR.Close()
		defer close(w.reports)
		dec := json.NewDecoder(outR)
		for {
			var r report
			if dec.Decode(&r) != nil {
				return
			}
			w.reports <- r
		}
	}()
	go func() {
		cmd.Wait()
		w.exitedAt = time.Now()
		close(w.exited)
	}()
	if w.ready, err = w.recv(ctx, timeout); err != nil {
		w.stop()
		return nil, err
	}
	return w, nil
}

func (w *worker) send(c command) error {
	if err := w.enc.Encode(c); err != nil {
		return fmt.Errorf("worker %d (%s): %w", w.pid, w.job.Target, err)
	}
	return nil
}

// recv returns the worker's next report, or an error if it carries one, the
// worker exits first, or timeout passes.
func (w *worker) recv(ctx context.Context, timeout time.Duration) (report, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r, ok := <-w.reports:
		if !ok {
			return r, fmt.Errorf("worker %d (%s) exited before answering; see its stderr above", w.pid, w.job.Target)
		}
		if r.Err != "" && r.Ops == 0 {
			return r, fmt.Errorf("worker %d (%s): %s", w.pid, w.job.Target, r.Err)
		}
		return r, nil
	case <-t.C:
		return report{}, fmt.Errorf("worker %d (%s) did not answer within %v", w.pid, w.job.Target, timeout)
	case <-ctx.Done():
		return report{}, ctx.Err()
	}
}

// call sends c and waits for the answer.
func (w *worker) call(ctx context.Context, c command, timeout time.Duration) (report, error) {
	if err := w.send(c); err != nil {
		return report{}, err
	}
	return w.recv(ctx, timeout)
}

// stop asks the worker to exit by closing its stdin, and kills it if it has
// not within a few seconds (a sharedstate owner hands over first).
func (w *worker) stop() {
	w.stdin.Close()
	select {
	case <-w.exited:
		return
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(w.pid, syscall.SIGKILL)
	<-w.exited
}

// stopAll stops workers concurrently, since each may take a moment.
func stopAll(ws []*worker) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.stop)
	}
	wg.Wait()
}
