// Command metrics shows how to expose a state's statistics to monitoring
// without adding a dependency: through expvar (JSON at /debug/vars) and in
// Prometheus's text format at /metrics, both from State.Stats.
//
//	go run ./examples/metrics          # serves on 127.0.0.1:8080 until Ctrl-C (-serve ADDR for another)
//	curl -s 127.0.0.1:8080/metrics
//	curl -s 127.0.0.1:8080/debug/vars
package main

import (
	"context"
	"expvar"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/sharedstate/sharedstate"
)

func main() {
	addr := flag.String("serve", "127.0.0.1:8080", "serve until Ctrl-C on `address`, as every example's -serve")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := sharedstate.Open(ctx, "metrics-demo")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	st.Counter("requests").Add(ctx, 1) // something to show
	fmt.Printf("state metrics-demo in %s; serving http://%s/metrics and /debug/vars; Ctrl-C to stop\n", sharedstate.DefaultDir(), *addr)

	// expvar's variables are the process's: publish once, at startup.
	expvar.Publish("sharedstate", statsVar(st))
	if err := run(ctx, st, *addr, nil); err != nil {
		log.Print(err)
	}
}

// statsVar is an expvar variable evaluated at each request: the state's
// statistics as JSON.
func statsVar(st *sharedstate.State) expvar.Func {
	return func() any {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		stats, err := st.Stats(ctx)
		if err != nil {
			return err.Error()
		}
		return stats
	}
}

// run serves expvar's /debug/vars and the Prometheus /metrics on addr until
// ctx ends. If ready is not nil, it receives the listening address.
func run(ctx context.Context, st *sharedstate.State, addr string, ready chan<- string) error {
	mux := http.NewServeMux()
	mux.Handle("/debug/vars", expvar.Handler())
	mux.Handle("/metrics", prometheusHandler(st))

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// prometheusHandler writes the state's statistics in Prometheus's text
// exposition format, which needs no client library to produce.
func prometheusHandler(st *sharedstate.State) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stats, err := st.Stats(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, st.Name(), stats)
	})
}

func writeMetrics(w io.Writer, state string, s sharedstate.Stats) {
	metric := func(name, kind, help string, v float64) {
		fmt.Fprintf(w, "# HELP sharedstate_%s %s\n# TYPE sharedstate_%s %s\nsharedstate_%s{state=%q} %g\n",
			name, help, name, kind, name, state, v)
	}
	metric("owner_pid", "gauge", "Process id of the state's owner.", float64(s.OwnerPID))
	metric("owner_start_time_seconds", "gauge", "When the owner took the state, in Unix seconds.", float64(s.OwnerSince.Unix()))
	metric("clients", "gauge", "Processes connected to the owner.", float64(s.Clients))
	metric("counters", "gauge", "Counters in the state.", float64(s.Counters))
	metric("maps", "gauge", "Maps in the state.", float64(s.Maps))
	metric("entries", "gauge", "Entries in all maps.", float64(s.Entries))
	metric("bytes", "gauge", "Bytes of map names, keys and values.", float64(s.Bytes))
	metric("locks", "gauge", "Locks ever used.", float64(s.Locks))
	metric("operations_total", "counter", "Operations applied by the current owner.", float64(s.Ops))
	metric("terms_total", "counter", "Owners the state has had.", float64(s.Terms))
	metric("journal_bytes", "gauge", "Length of the journal.", float64(s.JournalBytes))
	metric("evictions_total", "counter", "Entries bounded maps evicted, since the owner took the state.", float64(s.Evictions))
}
