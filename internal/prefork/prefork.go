// Package prefork runs the worker processes of the examples in the shape of
// gunicorn -w N or Fiber's prefork: N copies of the running executable, each
// serving HTTP on the same port of 127.0.0.1 with SO_REUSEPORT, so that the
// kernel hands each new connection to one of them.
//
// The parent calls Start, which re-executes the program with a marker in its
// environment; the program's main (or, under go test, its TestMain) checks
// IsWorker first and, in a worker, calls RunWorker and Serve instead of doing
// what the parent does:
//
//	func main() {
//		if prefork.IsWorker() {
//			os.Exit(prefork.RunWorker(serveWorker))
//		}
//		f, err := prefork.Start(ctx, prefork.Config{Workers: 4})
//		...
//		defer f.Stop()
//		http.Get("http://" + f.Addr + "/")
//	}
//
// Environment variables, not flags, tell a worker what to do, since flags
// would not survive the test binary, which parses its own.
package prefork

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sharedstate/sharedstate"
)

// The parent's messages to its workers.
const (
	workerEnv  = "SHAREDSTATE_PREFORK_WORKER" // "1" in a worker
	addrEnv    = "SHAREDSTATE_PREFORK_ADDR"   // where a worker serves
	verboseEnv = "SHAREDSTATE_PREFORK_VERBOSE"
)

// readyLine is what a worker prints on its standard output once it serves.
const readyLine = "ready"

// IsWorker reports whether this process is a worker started by Start.
func IsWorker() bool { return os.Getenv(workerEnv) == "1" }

// ReusePort is a net.ListenConfig.Control function that sets SO_REUSEPORT
// on a socket before it binds, so that several processes can listen on the
// same port. Linux spreads the connections between them; macOS and the BSDs
// let them bind but hand most connections to one (FreeBSD balances with
// SO_REUSEPORT_LB, which this sets there).
func ReusePort(network, address string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = reusePort(fd) }); cerr != nil {
		return cerr
	}
	return err
}

// Listen listens on the TCP address addr with SO_REUSEPORT.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: ReusePort}
	return lc.Listen(ctx, "tcp", addr)
}

// Config says what workers Start starts.
type Config struct {
	Workers int      // how many; at least 1
	Addr    string   // where they serve; "" for a free port of 127.0.0.1
	Env     []string // "KEY=value" pairs added to each worker's environment
	Verbose bool     // workers log at level Info rather than Warn
}

// A Fleet is the worker processes of one run.
type Fleet struct {
	Addr    string // host:port on which every worker serves
	Workers []*Worker

	ctx    context.Context // the workers', ended by Stop
	cancel context.CancelFunc
	exe    string
	env    []string
	mu     sync.Mutex // guards Workers while Hold replaces them
}

// A Worker is one worker process.
type Worker struct {
	cmd    *exec.Cmd
	ready  chan error    // receives nil once the worker serves, or why it never will
	done   chan struct{} // closed once the process has exited and been waited for
	killed atomic.Bool   // Kill was called
}

// Start starts cfg.Workers copies of the running executable as workers
// serving one free port of 127.0.0.1, and returns once every one serves.
// The workers stop when ctx ends or Stop is called; Stop waits for them.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Workers < 1 {
		return nil, errors.New("prefork: at least 1 worker is needed")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Reserve a port by joining its SO_REUSEPORT group before the workers
	// do, so that no other program can take it in the meantime. This
	// listener must be gone before any client connects: the kernel would
	// queue its share of the connections on it, and nobody accepts them.
	reserved, err := Listen(ctx, cmp.Or(cfg.Addr, "127.0.0.1:0"))
	if err != nil {
		return nil, err
	}
	defer reserved.Close()

	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{Addr: reserved.Addr().String(), ctx: ctx, cancel: cancel, exe: exe}
	f.env = append(os.Environ(), cfg.Env...)
	f.env = append(f.env, workerEnv+"=1", addrEnv+"="+f.Addr, verboseEnv+"="+strconv.FormatBool(cfg.Verbose))
	for range cfg.Workers {
		w, err := startWorker(ctx, exe, f.env)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.Workers = append(f.Workers, w)
	}
	if err := awaitReady(ctx, f.Workers, startTimeout); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// StartFresh is Start with a state directory of the run's own, made for it
