// Cache shows a cache that the worker processes of a web app share: N
// workers on one SO_REUSEPORT port answer GET /item/{id} from one bounded
// map, and a missing item is fetched from a slow upstream once, by one
// worker, however many requests ask for it at the same moment.
//
// It starts N copies of itself and sends two loads:
//
//  1. a stampede: -stampede concurrent requests for one cold item, which
//     the upstream must be asked for once;
//  2. -requests requests from -concurrency clients for items drawn from a
//     Zipf distribution over -items items, ten times what the cache holds
//     (-max): the cache stays at its bound, evicting the items least
//     recently used, and the popular items stay hits.
//
// It prints the hits, misses, upstream calls and evictions of each.
//
// Usage:
//
//	go run ./examples/cache [-workers 4] [-max 1000] [-stampede 1000]
//		[-requests 20000] [-concurrency 32] [-upstream 20ms]
//	go run ./examples/cache -serve 127.0.0.1:8080 [-workers 4] [-max 1000]
//
// With -serve, the workers serve until Ctrl-C instead, with the state in
// sharedstate's default directory, replacing a worker that exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/prefork"
)

// The parent tells its workers what to serve through their environment:
// flags would not survive the test binary, which parses its own.
const (
	dirEnv      = "CACHE_DEMO_DIR"
	maxEnv      = "CACHE_DEMO_MAX"
	upstreamEnv = "CACHE_DEMO_UPSTREAM"
)

// stateName is the state the workers share.
const stateName = "cache-demo"

func main() { prefork.Main("cache", serveWorker, parseFlags, run) }

// config is the demo's command line.
type config struct {
	workers     int
	max         int // items the cache holds
	stampede    int // concurrent requests for one cold item
	requests    int // of the Zipf load
	concurrency int
	upstream    time.Duration // how long the upstream takes to answer
	serve       string        // an address to serve on until interrupted, instead of the loads
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&cfg.workers, "workers", 4, "number of worker `processes`")
	fs.IntVar(&cfg.max, "max", 1000, "`items` the shared cache holds")
	fs.IntVar(&cfg.stampede, "stampede", 1000, "concurrent `requests` for one cold item")
	fs.IntVar(&cfg.requests, "requests", 20000, "`requests` of the Zipf load")
	fs.IntVar(&cfg.concurrency, "concurrency", 32, "concurrent `clients` of the Zipf load")
	fs.DurationVar(&cfg.upstream, "upstream", 20*time.Millisecond, "how long the upstream takes per item")
	fs.StringVar(&cfg.serve, "serve", "", "serve on `address` until Ctrl-C, with the state in the default directory, instead of sending the loads")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.workers < 1, cfg.max < 1, cfg.stampede < 1, cfg.requests < 1, cfg.concurrency < 1:
		err = errors.New("-workers, -max, -stampede, -requests and -concurrency must be at least 1")
	case cfg.upstream < 0:
		err = errors.New("-upstream must not be negative")
	}
	if err != nil {
		fmt.Fprintln(output, err)
		fs.Usage()
	}
	return cfg, err
}

// run starts the workers, sends the loads, prints what the cache did, and
// stops the workers. It returns an error if the stampede reached the
// upstream more than once or the cache outgrew its bound.
func run(ctx context.Context, cfg config, out io.Writer) error {
	env := func(dir string) []string {
		return []string{dirEnv + "=" + dir, maxEnv + "=" + strconv.Itoa(cfg.max), upstreamEnv + "=" + cfg.upstream.String()}
	}
	if cfg.serve != "" {
		return prefork.ServeUntilDone(ctx, prefork.Config{Workers: cfg.workers, Addr: cfg.serve, Env: env("")}, out, stateName, "",
			"curl -i ADDR/item/42        # X-Cache: miss, then hit from any worker",
			"curl ADDR/stats")
	}
	f, _, cleanup, err := prefork.StartFresh(ctx, "cache", prefork.Config{Workers: cfg.workers}, env)
	if err != nil {
		return err
	}
	defer cleanup() // the normal path stops the workers below
	base := "http://" + f.Addr
	fmt.Fprintf(out, "%d workers serving %s; one cache of %d items between them, an upstream of %v per item\n",
		cfg.workers, base, cfg.max, cfg.upstream)
	tr := &http.Transport{MaxIdleConns: cfg.stampede, MaxIdleConnsPerHost: cfg.stampede}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}

	var errs []error
	// 1. The stampede: every request for the same cold item at once.
	st, err := load(ctx, client, base, cfg.stampede, cfg.stampede, func(*rand.Rand) func() int {
		return func() int { return -1 }
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "stampede: %d concurrent requests for one cold item: %s\n", cfg.stampede, st)
	if st.upstream != 1 {
		err := fmt.Errorf("the stampede reached the upstream %d times, want once", st.upstream)
		fmt.Fprintf(out, "  MISMATCH: %v\n", err)
		errs = append(errs, err)
	} else {
		fmt.Fprintln(out, "  OK: the upstream was asked once; the others waited for its answer")
	}

	// 2. Popular items among ten times more than the cache holds.
	items := uint64(10 * cfg.max)
	st, err = load(ctx, client, base, cfg.requests, cfg.concurrency, func(r *rand.Rand) func() int {
		z := rand.NewZipf(r, 1.1, 1, items-1)
		return func() int { return int(z.Uint64()) }
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "zipf(1.1) over %d items: %d requests: %s\n", items, cfg.requests, st)
	if st.entries > cfg.max {
		err := fmt.Errorf("the cache holds %d items, over its bound of %d", st.entries, cfg.max)
		fmt.Fprintf(out, "  MISMATCH: %v\n", err)
		errs = append(errs, err)
	} else {
		fmt.Fprintf(out, "  OK: the cache holds %d items, within its bound of %d\n", st.entries, cfg.max)
	}

	tr.CloseIdleConnections() // so that the workers' Shutdown has none to wait for
	if err := f.Stop(); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintln(out, "workers stopped cleanly")
	}
	return errors.Join(errs...)
}

