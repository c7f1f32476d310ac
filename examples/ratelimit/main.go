// Ratelimit shows a rate limit that holds across the worker processes of a
// web app: N workers on one SO_REUSEPORT port each wrap their handler in a
// ratelimit.Limiter of the same name, and between them allow exactly the
// limit, although each sees only its share of the requests.
//
// It starts N copies of itself, sends M requests from C concurrent clients
// to each of two endpoints, and prints how many each worker allowed and
// refused:
//
//	GET /fixed    at most -limit requests per -window, in fixed windows
//	GET /sliding  at most -limit requests in any -window
//
// Usage:
//
//	go run ./examples/ratelimit [-workers 4] [-limit 100] [-window 1m]
//		[-requests 500] [-concurrency 32]
//	go run ./examples/ratelimit -serve 127.0.0.1:8080 [-workers 4] [-limit 100] [-window 1m]
//
// With -serve, the workers serve until Ctrl-C instead, with the state in
// sharedstate's default directory, replacing a worker that exits.
//
// A refused request gets 429 Too Many Requests with Retry-After. All the
// clients come from 127.0.0.1, so they share one limit, as the requests of
// one client spread over many connections would.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/prefork"
	"github.com/sharedstate/sharedstate/ratelimit"
)

// The parent tells its workers what to serve through their environment:
// flags would not survive the test binary, which parses its own.
const (
	dirEnv    = "RATELIMIT_DEMO_DIR"
	limitEnv  = "RATELIMIT_DEMO_LIMIT"
	windowEnv = "RATELIMIT_DEMO_WINDOW"
)

// stateName is the state the workers share.
const stateName = "ratelimit-demo"

func main() { prefork.Main("ratelimit", serveWorker, parseFlags, run) }

// config is the demo's command line.
type config struct {
	workers     int
	limit       int
	window      time.Duration
	requests    int // per endpoint
	concurrency int
	serve       string // an address to serve on until interrupted, instead of the load
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("ratelimit", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&cfg.workers, "workers", 4, "number of worker `processes`")
	fs.IntVar(&cfg.limit, "limit", 100, "`requests` allowed per window")
	fs.DurationVar(&cfg.window, "window", time.Minute, "the limit's `window`")
	fs.IntVar(&cfg.requests, "requests", 500, "number of `requests` to send to each endpoint")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "number of concurrent `clients`")
	fs.StringVar(&cfg.serve, "serve", "", "serve on `address` until Ctrl-C, with the state in the default directory, instead of sending the load")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.workers < 1, cfg.limit < 1, cfg.requests < 1, cfg.concurrency < 1:
		err = errors.New("-workers, -limit, -requests and -concurrency must be at least 1")
	case cfg.window <= 0:
		err = errors.New("-window must be positive")
	}
	if err != nil {
		fmt.Fprintln(output, err)
		fs.Usage()
	}
	return cfg, err
}

