// Prefork is the simplest server in the shape of gunicorn -w N: N worker
// processes on one port, sharing a visit counter and a map of visitors
// through sharedstate, with net/http alone.
//
// Each worker serves GET /, which counts the visit in a shared Counter and
// in the visitor's entry of a shared Map (keyed by a cookie, expiring after
// 30 idle minutes), and answers
//
//	{"visits":12,"yours":3,"pid":4242}
//
// The demo starts N copies of itself on one SO_REUSEPORT port, visits M
// times over new connections, so that the kernel deals the visits to all
// the workers, and prints who served them and what the counts came to.
//
// Usage:
//
//	go run ./examples/prefork [-workers 4] [-visits 20]
//	go run ./examples/prefork -serve 127.0.0.1:8080 [-workers 4]
//
// With -serve, the workers serve until Ctrl-C instead, with the state in
// sharedstate's default directory, replacing a worker that exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/prefork"
)

// dirEnv tells the workers where the state lives: flags would not survive
// the test binary, which parses its own.
const dirEnv = "PREFORK_DEMO_DIR"

func main() {
	if prefork.IsWorker() {
		os.Exit(prefork.RunWorker(serveWorker))
	}
	fs := flag.NewFlagSet("prefork", flag.ExitOnError)
	workers := fs.Int("workers", 4, "number of worker `processes`")
	visits := fs.Int("visits", 20, "number of `visits` to make")
	serve := fs.String("serve", "", "serve on `address` until Ctrl-C, with the state in the default directory, instead of visiting")
	fs.Parse(os.Args[1:])
	if *workers < 1 || *visits < 1 || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if *serve != "" {
		err = serveUntilDone(ctx, *workers, *serve, os.Stdout)
	} else {
		err = run(ctx, *workers, *visits, os.Stdout)
	}
	stop()
	if err != nil {
		slog.Error("prefork demo failed", "err", err)
		os.Exit(1)
	}
}

// visitReply is the answer of GET /.
type visitReply struct {
	Visits int64 `json:"visits"` // by everyone
	Yours  int   `json:"yours"`  // by this visitor
	PID    int   `json:"pid"`    // of the worker that answered
}

// stateName is the state the workers share.
const stateName = "prefork-demo"

// serveUntilDone serves on addr until ctx ends, with the state in the
// default directory.
func serveUntilDone(ctx context.Context, workers int, addr string, out io.Writer) error {
	return prefork.ServeUntilDone(ctx, prefork.Config{Workers: workers, Addr: addr, Env: []string{dirEnv + "="}}, out, stateName, "",
		"for i in 1 2 3; do curl -c jar -b jar ADDR/; echo; done",
		"sharedstate get visitors -state "+stateName)
}

// run starts the workers, visits, prints a summary to out, and stops the
// workers. It returns an error if the counts are not the number of visits.
func run(ctx context.Context, workers, visits int, out io.Writer) error {
	dir, err := os.MkdirTemp("", "prefork-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, err := prefork.Start(ctx, prefork.Config{Workers: workers, Env: []string{dirEnv + "=" + dir}})
	if err != nil {
		return err
	}
	defer f.Stop() // on early returns; the normal path stops it below
	fmt.Fprintf(out, "%d workers serving http://%s\n", workers, f.Addr)

	jar, _ := cookiejar.New(nil) // fails only with options
	client := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	served := map[int]int{} // pid → visits it served
	var last visitReply
	for range visits {
		if last, err = visit(ctx, client, "http://"+f.Addr+"/"); err != nil {
			return err
		}
		served[last.PID]++
	}
	for _, pid := range slices.Sorted(maps.Keys(served)) {
		fmt.Fprintf(out, "  pid %d served %d visits\n", pid, served[pid])
	}
	fmt.Fprintf(out, "visits: %d in all, %d of them yours\n", last.Visits, last.Yours)
	if err := f.Stop(); err != nil {
		return err
	}
	fmt.Fprintln(out, "workers stopped cleanly")
	if last.Visits != int64(visits) || last.Yours != visits {
		return fmt.Errorf("counted %d visits, %d yours; want %d", last.Visits, last.Yours, visits)
	}
	return nil
}

func visit(ctx context.Context, client *http.Client, url string) (visitReply, error) {
	var r visitReply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return r, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return r, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// serveWorker is the life of a worker: it opens the state, serves HTTP
// until ctx ends, and then leaves the state.
func serveWorker(ctx context.Context, log *slog.Logger) error {
	return prefork.ServeState(ctx, log, stateName, os.Getenv(dirEnv), func(st *sharedstate.State) http.Handler {
		visitsCounter := st.Counter("visits")
		visitors := sharedstate.NewMap[int](st, "visitors")
		pid := os.Getpid()
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			var id string
			if c, err := r.Cookie("visitor"); err == nil {
				id = c.Value
			} else {
				id = rand.Text()
				http.SetCookie(w, &http.Cookie{Name: "visitor", Value: id, Path: "/", HttpOnly: true})
			}
			n, err := visitsCounter.Add(r.Context(), 1)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			// Update, not Load then Store: two workers serving the same
			// visitor at once must both count.
			yours, err := visitors.Update(r.Context(), id, func(n int, _ bool) (int, error) {
				return n + 1, nil
			}, sharedstate.WithTTL(30*time.Minute))
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(visitReply{Visits: n, Yours: yours, PID: pid})
		})
	})
}
