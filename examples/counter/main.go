// Counter is the sharedstate demo: one counter shared by the worker
// processes of a web app, in the shape of gunicorn -w N or Fiber's prefork.
//
// It starts N copies of itself, each serving HTTP on the same port of
// 127.0.0.1 (SO_REUSEPORT: the kernel hands each new connection to one of
// them), sends M increments from C concurrent clients, and checks that the
// shared count equals the number of requests, although each worker saw only
// its share of them.
//
// Usage:
//
//	go run ./examples/counter [-workers 4] [-requests 10000] [-concurrency 64]
//		[-state counter-demo] [-kill-owner] [-v]
//	go run ./examples/counter -serve 127.0.0.1:8080 [-workers 4] [-state counter-demo]
//
// With -serve, the workers serve until Ctrl-C instead, with the state in
// sharedstate's default directory (where the inspector finds it), and a
// worker that exits (kill -9 one) is replaced, as gunicorn does:
//
//	curl -X POST 127.0.0.1:8080/increment
//	wrk -t2 -c64 -d10s http://127.0.0.1:8080/increment
//	sharedstate watch count -state counter-demo
//
// Every worker serves:
//
//	POST /increment  add 1 and reply {"count":n,"pid":p,"role":"owner"|"proxy"} (GET too)
//	GET  /report     the current count, and the worker that answered
//	POST /reset      set the count to 0
//	GET  /role       {"pid":p,"role":"owner"|"proxy"}
//
// With -kill-owner, the demo SIGKILLs the worker that owns the state halfway
// through and carries on, then checks that no acknowledged increment was lost.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/prefork"
)

// The parent tells its workers which state to open through their
// environment: flags would not survive the test binary, which parses its own.
const (
	dirEnv   = "COUNTER_DEMO_DIR"
	stateEnv = "COUNTER_DEMO_STATE"
)

// counterName is the shared counter the endpoints work on.
const counterName = "count"

func main() { prefork.Main("counter", serveWorker, parseFlags, run) }

// config is the demo's command line.
type config struct {
	workers     int
	requests    int
	concurrency int
	state       string // the name passed to sharedstate.Open
	serve       string // an address to serve on until interrupted, instead of the load
	killOwner   bool
	verbose     bool // workers log at level Info rather than Warn
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("counter", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&cfg.workers, "workers", 4, "number of worker `processes`")
	fs.IntVar(&cfg.requests, "requests", 10000, "number of POST /increment `requests` to send")
	fs.IntVar(&cfg.concurrency, "concurrency", 64, "number of concurrent `clients`, each with its own connection")
	fs.StringVar(&cfg.state, "state", "counter-demo", "`name` of the shared state")
	fs.StringVar(&cfg.serve, "serve", "", "serve on `address` until Ctrl-C, with the state in the default directory, instead of sending the load")
	fs.BoolVar(&cfg.killOwner, "kill-owner", false, "SIGKILL the owning worker halfway through the load")
	fs.BoolVar(&cfg.verbose, "v", false, "log the workers' role changes")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.workers < 1, cfg.requests < 1, cfg.concurrency < 1:
		err = errors.New("-workers, -requests and -concurrency must be at least 1")
	case cfg.serve != "" && cfg.killOwner:
		err = errors.New("-kill-owner is for the load; with -serve, kill -9 a worker yourself")
	case cfg.killOwner && cfg.workers < 2:
		err = errors.New("-kill-owner needs at least 2 workers: one to kill, one to carry on")
	}
	if err != nil {
		fmt.Fprintln(output, err)
		fs.Usage()
	}
	return cfg, err
}

