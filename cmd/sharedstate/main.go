// Command sharedstate inspects and edits the shared states of an app from
// the command line, in the manner of redis-cli: list the states and what
// each holds, read and write counters and map entries, watch them change,
// see who holds a lock, publish and subscribe, show the owner's statistics,
// dump everything as JSON, and repair or remove a state's files.
//
// Install it with
//
//	go install github.com/sharedstate/sharedstate/cmd/sharedstate@latest
//
// Usage:
//
//	sharedstate COMMAND [ARGS] [flags]
//
// Commands on the states of a directory:
//
//	states                  the states: owner pid or offline, keys, bytes on disk
//	rm STATE                remove a state's files (refused while a process uses it)
//
// Commands on one state (-state NAME):
//
//	ls                      counters with values, maps with lengths, locks with holders
//	get COUNTER             a counter's value
//	get MAP                 every entry of a map, with the time left of those that expire
//	get MAP KEY             one map entry, as JSON
//	set COUNTER N           set a counter
//	set MAP KEY JSON        store a JSON value (as msgpack of the decoded JSON)
//	add COUNTER DELTA       add to a counter and print the new value
//	add MAP KEY DELTA       add to an integer entry and print the new value
//	del COUNTER             delete a counter
//	del MAP KEY             delete a map entry
//	watch NAME [KEY]        print changes to a map, one of its keys, or a counter
//	sub CHANNEL             print messages published on a channel
//	pub CHANNEL MESSAGE     publish a message
//	stats                   the owner's statistics (-interval D: with ops/s over D)
//	dump                    everything, as JSON
//	repair                  make a damaged state openable again
//
// Flags go before or after the command and its arguments; "--" ends them,
// for an argument that starts with "-" but is not a number:
//
//	-state NAME     the state to inspect, as passed to sharedstate.Open
//	-dir DIR        the states' directory (default: sharedstate.DefaultDir,
//	                $XDG_RUNTIME_DIR/sharedstate-UID or $TMPDIR/sharedstate-UID)
//	-json           print JSON for scripts instead of aligned tables
//	-interval D     how often watch polls (default 500ms); the time stats
//	                measures ops/s over
//	-ttl D          make the entry written by set expire after D
//	-raw            set and get a byte string (what Map[[]byte] holds, as the
//	                Fiber adapter stores), as base64
//	-force          let set change the type of a map's values
//	-timeout D      time limit for connecting and for each command (default 5s)
//
// For example:
//
//	sharedstate states
//	sharedstate ls -state myapp
//	sharedstate get sessions alice -state myapp
//	sharedstate set sessions alice '{"user":"alice","n":1}' -state myapp
//	sharedstate stats -state myapp -interval 1s -json | jq .ops_per_sec
//	sharedstate watch sessions -state myapp
//
// The inspector opens the state as an observer (sharedstate.WithObserver): it
// never becomes the state's owner. While a process of the app owns the state,
// the inspector is one more client of it and sees the live state. When no
// process runs, it reads the state from its journal and snapshot files
// without changing them: ls, get, stats and dump work, while set, add, del,
// pub, sub and watch fail, as nothing could change the state meanwhile.
//
// A name or key that does not exist is an error, except for set, which
// makes it, and watch, which waits for it. get, del and watch with only a
// name take it for a counter if there is a counter so called, else for a
// map.
//
// Map values are stored as msgpack; the inspector decodes them into Go's
// generic types (as sharedstate.NewMap[any] does) and prints them as JSON.
// A byte string prints as {"$base64": ...}, with "$text" beside it if the
// bytes are readable text. A value written by set is the msgpack encoding
// of the decoded JSON: integers stay integers, objects become maps with
// string keys, which a program decodes into a struct with matching field
// names. set refuses to store a value of another type than the entry's, or
// than the map's other entries, which a program reading a typed Map could
// not decode, unless given -force. A value that Map[any] cannot decode (a
// map with integer keys, say) is decoded by the inspector itself from the
// raw msgpack, rather than failing the command.
//
// Errors go to standard error and exit with status 1; usage errors exit with
// status 2. watch and sub run until interrupted (Ctrl-C), then exit with 0.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
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
	sample   bool // -interval given: stats measures ops/s over it
	ttl      time.Duration
	raw      bool
	force    bool
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
	fs.StringVar(&c.state, "state", "", "the state to inspect, as passed to sharedstate.Open")
	fs.StringVar(&c.dir, "dir", "", "the states' directory (default "+sharedstate.DefaultDir()+")")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of tables")
	fs.DurationVar(&c.interval, "interval", 500*time.Millisecond, "how often watch polls; for stats, the time to measure ops/s over")
	fs.DurationVar(&c.ttl, "ttl", 0, "make the entry written by set expire after this long (0: never)")
	fs.BoolVar(&c.raw, "raw", false, "set and get a byte string, as base64")
	fs.BoolVar(&c.force, "force", false, "let set change the type of a map's values")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "time limit for connecting and for each command")
	fs.Usage = func() { printUsage(stderr, fs) }
	args, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fs.Visit(func(f *flag.Flag) { c.sample = c.sample || f.Name == "interval" })
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
		return c.fail(cmd, usagef("wrong number of arguments"))
	}
	switch {
	case c.state == "" && !cmd.dirWide:
		return c.fail(cmd, usagef("-state NAME is required"))
	case c.interval <= 0:
		return c.fail(cmd, usagef("-interval must be positive"))
	case c.timeout <= 0:
		return c.fail(cmd, usagef("-timeout must be positive"))
	case c.ttl < 0:
		return c.fail(cmd, usagef("-ttl must not be negative"))
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
		cmdCtx, cancel = context.WithTimeout(ctx, c.timeout+c.sampleTime(cmd))
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

// sampleTime is how long cmd waits on purpose: stats, between its samples.
func (c *cli) sampleTime(cmd *command) time.Duration {
	if cmd.name == "stats" && c.sample {
		return c.interval
	}
	return 0
}

// parseArgs parses the flags in args, wherever they are, and returns the
// other arguments. A negative number is an argument, not a flag, and "--"
// ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return append(rest, args[1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			rest, args = append(rest, a), args[1:]
			continue
		}
		// One flag at a time, with the next argument if it takes a value
		// (Lookup finds no flag in -flag=value).
		n := 1
		name := strings.TrimLeft(a, "-")
		if f := fs.Lookup(name); f != nil && !isBool(f) && len(args) > 1 {
			n = 2
		}
		if err := fs.Parse(args[:n]); err != nil {
			return nil, err
		}
		args = args[n:]
	}
	return rest, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// fail prints err and returns the exit status for it.