// stats is what a load did to the cache, from the workers' /stats before
// and after it.
type stats struct {
	hits, misses, upstream, evictions int64
	entries                           int
}

func (s stats) String() string {
	return fmt.Sprintf("%d hits, %d misses, %d upstream calls, %d evictions; %d items cached",
		s.hits, s.misses, s.upstream, s.evictions, s.entries)
}

// load sends n requests from c concurrent clients for the items that each
// client's draw gives (-1: the load's own cold item), and returns what they
// did.
func load(ctx context.Context, client *http.Client, base string, n, c int, items func(*rand.Rand) func() int) (stats, error) {
	before, err := fetchStats(ctx, client, base)
	if err != nil {
		return stats{}, err
	}
	cold := "cold-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, c)
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			draw := items(rand.New(rand.NewPCG(uint64(i), 42)))
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				id := cold
				if k := draw(); k >= 0 {
					id = strconv.Itoa(k)
				}
				if err := get(ctx, client, base+"/item/"+id, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return stats{}, err
	}
	after, err := fetchStats(ctx, client, base)
	if err != nil {
		return stats{}, err
	}
	return stats{hits: after.hits - before.hits, misses: after.misses - before.misses, upstream: after.upstream - before.upstream,
		evictions: after.evictions - before.evictions, entries: after.entries}, nil
}

// fetchStats reads /stats: the counters every worker adds to.
func fetchStats(ctx context.Context, client *http.Client, base string) (stats, error) {
	var s stats
	err := get(ctx, client, base+"/stats", func(body []byte) error {
		_, err := fmt.Sscanf(string(body), "hits %d misses %d upstream %d evictions %d entries %d",
			&s.hits, &s.misses, &s.upstream, &s.evictions, &s.entries)
		return err
	})
	return s, err
}

// get sends a GET to url and hands a 200's body to read, if not nil.
func get(ctx context.Context, client *http.Client, url string, read func([]byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	if read != nil {
		return read(body)
	}
	return nil
}

// serveWorker is the life of a worker: it opens the state, serves HTTP
// until ctx ends, and then leaves the state.
func serveWorker(ctx context.Context, log *slog.Logger) error {
	bound, err := strconv.Atoi(os.Getenv(maxEnv))
	if err != nil {
		return err
	}
	delay, err := time.ParseDuration(os.Getenv(upstreamEnv))
	if err != nil {
		return err
	}
	return prefork.ServeState(ctx, log, stateName, os.Getenv(dirEnv), func(st *sharedstate.State) http.Handler {
		return newCache(st, bound, delay)
	})
}

// cache is a worker's handler: items from the shared cache, or from the
// upstream once per miss across every worker.
type cache struct {
	st                     *sharedstate.State
	items                  *sharedstate.Map[string]
	hits, misses, upstream *sharedstate.Counter
	delay                  time.Duration
	mux                    *http.ServeMux
}

func newCache(st *sharedstate.State, bound int, delay time.Duration) *cache {
	c := &cache{
		st:    st,
		items: sharedstate.NewMap[string](st, "items", sharedstate.WithMaxEntries(bound)),
		hits:  st.Counter("hits"), misses: st.Counter("misses"), upstream: st.Counter("upstream"),
		delay: delay,
		mux:   http.NewServeMux(),
	}
	c.mux.HandleFunc("GET /item/{id}", c.item)
	c.mux.HandleFunc("GET /stats", c.stats)
	return c
}

func (c *cache) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

func (c *cache) item(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	v, loaded, err := c.items.LoadOrCompute(ctx, id, func(ctx context.Context) (string, error) {
		return c.fetch(ctx, id)
	}, sharedstate.WithTTL(10*time.Minute))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	counter, state := c.misses, "miss"
	if loaded {
		counter, state = c.hits, "hit"
	}
	if _, err := counter.Add(ctx, 1); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("X-Cache", state)
	w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
	io.WriteString(w, v+"\n")
}

// fetch is the slow upstream: every call counts.
func (c *cache) fetch(ctx context.Context, id string) (string, error) {
	if _, err := c.upstream.Add(ctx, 1); err != nil {
		return "", err
	}
	select {
	case <-time.After(c.delay):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "item " + id + " from the upstream", nil
}

func (c *cache) stats(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var vals [3]int64
	for i, ctr := range []*sharedstate.Counter{c.hits, c.misses, c.upstream} {
		var err error
		if vals[i], err = ctr.Load(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	st, err := c.st.Stats(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	n, err := c.items.Len(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "hits %d misses %d upstream %d evictions %d entries %d\n", vals[0], vals[1], vals[2], st.Evictions, n)
}