// in the system's temporary directory (named after name), so that runs
// never share state or a stale owner: the workers' environment adds
// env(dir). cleanup stops the workers, unless Stop has, and removes the
// directory.
func StartFresh(ctx context.Context, name string, cfg Config, env func(dir string) []string) (f *Fleet, dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", name+"-demo-")
	if err != nil {
		return nil, "", nil, err
	}
	cfg.Env = append(cfg.Env, env(dir)...)
	if f, err = Start(ctx, cfg); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return f, dir, func() { f.Stop(); os.RemoveAll(dir) }, nil
}

// startTimeout bounds the wait for a worker to serve.
const startTimeout = 30 * time.Second

func startWorker(ctx context.Context, exe string, env []string) (*Worker, error) {
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	// Stop with SIGTERM, so the worker closes its server and its State, and
	// kill it only if that takes too long.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = workerAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &Worker{cmd: cmd, ready: make(chan error, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ok := line == readyLine+"\n"
		if ok {
			w.ready <- nil
		} else {
			io.WriteString(os.Stderr, line)
		}
		// Nothing more is expected, but a full pipe would block the worker.
		io.Copy(os.Stderr, r)
		err := cmd.Wait()
		if !ok {
			w.ready <- fmt.Errorf("worker pid %d exited before it was ready: %v", cmd.Process.Pid, err)
		}
	}()
	return w, nil
}

// awaitReady waits until every worker serves.
func awaitReady(ctx context.Context, workers []*Worker, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, w := range workers {
		select {
		case err := <-w.ready:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for worker pid %d to be ready: %w", w.Pid(), ctx.Err())
		}
	}
	return nil
}

// Stop asks every worker to stop and waits until they have. It returns an
// error if any that was not killed with Kill failed to exit cleanly. Close
// the clients' idle connections first, so that the workers' graceful
// shutdown has none to wait for.
func (f *Fleet) Stop() error {
	f.cancel()
	var errs []error
	for _, w := range f.workers() {
		<-w.done
		if ps := w.cmd.ProcessState; !w.killed.Load() && (ps == nil || !ps.Success()) {
			errs = append(errs, fmt.Errorf("worker pid %d: %v", w.Pid(), ps))
		}
	}
	return errors.Join(errs...)
}

func (f *Fleet) workers() []*Worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Workers)
}

// Hold keeps the fleet serving until ctx ends, as gunicorn does: a worker
// that exits, killed by hand say, is replaced by a new one. It reports
// each replacement on out.
func (f *Fleet) Hold(ctx context.Context, out io.Writer) error {
	exits := make(chan *Worker)
	watch := func(w *Worker) {
		go func() {
			select {
			case <-w.done:
				select {
				case exits <- w:
				case <-ctx.Done():
				}
			case <-ctx.Done():
			}
		}()
	}
	for _, w := range f.workers() {
		watch(w)
	}
	for {
		var gone *Worker
		select {
		case <-ctx.Done():
			return nil
		case gone = <-exits:
		}
		nw, err := startWorker(f.ctx, f.exe, f.env)
		if err == nil {
			err = awaitReady(ctx, []*Worker{nw}, startTimeout)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("replacing worker pid %d: %w", gone.Pid(), err)
		}
		f.mu.Lock()
		f.Workers[slices.Index(f.Workers, gone)] = nw
		f.mu.Unlock()
		fmt.Fprintf(out, "worker pid %d exited (%v); pid %d serves in its place\n", gone.Pid(), gone.cmd.ProcessState, nw.Pid())
		watch(nw)
	}
}

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// Kill kills the worker with SIGKILL: it has no chance to clean up.
func (w *Worker) Kill() error {
	w.killed.Store(true)
	return w.cmd.Process.Kill()
}