// run starts the workers, sends the load, prints a summary to out, and stops
// the workers. It returns an error if a limit did not hold.
func run(ctx context.Context, cfg config, out io.Writer) error {
	env := func(dir string) []string {
		return []string{dirEnv + "=" + dir, limitEnv + "=" + strconv.Itoa(cfg.limit), windowEnv + "=" + cfg.window.String()}
	}
	if cfg.serve != "" {
		return prefork.ServeUntilDone(ctx, prefork.Config{Workers: cfg.workers, Addr: cfg.serve, Env: env("")}, out, stateName, "",
			fmt.Sprintf("for i in $(seq %d); do curl -s -o /dev/null -w '%%{http_code} ' ADDR/fixed; done; echo", cfg.limit+5),
			"curl -i ADDR/sliding   # RateLimit-* headers",
			"sharedstate get fixed -state "+stateName)
	}
	f, _, cleanup, err := prefork.StartFresh(ctx, "ratelimit", prefork.Config{Workers: cfg.workers}, env)
	if err != nil {
		return err
	}
	defer cleanup() // the normal path stops the workers below
	base := "http://" + f.Addr
	fmt.Fprintf(out, "%d workers serving %s; limit, shared between them: %d requests per %v\n",
		cfg.workers, base, cfg.limit, cfg.window)

	tr := &http.Transport{MaxIdleConns: cfg.concurrency, MaxIdleConnsPerHost: cfg.concurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var errs []error
	for _, path := range []string{"/fixed", "/sliding"} {
		w := int64(cfg.window)
		first := time.Now().UnixNano() / w
		res := sendLoad(ctx, client, base+path, cfg.requests, cfg.concurrency)
		windows := time.Now().UnixNano()/w - first + 1 // fixed windows the load touched
		if res.err != nil {
			return fmt.Errorf("GET %s: %w", path, res.err)
		}
		fmt.Fprintf(out, "GET %s × %d: %d allowed, %d refused with 429\n", path, cfg.requests, res.allowed(), res.refused())
		for _, pid := range slices.Sorted(maps.Keys(res.byPID)) {
			n := res.byPID[pid]
			fmt.Fprintf(out, "  pid %d: %d allowed, %d refused\n", pid, n[0], n[1])
		}
		// A fixed window allows the limit again once a window ends.
		want := min(cfg.requests, cfg.limit)
		if path == "/fixed" && windows > 1 {
			want = min(cfg.requests, int(windows)*cfg.limit)
			if res.allowed() <= want {
				fmt.Fprintf(out, "  OK: allowed ≤ %d, the limit in each of the %d windows the load spanned\n", want, windows)
				continue
			}
		} else if res.allowed() == want {
			fmt.Fprintf(out, "  OK: allowed == %d\n", want)
			continue
		}
		err := fmt.Errorf("GET %s: %d allowed, want %d", path, res.allowed(), want)
		fmt.Fprintf(out, "  MISMATCH: %v\n", err)
		errs = append(errs, err)
	}

	tr.CloseIdleConnections() // so that the workers' Shutdown has none to wait for
	if err := f.Stop(); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintln(out, "workers stopped cleanly")
	}
	return errors.Join(errs...)
}

// loadResult is the outcome of sendLoad.
type loadResult struct {
	byPID map[int][2]int // pid → requests it allowed, and refused
	err   error          // the first answer that was neither
}

func (r *loadResult) allowed() (n int) {
	for _, c := range r.byPID {
		n += c[0]
	}
	return n
}

func (r *loadResult) refused() (n int) {
	for _, c := range r.byPID {
		n += c[1]
	}
	return n
}

// sendLoad sends n GETs to url from c concurrent clients.
func sendLoad(ctx context.Context, client *http.Client, url string, n, c int) *loadResult {
	res := &loadResult{byPID: make(map[int][2]int)}
	var (
		next atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				pid, allowed, err := get(ctx, client, url)
				mu.Lock()
				switch {
				case err != nil:
					if res.err == nil {
						res.err = err
					}
				case allowed:
					res.byPID[pid] = [2]int{res.byPID[pid][0] + 1, res.byPID[pid][1]}
				default:
					res.byPID[pid] = [2]int{res.byPID[pid][0], res.byPID[pid][1] + 1}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if res.err == nil {
		res.err = ctx.Err()
	}
	return res
}

// get sends a GET to url and reports which worker answered (the X-Pid
// header) and whether it allowed the request.
func get(ctx context.Context, client *http.Client, url string) (pid int, allowed bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body) // to reuse the connection
	pid, _ = strconv.Atoi(resp.Header.Get("X-Pid"))
	switch resp.StatusCode {
	case http.StatusOK:
		return pid, true, nil
	case http.StatusTooManyRequests:
		if resp.Header.Get("Retry-After") == "" {
			return pid, false, errors.New("429 without Retry-After")
		}
		return pid, false, nil
	}
	return pid, false, fmt.Errorf("%s", resp.Status)
}

// serveWorker is the life of a worker: it opens the state, serves HTTP
// until ctx ends, and then leaves the state.
func serveWorker(ctx context.Context, log *slog.Logger) error {
	limit, err := strconv.Atoi(os.Getenv(limitEnv))
	if err != nil {
		return err
	}
	window, err := time.ParseDuration(os.Getenv(windowEnv))
	if err != nil {
		return err
	}
	return prefork.ServeState(ctx, log, stateName, os.Getenv(dirEnv), func(st *sharedstate.State) http.Handler {
		hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello\n")
		})
		mux := http.NewServeMux()
		mux.Handle("GET /fixed", ratelimit.FixedWindow(st, "fixed", limit, window).Handler(ratelimit.ByIP, hello))
		mux.Handle("GET /sliding", ratelimit.SlidingWindow(st, "sliding", limit, window).Handler(ratelimit.ByIP, hello))
		pid := strconv.Itoa(os.Getpid())
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pid", pid) // so that the demo can tell who answered
			mux.ServeHTTP(w, r)
		})
	})
}
