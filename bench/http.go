package main

// Workload 10: what a user of a prefork web app sees. Four worker processes
// serve GET /increment on one loopback port (SO_REUSEPORT, as gunicorn's
// workers share theirs), each request adding one to a counter, and wrk
// drives them over HTTP: the counter in sharedstate, in Redis through
// go-redis, and in no shared state at all (each process's own integer, the
// ceiling a shared counter is measured against).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/internal/prefork"
)

const (
	targetNone = "none" // no shared state: a counter of the process's own

	httpPath        = "/increment"
	httpConnections = 64 // wrk's, over all worker processes
	httpThreads     = 2  // wrk's, one per core of the machines this runs on
)

// wrkMissing says how to get wrk, which the workload drives HTTP with.
const wrkMissing = "wrk is not installed: apt-get install -y wrk (Debian, Ubuntu), brew install wrk (macOS)"

// localCounter is the target of no shared state.
type localCounter struct{ n atomic.Int64 }

func (c *localCounter) op(int) func(context.Context) error {
	return func(context.Context) error { c.n.Add(1); return nil }
}
func (c *localCounter) owner() bool { return false }
func (c *localCounter) close()      {}

// serveHTTP serves GET httpPath on addr, each request one op of t, until
// ctx ends.
func serveHTTP(ctx context.Context, t target, addr string) (stop func(), err error) {
	ln, err := prefork.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	op := t.op(0) // the ops of opAdd keep no state: safe to share
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+httpPath, func(w http.ResponseWriter, r *http.Request) {
		if err := op(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// httpIncrement is workload 10.
func (b *bench) httpIncrement(ctx context.Context, s *section) error {
	p := b.cfg.procs
	s.Title = fmt.Sprintf("HTTP: %d prefork workers serving GET %s, driven by wrk (%d connections, %d threads)", p, httpPath, httpConnections, httpThreads)
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return errors.New(wrkMissing)
	}
	servers := []struct{ target, name string }{
		{targetState, "sharedstate"},
		{targetGoRedis, "Redis + go-redis"},
		{targetNone, "no shared state"},
	}
	results := make([]wrkResult, len(servers))
	for i, srv := range servers {
		b.progress("workload 10: %s, %d workers, wrk for %v", srv.name, p, b.cfg.duration)
		if results[i], err = b.wrkRun(ctx, wrk, job{Target: srv.target, Op: opAdd, G: httpConnections / p, Socket: b.redis.Addr()}); err != nil {
			return fmt.Errorf("%s: %w", srv.name, err)
		}
	}
	ours, redis, none := results[0], results[1], results[2]
	s.add("sharedstate, requests/s", ours.rps, "req/s").vs("Redis + go-redis", redis.rps).ratioAtLeast(1)
	s.add("sharedstate, requests/s", ours.rps, "req/s").vs("no shared state", none.rps)
	s.add("Redis + go-redis, requests/s", redis.rps, "req/s").vs("no shared state", none.rps)
	s.add("no shared state, requests/s", none.rps, "req/s")
	for i, srv := range servers {
		s.add(srv.name+", latency p50", results[i].p50, "µs")
		s.add(srv.name+", latency p99", results[i].p99, "µs")
	}
	b.bars = append(b.bars, bar{Group: "10. HTTP /increment, wrk | 4 workers", Series: "vs Redis + go-redis", Ratio: ours.rps / redis.rps})
	s.note("each worker is one process; with sharedstate one of them owns the state and the others reach it through its socket")
	s.note("wrk runs on the same 2 cores as the servers: the figures are for comparing the three, not absolute")
	return nil
}

// wrkResult is what wrk measured.
type wrkResult struct {
	rps, p50, p99 float64 // requests/s, µs, µs
}

// wrkRun starts p HTTP worker processes for j on a free loopback port,
// warms them up, and returns what wrk measures over the configured window.
func (b *bench) wrkRun(ctx context.Context, wrk string, j job) (wrkResult, error) {
	addr, err := freePort()
	if err != nil {
		return wrkResult{}, err
	}
	j.HTTP = addr
	if j.Target == targetState {
		dir, err := b.fresh("state")
		if err != nil {
			return wrkResult{}, err
		}
		defer os.RemoveAll(dir)
		j.Dir = dir
	}
	var ws []*worker
	defer func() { stopAll(ws) }()
	for range b.cfg.procs {
		w, err := b.spawn(ctx, j)
		if err != nil {
			return wrkResult{}, err
		}
		ws = append(ws, w)
	}
	url := "http://" + addr + httpPath
	if _, err := runWrk(ctx, wrk, url, b.cfg.warmup); err != nil {
		return wrkResult{}, err
	}
	return runWrk(ctx, wrk, url, b.cfg.duration)
}

// freePort returns a loopback address that nothing listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

var (
	wrkRate    = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\b`)
	wrkErrors  = regexp.MustCompile(`(?m)^\s+(Non-2xx or 3xx responses|Socket errors):.*$`)
)

// runWrk runs wrk on url for d and parses its report.
func runWrk(ctx context.Context, wrk, url string, d time.Duration) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, wrk, "-t", strconv.Itoa(httpThreads), "-c", strconv.Itoa(httpConnections),
		"-d", strconv.Itoa(secs)+"s", "--latency", url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(out)
}

// parseWrk reads requests/s and the p50 and p99 latencies (in µs) from
// wrk's --latency report, and fails on any error it reports.
func parseWrk(out []byte) (wrkResult, error) {
	if m := wrkErrors.Find(out); m != nil {
		return wrkResult{}, fmt.Errorf("wrk reported %s", bytes.TrimSpace(m))
	}
	var r wrkResult
	m := wrkRate.FindSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no requests/s in wrk's report:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	scale := map[string]float64{"us": 1, "ms": 1e3, "s": 1e6}
	for _, m := range wrkLatency.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		if string(m[1]) == "50" {
			r.p50 = v * scale[string(m[3])]
		} else {
			r.p99 = v * scale[string(m[3])]
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		return r, fmt.Errorf("no latency distribution in wrk's report:\n%s", out)
	}
	return r, nil
}