// RunWorker runs fn as the whole life of a worker process and returns the
// exit status. fn's context ends on SIGINT or SIGTERM; its logger writes to
// standard error, marked with the worker's pid.
func RunWorker(fn func(ctx context.Context, log *slog.Logger) error) int {
	level := slog.LevelWarn
	if verbose, _ := strconv.ParseBool(os.Getenv(verboseEnv)); verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("worker", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fn(ctx, log); err != nil {
		log.Error("worker failed", "err", err)
		return 1
	}
	return 0
}

// Serve serves h on the worker's address, tells the parent that the worker
// is ready, and shuts down gracefully once ctx ends: it returns after the
// requests in progress have finished, so that the caller can then close the
// State they use.
func Serve(ctx context.Context, log *slog.Logger, h http.Handler) error {
	ln, err := Listen(ctx, os.Getenv(addrEnv))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	// The kernel queues connections from the moment of Listen, so the
	// worker is ready even if Serve has not reached Accept yet.
	if _, err := fmt.Println(readyLine); err != nil {
		srv.Close()
		<-served
		return err
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	<-served
	return nil
}

// Main is the main function of a prefork demo. In a worker process it runs
// serve (see RunWorker). Otherwise it parses the command line with parse,
// exiting 2 on a usage error (parse's flag set has said why), and runs run
// until it returns or the process is interrupted, exiting 1 if it fails.
func Main[C any](name string, serve func(context.Context, *slog.Logger) error,
	parse func(args []string, output io.Writer) (C, error),
	run func(ctx context.Context, cfg C, out io.Writer) error) {
	if IsWorker() {
		os.Exit(RunWorker(serve))
	}
	cfg, err := parse(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		slog.Error(name+" demo failed", "err", err)
		os.Exit(1)
	}
}

// ServeState opens the state called name in dir, serves the handler that
// handler builds on it until ctx ends (see Serve), and leaves the state.
func ServeState(ctx context.Context, log *slog.Logger, name, dir string, handler func(*sharedstate.State) http.Handler) error {
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := sharedstate.Open(openCtx, name, sharedstate.WithDir(dir), sharedstate.WithLogger(log))
	cancel()
	if err != nil {
		return err
	}
	if err := Serve(ctx, log, handler(st)); err != nil {
		st.Close()
		return err
	}
	return st.Close()
}

// ServeUntilDone is a demo's -serve mode: it starts the workers of cfg on
// cfg.Addr and keeps them serving until ctx ends (see Hold), for a person
// to try by hand. It prints where they serve, the state (called state, in
// dir or the default directory) that they share, and how to try them: the
// lines of try, in which ADDR stands for the address, then the inspector
// and kill -9.
func ServeUntilDone(ctx context.Context, cfg Config, out io.Writer, state, dir string, try ...string) error {
	f, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	pids := make([]string, len(f.Workers))
	for i, w := range f.Workers {
		pids[i] = strconv.Itoa(w.Pid())
	}
	fmt.Fprintf(out, "%d workers (pids %s) serving http://%s\n", len(f.Workers), strings.Join(pids, " "), f.Addr)
	fmt.Fprintf(out, "state %q in %s, kept after Ctrl-C for the next run\n\ntry:\n", state, cmp.Or(dir, sharedstate.DefaultDir()))
	inspect := "sharedstate ls -state " + state
	if dir != "" {
		inspect += " -dir " + dir
	}
	lines := slices.Concat(try, []string{
		inspect + "   # go install github.com/sharedstate/sharedstate/cmd/sharedstate@latest",
		"kill -9 " + pids[0] + "   # a new worker takes its place; the state and the count carry on",
	})
	for _, l := range lines {
		fmt.Fprintf(out, "  %s\n", strings.ReplaceAll(l, "ADDR", f.Addr))
	}
	fmt.Fprintf(out, "\nCtrl-C to stop\n")
	err = f.Hold(ctx, out)
	if err := cmp.Or(err, f.Stop()); err != nil {
		return err
	}
	fmt.Fprintf(out, "workers stopped; the state stays (sharedstate rm %s drops it)\n", state)
	return nil
}
