// Sessions shows a cookie-based session store that every worker process of
// a web app shares: log in on one worker, and the others know you.
//
// Sessions live in a sharedstate.Map keyed by a random session id, which the
// client holds in a cookie. Each entry has a TTL, renewed on every request,
// so an idle session expires on its own, in every worker at once; and each
// request counts its session's views with Map.Update, so that two workers
// serving the same session at once both count.
//
// The demo starts N copies of itself on one SO_REUSEPORT port and acts as a
// browser: it logs in, makes M requests over new connections (so that the
// kernel deals them to all the workers), logs out, and lets a second session
// idle past its TTL.
//
// Usage:
//
//	go run ./examples/sessions [-workers 4] [-requests 20] [-ttl 2s]
//	go run ./examples/sessions -serve 127.0.0.1:8080 [-workers 4] [-ttl 30m]
//
// With -serve, the workers serve until Ctrl-C instead, with the state in
// sharedstate's default directory, replacing a worker that exits; sessions
// then last 30 idle minutes unless -ttl says otherwise.
//
// Every worker serves:
//
//	POST /login?user=U  start a session for U, and set its cookie
//	GET  /whoami        the session's user and views, and the pid that answered; 401 without one
//	POST /logout        end the session
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"os"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/prefork"
)

// The parent tells its workers what to serve through their environment:
// flags would not survive the test binary, which parses its own.
const (
	dirEnv = "SESSIONS_DEMO_DIR"
	ttlEnv = "SESSIONS_DEMO_TTL"
)

// stateName is the state the workers share.
const stateName = "sessions-demo"

// cookieName is the name of the session cookie.
const cookieName = "sid"

func main() { prefork.Main("sessions", serveWorker, parseFlags, run) }

// config is the demo's command line.
type config struct {
	workers  int
	requests int
	ttl      time.Duration
	serve    string // an address to serve on until interrupted, instead of the browser
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&cfg.workers, "workers", 4, "number of worker `processes`")
	fs.IntVar(&cfg.requests, "requests", 20, "number of GET /whoami `requests` to make while logged in")
	fs.DurationVar(&cfg.ttl, "ttl", 2*time.Second, "how long an idle session lives; short, so that the demo can show expiry")
	fs.StringVar(&cfg.serve, "serve", "", "serve on `address` until Ctrl-C, with the state in the default directory, instead of playing the browser")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	ttlSet := false
	fs.Visit(func(f *flag.Flag) { ttlSet = ttlSet || f.Name == "ttl" })
	if cfg.serve != "" && !ttlSet {
		cfg.ttl = 30 * time.Minute // for a person, not the demo's quick expiry
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.workers < 1, cfg.requests < 1:
		err = errors.New("-workers and -requests must be at least 1")
	case cfg.ttl < 100*time.Millisecond:
		err = errors.New("-ttl must be at least 100ms")
	}
	if err != nil {
		fmt.Fprintln(output, err)
		fs.Usage()
	}
	return cfg, err
}

// whoamiReply is the answer of GET /whoami.
type whoamiReply struct {
	User  string `json:"user"`
	Views int    `json:"views"` // requests made in this session, this one included
	PID   int    `json:"pid"`
}

// run starts the workers, plays the browser, prints what it sees to out,
// and stops the workers. It returns an error if a worker did not see the
// session as it should.
func run(ctx context.Context, cfg config, out io.Writer) error {
	env := func(dir string) []string { return []string{dirEnv + "=" + dir, ttlEnv + "=" + cfg.ttl.String()} }
	if cfg.serve != "" {
		return prefork.ServeUntilDone(ctx, prefork.Config{Workers: cfg.workers, Addr: cfg.serve, Env: env("")}, out, stateName, "",
			"curl -c jar -X POST 'ADDR/login?user=ann'",
			"for i in 1 2 3; do curl -b jar ADDR/whoami; done   # another pid each time, the same session",
			"sharedstate watch sessions -state "+stateName)
	}
	f, _, cleanup, err := prefork.StartFresh(ctx, "sessions", prefork.Config{Workers: cfg.workers}, env)
	if err != nil {
		return err
	}
	defer cleanup() // the normal path stops the workers below
	base := "http://" + f.Addr
	fmt.Fprintf(out, "%d workers serving %s; sessions idle for %v expire\n", cfg.workers, base, cfg.ttl)

	// A new connection for every request, so that the kernel picks a
	// worker afresh each time.
	b := newBrowser()
	if err := b.do(ctx, http.MethodPost, base+"/login?user=ann", nil); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	pids := map[int]int{}
	var last whoamiReply
	for i := range cfg.requests {
		var r whoamiReply
		if err := b.do(ctx, http.MethodGet, base+"/whoami", &r); err != nil {
			return fmt.Errorf("whoami: %w", err)
		}
		if r.User != "ann" || r.Views != i+1 {
			return fmt.Errorf("whoami %d answered %+v; want user ann, %d views", i+1, r, i+1)
		}
		pids[r.PID]++
		last = r
	}
	fmt.Fprintf(out, "logged in as ann, then %d × GET /whoami: all saw ann, and counted %d views\n", cfg.requests, last.Views)
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		fmt.Fprintf(out, "  pid %d answered %d\n", pid, pids[pid])
	}

	if err := b.do(ctx, http.MethodPost, base+"/logout", nil); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if err := b.expectLoggedOut(ctx, base); err != nil {
		return fmt.Errorf("after logout: %w", err)
	}
	fmt.Fprintln(out, "logged out: GET /whoami answers 401")

	idle := newBrowser()
	if err := idle.do(ctx, http.MethodPost, base+"/login?user=bob", nil); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	select {
	case <-time.After(cfg.ttl + cfg.ttl/2):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := idle.expectLoggedOut(ctx, base); err != nil {
		return fmt.Errorf("after %v idle: %w", cfg.ttl, err)
	}
	fmt.Fprintf(out, "bob's session, idle for longer than %v, expired: GET /whoami answers 401\n", cfg.ttl)

	b.client.CloseIdleConnections()
	if err := f.Stop(); err != nil {
		return err
	}
	fmt.Fprintln(out, "workers stopped cleanly")
	return nil
}

