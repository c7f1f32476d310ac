// Fiber-prefork is a Fiber app in Prefork mode whose children share their
// rate limit, sessions and a hit counter through sharedstate.
//
// In Prefork mode Fiber starts one child process per CPU, all listening on
// one port with SO_REUSEPORT. Each child has its own memory, so Fiber's
// limiter and session middleware, with their default in-memory storage,
// keep one limit and one set of sessions per child: a client allowed 10
// requests a minute gets 10 per child, and a login made on one child is
// unknown to the next. Handing the middleware a fiberstorage.Storage is the
// one line that makes them share:
//
//	limiter.New(limiter.Config{Storage: fiberstorage.New(st, "limiter")})
//
// Usage:
//
//	go run . [-addr 127.0.0.1:3000] [-workers 4] [-limit 10] [-window 1m]
//		[-state fiber-prefork-demo] [-dir DIR]
//
// Every child serves:
//
//	GET  /             "hello from pid P", rate-limited per client IP (429 beyond -limit)
//	POST /login?user=U log in as U: the session cookie works on every child
//	GET  /whoami       the session's user, and the pid that answered
//	GET  /hits         a counter of the requests to / that every child shares
//
// Try it, and watch the pids change while the limit and the login hold:
//
//	for i in $(seq 12); do curl -s localhost:3000/; echo; done
//	curl -c jar -X POST 'localhost:3000/login?user=ann'
//	for i in 1 2 3; do curl -b jar localhost:3000/whoami; echo; done
//
// Fiber's limiter reads a count and writes it back; it serialises that
// within a process, but fiber.Storage has no atomic increment, so two
// children counting the same client at the same instant can each let one
// request through that the other also counted. Under a burst the limit may
// be exceeded by a few; when it must hold exactly, count with the ratelimit
// package of sharedstate, which uses an atomic Map.Update.
//
// The Fiber master stops when any child exits, and then kills the others.
// On SIGINT or SIGTERM the master asks every child to shut down gracefully;
// a child killed before it finishes loses no acknowledged write, since
// sharedstate journals each one before answering.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/limiter"
	"github.com/gofiber/fiber/v3/middleware/session"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/fiberstorage"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the master or, in a child started by Fiber, the child, and
// returns the exit status. Fiber starts its children with the master's
// arguments, so both parse the same flags.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag set has printed why
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("pid", os.Getpid())
	if fiber.IsChild() {
		err = runChild(ctx, cfg, log, stdout)
	} else {
		err = runMaster(ctx, cfg, stdout)
	}
	if err != nil {
		log.Error("fiber-prefork failed", "err", err)
		return 1
	}
	return 0
}