func (c *cli) fail(cmd *command, err error) int {
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintf(c.stderr, "sharedstate: %s: %s\nusage: sharedstate %s\n", cmd.name, u.msg, cmd.synopsis())
		return exitUsage
	}
	msg := err.Error()
	switch {
	case errors.Is(err, sharedstate.ErrReadOnly):
		msg = fmt.Sprintf("%s: no process owns state %q, and the inspector never becomes its owner: it read the state from its journal, read-only. Start the app, then retry", cmd.name, c.state)
	case errors.Is(err, sharedstate.ErrUnavailable) && !cmd.files:
		msg = fmt.Sprintf("%s: the owner of state %q did not answer within %v (-timeout): %v", cmd.name, c.state, c.timeout, err)
	default:
		msg = strings.TrimPrefix(msg, "sharedstate: ")
		msg = cmd.name + ": " + msg
	}
	fmt.Fprintf(c.stderr, "sharedstate: %s\n", msg)
	return exitError
}

// options are the options of every call of the library.
func (c *cli) options() []sharedstate.Option {
	opts := []sharedstate.Option{sharedstate.WithLogger(c.log)}
	if c.dir != "" {
		opts = append(opts, sharedstate.WithDir(c.dir))
	}
	return opts
}

// open opens the state as an observer, after checking that it exists so
// that a mistyped name is reported rather than created.
func (c *cli) open(ctx context.Context) error {
	states, err := sharedstate.States(c.options()...)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(states, func(s sharedstate.StateInfo) bool { return s.Name == c.state }) {
		dir := cmp.Or(c.dir, sharedstate.DefaultDir())
		if len(states) == 0 {
			return fmt.Errorf("no state %q: no state in %s (no process has opened one there; see -dir)", c.state, dir)
		}
		names := make([]string, len(states))
		for i, s := range states {
			names[i] = s.Name
		}
		return fmt.Errorf("no state %q in %s; there are: %s", c.state, dir, strings.Join(names, ", "))
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

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: sharedstate COMMAND [ARGS] [flags]\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, name := range commandOrder {
		cmd := commands[name]
		if i == 0 || cmd.dirWide != commands[commandOrder[i-1]].dirWide {
			heading := "\nCommands on one state (-state NAME):\n"
			if cmd.dirWide {
				heading = "\nCommands on the states of a directory:\n"
			}
			tw.Flush()
			fmt.Fprint(w, heading)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(cmd.name+" "+cmd.args), cmd.help)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nFlags, before or after the command (\"--\" ends them):\n")
	fs.PrintDefaults()
}