// browser is an HTTP client with a cookie jar.
type browser struct{ client *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil) // fails only with options
	return &browser{client: &http.Client{
		Jar:       jar,
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}}
}

// do sends a request with no body and decodes a 200 reply's JSON into v,
// unless v is nil. Any other status is a *statusError.
func (b *browser) do(ctx context.Context, method, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{code: resp.StatusCode, body: string(body)}
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}

// expectLoggedOut checks that every worker answers GET /whoami with 401.
func (b *browser) expectLoggedOut(ctx context.Context, base string) error {
	for range 10 { // over new connections: most likely every worker
		var r whoamiReply
		err := b.do(ctx, http.MethodGet, base+"/whoami", &r)
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusUnauthorized {
			continue
		}
		if err == nil {
			return fmt.Errorf("pid %d still knows %s", r.PID, r.User)
		}
		return err
	}
	return nil
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.code, http.StatusText(e.code), e.body)
}

// session is what the store keeps per session id.
type session struct {
	User  string
	Views int
}

// serveWorker is the life of a worker: it opens the state, serves HTTP
// until ctx ends, and then leaves the state.
func serveWorker(ctx context.Context, log *slog.Logger) error {
	ttl, err := time.ParseDuration(os.Getenv(ttlEnv))
	if err != nil {
		return err
	}
	return prefork.ServeState(ctx, log, stateName, os.Getenv(dirEnv), func(st *sharedstate.State) http.Handler {
		return newHandler(st, ttl, log)
	})
}

// handler serves the endpoints of one worker.
type handler struct {
	sessions *sharedstate.Map[session]
	ttl      time.Duration
	pid      int
	log      *slog.Logger
}

func newHandler(st *sharedstate.State, ttl time.Duration, log *slog.Logger) http.Handler {
	h := &handler{sessions: sharedstate.NewMap[session](st, "sessions"), ttl: ttl, pid: os.Getpid(), log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("GET /whoami", h.whoami)
	mux.HandleFunc("POST /logout", h.logout)
	return mux
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		http.Error(w, "missing ?user=", http.StatusBadRequest)
		return
	}
	// A new id at every login, never one the client chose, so that an
	// attacker cannot plant a session id on a victim (session fixation).
	id := rand.Text()
	if err := h.sessions.Store(r.Context(), id, session{User: user}, sharedstate.WithTTL(h.ttl)); err != nil {
		h.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.WriteHeader(http.StatusOK)
}

// errNoSession makes Update store nothing for a session that does not exist.
var errNoSession = errors.New("no such session")

func (h *handler) whoami(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	// Count the view and renew the TTL in one atomic step. Without the
	// ok check, Update would recreate a session that has just expired or
	// been logged out of.
	s, err := h.sessions.Update(r.Context(), c.Value, func(s session, ok bool) (session, error) {
		if !ok {
			return s, errNoSession
		}
		s.Views++
		return s, nil
	}, sharedstate.WithTTL(h.ttl))
	if errors.Is(err, errNoSession) {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(whoamiReply{User: s.User, Views: s.Views, PID: h.pid})
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		if err := h.sessions.Delete(r.Context(), c.Value); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: "/", MaxAge: -1})
	w.WriteHeader(http.StatusOK)
}

// fail answers a request whose operation on the state failed.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil { // else the client has gone and knows
		h.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, "session store unavailable", http.StatusServiceUnavailable)
}
