// Command sharedstate inspects and edits a shared state from the command
// line, in the manner of redis-cli: list what a state holds, read and write
// counters and map entries, watch them change, publish and subscribe, and
// show the owner's statistics or dump everything as JSON.
//
// Usage:
//
//	sharedstate [flags] -state NAME COMMAND [ARGS]
//
// Commands:
//
//	ls                      counters with values, maps with lengths, locks held or free
//	get COUNTER             a counter's value
//	get MAP                 every entry of a map
//	get MAP KEY             one map entry, as JSON
//	set COUNTER N           set a counter
//	set MAP KEY JSON        store a JSON value (as msgpack of the decoded JSON)
//	add COUNTER DELTA       add to a counter and print the new value
//	del MAP KEY             delete a map entry
//	watch NAME [KEY]        print changes to a map, one of its keys, or a counter
//	sub CHANNEL             print messages published on a channel
//	pub CHANNEL MESSAGE     publish a message
//	stats                   the owner's statistics, with ops/s over one second
//	dump                    everything, as JSON
//
// Flags:
//
//	-state NAME     the state to inspect (required), as passed to sharedstate.Open
//	-dir DIR        the state's directory (default: the library's default,
//	                $XDG_RUNTIME_DIR/sharedstate-UID or $TMPDIR/sharedstate-UID)
//	-json           print JSON for scripts instead of aligned tables
//	-interval D     how often watch polls (default 500ms)
//	-ttl D          make the entry written by set expire after D
//	-timeout D      time limit for connecting and for each command (default 5s)
//
// For example:
//
//	sharedstate -state myapp ls
//	sharedstate -state myapp get sessions alice
//	sharedstate -state myapp set sessions alice '{"user":"alice","n":1}'
//	sharedstate -state myapp -json stats | jq .ops_per_sec
//	sharedstate -state myapp watch sessions
//
// The inspector opens the state as an observer (sharedstate.WithObserver): it
// never becomes the state's owner. While a process of the app owns the state,
// the inspector is one more client of it and sees the live state. When no
// process runs, it reads the state from its journal and snapshot files
// without changing them: ls, get, stats and dump work, while set, add, del,
// pub, sub and watch fail, as nothing could change the state meanwhile.
//
// get and watch with only a name take it for a counter if there is a
// counter so called, else for a map.
//
// Map values are stored as msgpack; the inspector decodes them into Go's
// generic types (as sharedstate.NewMap[any] does) and prints them as JSON.
// A value written by set is the msgpack encoding of the decoded JSON:
// integers stay integers, objects become maps with string keys, which a
// program decodes into a struct with matching field names. A value that
// Map[any] cannot decode (a map with integer keys, say) is decoded by the
// inspector itself from the raw msgpack, rather than failing the command.
//
// Errors go to standard error and exit with status 1; usage errors exit with
// status 2. watch and sub run until interrupted (Ctrl-C), then exit with 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sharedstate/sharedstate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// cli is one run of the inspector: its flags, its output and the state.
type cli struct {
	stdout, stderr io.Writer
	log            *slog.Logger

	state    string
	dir      string
	json     bool
	interval time.Duration
	ttl      time.Duration
	timeout  time.Duration

	st *sharedstate.State
}