// run starts the workers, sends the load, prints a summary to out, and stops
// the workers. It returns an error if the count is not what the requests
// that were acknowledged imply.
func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.serve != "" {
		return prefork.ServeUntilDone(ctx, prefork.Config{
			Workers: cfg.workers,
			Addr:    cfg.serve,
			Env:     []string{dirEnv + "=", stateEnv + "=" + cfg.state}, // the default directory
			Verbose: cfg.verbose,
		}, out, cfg.state, "",
			"curl -X POST ADDR/increment",
			"wrk -t2 -c64 -d10s http://ADDR/increment   # apt-get install wrk",
			"sharedstate watch "+counterName+" -state "+cfg.state)
	}
	f, dir, cleanup, err := prefork.StartFresh(ctx, "counter", prefork.Config{Workers: cfg.workers, Verbose: cfg.verbose},
		func(dir string) []string { return []string{dirEnv + "=" + dir, stateEnv + "=" + cfg.state} })
	if err != nil {
		return err
	}
	defer cleanup() // the normal path stops the workers below
	base := "http://" + f.Addr
	fmt.Fprintf(out, "%d workers serving %s (state %q in %s)\n", cfg.workers, base, cfg.state, dir)

	tr := &http.Transport{MaxIdleConns: cfg.concurrency, MaxIdleConnsPerHost: cfg.concurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// The state is new, so the count is 0 already; resetting shows the
	// endpoint, and makes the check below hold whatever the state was.
	if err := call(ctx, client, http.MethodPost, base+"/reset", nil); err != nil {
		return fmt.Errorf("reset: %w", err)
	}

	var kill struct { // set by the load goroutine that kills the owner
		pid   int
		after int // requests started before the kill
		err   error
	}
	var midway func(started int)
	if cfg.killOwner {
		midway = func(started int) {
			kill.after = started
			kill.pid, kill.err = killOwner(ctx, f, base)
		}
	}
	res := sendLoad(ctx, client, base+"/increment", cfg.requests, cfg.concurrency, midway)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load interrupted: %w", err)
	}
	if kill.err != nil {
		return fmt.Errorf("killing the owner: %w", kill.err)
	}

	var report countReply
	if err := call(ctx, client, http.MethodGet, base+"/report", &report); err != nil {
		return fmt.Errorf("report: %w", err)
	}

	tr.CloseIdleConnections() // so that the workers' Shutdown has none to wait for
	stopErr := f.Stop()

	// The summary.
	if cfg.killOwner {
		fmt.Fprintf(out, "killed the owner, pid %d, with SIGKILL after %d of %d requests had started\n",
			kill.pid, kill.after, cfg.requests)
	}
	fmt.Fprintf(out, "sent %d × POST /increment from %d clients in %v (%.0f requests/s)\n",
		cfg.requests, cfg.concurrency, res.elapsed.Round(time.Millisecond), float64(cfg.requests)/res.elapsed.Seconds())
	fmt.Fprintf(out, "  succeeded (200): %d\n", res.ok)
	if res.failed > 0 {
		fmt.Fprintf(out, "  failed: %d (first: %v)\n", res.failed, res.firstErr)
	}
	for _, pid := range slices.Sorted(maps.Keys(res.served)) {
		role := res.roles[pid]
		if pid == kill.pid {
			role += ", killed"
		}
		fmt.Fprintf(out, "  served by pid %d (%s): %d\n", pid, role, res.served[pid])
	}
	fmt.Fprintf(out, "final count: %d (GET /report answered by pid %d, %s)\n", report.Count, report.PID, report.Role)
	if stopErr == nil {
		fmt.Fprintf(out, "workers stopped cleanly\n")
	} else {
		fmt.Fprintf(out, "workers stopped: %v\n", stopErr)
	}

	verdict, err := check(cfg, res.ok, report.Count)
	fmt.Fprintln(out, verdict)
	return cmp.Or(err, stopErr)
}

// check compares the final count with what the requests imply, returning a
// one-line verdict and, if the count is wrong, an error.
func check(cfg config, acked int, count int64) (string, error) {
	n := int64(cfg.requests)
	a := int64(acked)
	if !cfg.killOwner {
		if count == n && a == n {
			return "OK: count == requests", nil
		}
		err := fmt.Errorf("count %d, %d acknowledged, for %d requests", count, a, n)
		return "MISMATCH: " + err.Error(), err
	}
	// An increment whose reply died with the killed worker may or may not
	// have been applied, so the count can exceed the acknowledged ones; it
	// must never fall short of them, nor exceed the requests sent.
	switch {
	case count == a:
		return "OK: count == acknowledged increments", nil
	case a < count && count <= n:
		return fmt.Sprintf("OK: count == acknowledged increments + %d applied whose reply was lost", count-a), nil
	case count < a:
		err := fmt.Errorf("count %d < %d acknowledged increments: %d acknowledged increments lost", count, a, a-count)
		return "MISMATCH: " + err.Error(), err
	default:
		err := fmt.Errorf("count %d > %d requests sent", count, n)
		return "MISMATCH: " + err.Error(), err
	}
}

// Replies of the endpoints, as JSON.
type (
	countReply struct {
		Count int64  `json:"count"`
		PID   int    `json:"pid"`
		Role  string `json:"role"` // of the worker that answered: "owner" or "proxy"
	}
	roleReply struct {
		PID  int    `json:"pid"`
		Role string `json:"role"`
	}
)

// loadResult is the outcome of sendLoad.
type loadResult struct {
	ok       int            // requests answered 200: acknowledged increments
	failed   int            // requests with any other outcome
	firstErr error          // why the first failure failed
	served   map[int]int    // pid → requests it acknowledged
	roles    map[int]string // pid → its role in its latest reply
	elapsed  time.Duration
}