// config is the command line.
type config struct {
	addr    string
	workers int
	limit   int
	window  time.Duration
	state   string // the name passed to sharedstate.Open
	dir     string // the state's directory; "" for sharedstate's default
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("fiber-prefork", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:3000", "IPv4 `address` to serve on")
	fs.IntVar(&cfg.workers, "workers", runtime.NumCPU(), "number of child `processes`")
	fs.IntVar(&cfg.limit, "limit", 10, "`requests` to / allowed per client IP per window")
	fs.DurationVar(&cfg.window, "window", time.Minute, "the rate limit's `window`")
	fs.StringVar(&cfg.state, "state", "fiber-prefork-demo", "`name` of the shared state")
	fs.StringVar(&cfg.dir, "dir", "", "`directory` of the shared state (default: sharedstate's)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.workers < 1, cfg.limit < 1:
		err = errors.New("-workers and -limit must be at least 1")
	case cfg.window < time.Second:
		err = errors.New("-window must be at least 1s: Fiber's limiter counts whole seconds")
	}
	if err != nil {
		fmt.Fprintln(output, err)
		fs.Usage()
	}
	return cfg, err
}

// runMaster starts the children and waits until one exits. When ctx ends it
// asks every child to shut down.
func runMaster(ctx context.Context, cfg config, out io.Writer) error {
	// Fiber starts one child per GOMAXPROCS of the master.
	runtime.GOMAXPROCS(cfg.workers)
	app := fiber.New()

	var (
		mu   sync.Mutex
		pids []int
	)
	app.Hooks().OnFork(func(pid int) error { // called in the master, once per child
		mu.Lock()
		defer mu.Unlock()
		pids = append(pids, pid)
		return nil
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		mu.Lock()
		defer mu.Unlock()
		for _, pid := range pids {
			if p, err := os.FindProcess(pid); err == nil {
				p.Signal(syscall.SIGTERM) // fails only if it has exited
			}
		}
	}()

	fmt.Fprintf(out, "master pid %d: starting %d children on %s; state %q in %s (see: sharedstate ls -state %[4]s)\n",
		os.Getpid(), cfg.workers, cfg.addr, cfg.state, cmp.Or(cfg.dir, sharedstate.DefaultDir()))
	// Listen returns once the first child exits.
	return app.Listen(cfg.addr, fiber.ListenConfig{EnablePrefork: true, DisableStartupMessage: true})
}

// runChild opens the state and serves the app until ctx ends.
func runChild(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	opts := []sharedstate.Option{sharedstate.WithLogger(log)}
	if cfg.dir != "" {
		opts = append(opts, sharedstate.WithDir(cfg.dir))
	}
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := sharedstate.Open(openCtx, cfg.state, opts...)
	cancel()
	if err != nil {
		return err
	}
	defer st.Close() // on early returns; the normal path closes it below

	err = newApp(st, cfg).Listen(cfg.addr, fiber.ListenConfig{
		EnablePrefork:         true,
		DisableStartupMessage: true,
		GracefulContext:       ctx,
		ShutdownTimeout:       5 * time.Second,
		ListenerAddrFunc: func(addr net.Addr) {
			fmt.Fprintf(out, "child pid %d: serving %s (%s of state %q)\n", os.Getpid(), addr, roleName(st), cfg.state)
		},
	})
	if err != nil {
		return err
	}
	return st.Close()
}

// newApp returns the app every child serves.
func newApp(st *sharedstate.State, cfg config) *fiber.App {
	app := fiber.New()
	pid := strconv.Itoa(os.Getpid())
	hits := st.Counter("hits")

	// The one line each that shares the middleware's state between the
	// children: Storage.
	app.Use(session.New(session.Config{Storage: fiberstorage.New(st, "sessions")}))
	limit := limiter.New(limiter.Config{
		Max:        cfg.limit,
		Expiration: cfg.window,
		Storage:    fiberstorage.New(st, "limiter"),
	})

	app.Get("/", limit, func(c fiber.Ctx) error {
		if _, err := hits.Add(c.Context(), 1); err != nil {
			return err
		}
		return c.SendString("hello from pid " + pid)
	})
	app.Post("/login", func(c fiber.Ctx) error {
		user := c.Query("user")
		if user == "" {
			return fiber.NewError(fiber.StatusBadRequest, "missing ?user=")
		}
		session.FromContext(c).Set("user", user)
		return c.SendString("logged in as " + user + " on pid " + pid)
	})
	app.Get("/whoami", func(c fiber.Ctx) error {
		user, ok := session.FromContext(c).Get("user").(string)
		if !ok {
			return c.Status(fiber.StatusUnauthorized).SendString("not logged in (pid " + pid + ")")
		}
		return c.SendString(user + " (pid " + pid + ")")
	})
	app.Get("/hits", func(c fiber.Ctx) error {
		n, err := hits.Load(c.Context())
		if err != nil {
			return err
		}
		return c.SendString(strconv.FormatInt(n, 10))
	})
	return app
}

func roleName(st *sharedstate.State) string {
	if st.IsOwner() {
		return "owner"
	}
	return "proxy"
}