// usageError is a mistake in the command line: it exits with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// run runs the inspector with args (without the program name), and returns
// the exit status. It stops watch and sub when ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	fs := flag.NewFlagSet("sharedstate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.state, "state", "", "the state to inspect, as passed to sharedstate.Open (required)")
	fs.StringVar(&c.dir, "dir", "", "the state's directory (default $XDG_RUNTIME_DIR/sharedstate-UID or $TMPDIR/sharedstate-UID)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of tables")
	fs.DurationVar(&c.interval, "interval", 500*time.Millisecond, "how often watch polls")
	fs.DurationVar(&c.ttl, "ttl", 0, "make the entry written by set expire after this long (0: never)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "time limit for connecting and for each command")
	fs.Usage = func() { printUsage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	args = fs.Args()
	if len(args) == 0 || args[0] == "help" {
		printUsage(stderr, fs)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sharedstate: unknown command %q\n", args[0])
		fmt.Fprintf(stderr, "Run 'sharedstate help' for the list of commands.\n")
		return exitUsage
	}
	args = args[1:]
	if len(args) < cmd.minArgs || len(args) > cmd.maxArgs {
		fmt.Fprintf(stderr, "sharedstate: %s: wrong number of arguments\nusage: sharedstate [flags] -state NAME %s %s\n", cmd.name, cmd.name, cmd.args)
		return exitUsage
	}
	switch {
	case c.state == "":
		fmt.Fprintf(stderr, "sharedstate: -state NAME is required\nusage: sharedstate [flags] -state NAME %s %s\n", cmd.name, cmd.args)
		return exitUsage
	case c.interval <= 0:
		fmt.Fprintf(stderr, "sharedstate: -interval must be positive\n")
		return exitUsage
	case c.timeout <= 0:
		fmt.Fprintf(stderr, "sharedstate: -timeout must be positive\n")
		return exitUsage
	case c.ttl < 0:
		fmt.Fprintf(stderr, "sharedstate: -ttl must not be negative\n")
		return exitUsage
	}
	// Check the arguments before connecting, so that a usage error is one.
	if cmd.check != nil {
		if err := cmd.check(c, args); err != nil {
			return c.fail(cmd, err)
		}
	}

	if !cmd.files {
		if err := c.open(ctx); err != nil {
			return c.fail(cmd, err)
		}
		defer c.st.Close()
	}

	cmdCtx := ctx
	if !cmd.long {
		var cancel context.CancelFunc
		cmdCtx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := cmd.run(c, cmdCtx, args); err != nil {
		if cmd.long && ctx.Err() != nil {
			return exitOK // interrupted: the normal end of watch and sub
		}
		return c.fail(cmd, err)
	}
	return exitOK
}

// fail prints err and returns the exit status for it.
func (c *cli) fail(cmd *command, err error) int {
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintf(c.stderr, "sharedstate: %s: %s\nusage: sharedstate [flags] -state NAME %s %s\n", cmd.name, u.msg, cmd.name, cmd.args)
		return exitUsage
	}
	msg := err.Error()
	switch {
	case errors.Is(err, sharedstate.ErrReadOnly):
		msg = fmt.Sprintf("%s: no process owns state %q, and the inspector never becomes its owner: it read the state from its journal, read-only. Start the app, then retry", cmd.name, c.state)
	case errors.Is(err, sharedstate.ErrUnavailable):
		msg = fmt.Sprintf("%s: the owner of state %q did not answer within %v (-timeout): %v", cmd.name, c.state, c.timeout, err)
	default:
		msg = strings.TrimPrefix(msg, "sharedstate: ")
		msg = cmd.name + ": " + msg
	}
	fmt.Fprintf(c.stderr, "sharedstate: %s\n", msg)
	return exitError
}

// open opens the state as an observer, after checking that it exists so
// that a mistyped name is reported rather than created.
// options are the options of every Open and Repair of the inspector.
func (c *cli) options() []sharedstate.Option {
	opts := []sharedstate.Option{sharedstate.WithLogger(c.log)}
	if c.dir != "" {
		opts = append(opts, sharedstate.WithDir(c.dir))
	}
	return opts
}

func (c *cli) open(ctx context.Context) error {
	dir := c.dir
	if dir == "" {
		dir = defaultDir()
	}
	lock := filepath.Join(dir, c.state+".lock")
	if _, err := os.Stat(lock); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("no state %q: directory %s: %w", c.state, dir, errors.Unwrap(err))
		}
		return fmt.Errorf("no state %q in %s (no process has opened it there; see -dir)", c.state, dir)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := sharedstate.Open(ctx, c.state, append(c.options(), sharedstate.WithObserver())...)
	if err != nil {
		return err
	}
	c.st = st
	return nil
}

// defaultDir is the directory sharedstate.Open uses without WithDir.
// It repeats the library's rule, which the library does not export.
func defaultDir() string {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(base) {
		base = os.TempDir()
	}
	return filepath.Join(base, "sharedstate-"+strconv.Itoa(os.Getuid()))
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: sharedstate [flags] -state NAME COMMAND [ARGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, name := range commandOrder {
		cmd := commands[name]
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(cmd.name+" "+cmd.args), cmd.help)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nFlags:\n")
	fs.PrintDefaults()
}