func (r *loadResult) add(o *loadResult) {
	r.ok += o.ok
	r.failed += o.failed
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	for pid, n := range o.served {
		r.served[pid] += n
		r.roles[pid] = o.roles[pid]
	}
}

// sendLoad sends n POSTs to url from c concurrent clients. If midway is not
// nil, the client that is about to start request n/2+1 calls it first, with
// the number of requests started so far, while the others carry on.
//
// POST, not GET: net/http may resend a GET whose connection broke, and an
// increment resent is an increment applied twice.
func sendLoad(ctx context.Context, client *http.Client, url string, n, c int, midway func(started int)) *loadResult {
	total := &loadResult{served: make(map[int]int), roles: make(map[int]string)}
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Tally locally and merge once, to keep the clients from
			// contending on a lock.
			res := &loadResult{served: make(map[int]int), roles: make(map[int]string)}
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > n {
					break
				}
				if midway != nil && i == n/2+1 {
					midway(i - 1)
				}
				var r countReply
				if err := call(ctx, client, http.MethodPost, url, &r); err != nil {
					res.failed++
					if res.firstErr == nil {
						res.firstErr = err
					}
					continue
				}
				res.ok++
				res.served[r.PID]++
				res.roles[r.PID] = r.Role
			}
			mu.Lock()
			total.add(res)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

// call sends a request with no body to url, and decodes a 200 reply's JSON
// into v unless v is nil. Any other status is an error.
func call(ctx context.Context, client *http.Client, method, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Read to the end, so that the connection can be reused.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, body)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// killOwner finds the worker that owns the state and SIGKILLs it, returning
// its pid.
func killOwner(ctx context.Context, f *prefork.Fleet, base string) (int, error) {
	// A worker can tell only whether it is the owner itself, and the kernel
	// picks the worker for each connection: ask over new connections until
	// the owner answers.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 100 * len(f.Workers) {
		var r roleReply
		if err := call(ctx, client, http.MethodGet, base+"/role", &r); err != nil {
			return 0, err
		}
		if r.Role != "owner" {
			continue
		}
		i := slices.IndexFunc(f.Workers, func(w *prefork.Worker) bool { return w.Pid() == r.PID })
		if i < 0 {
			return 0, fmt.Errorf("the owner, pid %d, is not one of the workers", r.PID)
		}
		return r.PID, f.Workers[i].Kill()
	}
	return 0, errors.New("no worker answered that it is the owner")
}

// serveWorker is the life of a worker: it opens the state, serves HTTP
// until ctx ends, and then leaves the state, once the requests in progress
// that use it have finished.
func serveWorker(ctx context.Context, log *slog.Logger) error {
	return prefork.ServeState(ctx, log, os.Getenv(stateEnv), os.Getenv(dirEnv), func(st *sharedstate.State) http.Handler {
		return newHandler(st, log)
	})
}

// handler serves the endpoints of one worker.
type handler struct {
	st    *sharedstate.State
	count *sharedstate.Counter
	pid   int
	log   *slog.Logger
}

func newHandler(st *sharedstate.State, log *slog.Logger) http.Handler {
	h := &handler{st: st, count: st.Counter(counterName), pid: os.Getpid(), log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /increment", h.increment)
	mux.HandleFunc("GET /increment", h.increment) // as in the FastAPI original
	mux.HandleFunc("GET /report", h.report)
	mux.HandleFunc("POST /reset", h.reset)
	mux.HandleFunc("GET /role", h.role)
	return mux
}

func (h *handler) increment(w http.ResponseWriter, r *http.Request) {
	n, err := h.count.Add(r.Context(), 1)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, countReply{Count: n, PID: h.pid, Role: h.roleName()})
}

func (h *handler) report(w http.ResponseWriter, r *http.Request) {
	n, err := h.count.Load(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, countReply{Count: n, PID: h.pid, Role: h.roleName()})
}

func (h *handler) reset(w http.ResponseWriter, r *http.Request) {
	if err := h.count.Store(r.Context(), 0); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, countReply{Count: 0, PID: h.pid, Role: h.roleName()})
}

func (h *handler) role(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, roleReply{PID: h.pid, Role: h.roleName()})
}

func (h *handler) roleName() string {
	if h.st.IsOwner() {
		return "owner"
	}
	return "proxy"
}

// fail answers a request whose operation on the state failed.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, sharedstate.ErrUnavailable) || errors.Is(err, sharedstate.ErrClosed) {
		code = http.StatusServiceUnavailable
	}
	if r.Context().Err() == nil { // else the client has gone and knows
		h.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, err.Error(), code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) // fails only if the client has gone
}
