// Package sharedstate gives the worker processes of one app on one host
// shared state (counters, typed maps with TTLs, locks, and messages) with no
// server to install.
//
// Every worker opens the same named state at startup:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//	if err != nil { ... }
//	defer st.Close()
//	hits := st.Counter("hits")
//	n, err := hits.Add(ctx, 1) // the same counter in every worker
//
// # How it works
//
// The first process to take the state's lock file (an flock on a file that is
// never deleted) becomes its owner: it journals every change, keeps the
// counters and maps in a table, a file that every process of the state
// maps, and serves the state on a Unix socket beside the lock file. The
// other processes connect to that socket and forward each write to the
// owner, many goroutines sharing one connection; they read counters, map
// entries and lengths straight from the table, with no system call. The
// owner's own calls never touch the socket.
//
//	worker 1 (owner) ──── journal, table written, lock file held, socket bound
//	   ▲    ▲
//	   │    └── worker 3 (proxy): writes over one connection; reads from the table
//	   └─────── worker 2 (proxy)
//
// The owner is the table's only writer: it journals a change, writes it
// into the table in one step that readers see whole (a seqlock, with an
// intent that a new owner finishes), and then answers. So a read that
// starts after a write was acknowledged sees it, as if the owner had
// answered it. A reader checks every offset and length it follows, and
// asks the owner when the table cannot answer alone: an entry within a
// millisecond of its deadline, the length of a map whose entries expire,
// a table that is not its owner's any more (see internal/table).
//
// When the owner dies, the kernel releases its lock; a surviving worker takes
// it, adopts the table as the dead owner left it (replaying the few journal
// records after the table's position), binds the socket, and the rest
// reconnect. Calls made meanwhile wait for the new owner until their context
// ends, and calls the dead owner left unanswered are sent again: the new
// owner answers a write it has already applied from the saved result, so
// every write happens exactly once. When every worker has exited, the next
// one to start finds the state in its journal.
//
// # API
//
// Counter mirrors sync/atomic.Int64 and Map mirrors sync.Map, with a context
// first and an error last on every method, since every call may cross a
// process boundary. Map values are typed (NewMap[V]) and encoded with
// msgpack; the owner stores them as opaque bytes. Map.Update is the
// read-modify-write that get-then-set cannot be: a compare-and-swap on the
// entry's version, retried on conflict. Entries may expire (WithTTL). A
// map bounded by WithMaxEntries or WithMaxBytes is a cache that evicts its
// least recently used entries, and Map.LoadOrCompute computes a missing
// entry once across every process while the others wait for it. Mutex
// is a lock across processes with fencing tokens, and Mutex.Wrap serialises
// an http.Handler across workers. Publish and Subscribe carry messages to
// every worker, such as "drop your cache", and Map.Watch reports the changes
// to a map's entries. Stats and Names describe a state.
//
// Errors wrap the sentinel values of this package (ErrUnavailable,
// ErrClosed, ErrTooLarge, ErrInvalidArgument, ErrDamaged...): test them with
// errors.Is. A refused request (a TTL that is not positive, a value over the
// frame cap) changes nothing and costs nothing else: not the connection, not
// a lock.
//
// # Guarantees
//
// Each operation is atomic and operations on a key are linearizable: every
// process sees them in one order, across takeovers too. An acknowledged write
// survives what the Durability option says: by default the death of any
// process (the journal is in the kernel's page cache), with DurabilityDisk a
// machine crash, with DurabilityMemory nothing beyond the owner (locks
// excepted). A lock is held by at most one process; it is released at once
// when its holder's process dies or its State closes, kept by a holder
// through a takeover or a dropped connection, and released if its holder
// does not come back within WithLockGrace. Fencing tokens increase across
// owners. Messages are delivered at most once. Every call returns within
// its context, whatever the owner is doing; expiries and lock graces follow
// the monotonic clock.
//
// At most one process owns a state, whatever happens to its files: the
// owner holds a beacon no file operation can remove (on Linux), and puts
// back, from memory, any file of the state deleted or replaced under it. A
// state file that does not read back as written fails Open with ErrDamaged,
// naming the file and offset, and changes nothing; Repair keeps what reads
// back whole.
//
// # Security
//
// The socket lives in a directory private to the user (mode 0700) and has mode
// 0600; the owner checks each peer's user id with SO_PEERCRED and refuses any
// other, and WithSecret adds a challenge on a shared secret. Frames have a
// hard size cap and are decoded without trusting their contents, so a
// malformed one costs only the connection that sent it; stored values are
// checked before msgpack decodes them. State names are restricted to
// characters that cannot escape the directory.
//
// # Engines
//
// Open runs the state in the workers themselves. NewState runs the same API
// on another engine (a transport.Engine), such as Redis (module
// github.com/sharedstate/sharedstate/redisstate) when an app outgrows one
// host. The package sharedstatetest is the suite every engine passes.
package sharedstate

import (
	"context"
	"fmt"
	"regexp"
	"sync"

	"github.com/sharedstate/sharedstate/transport"
)

// State is one named shared state as seen from one process. It is safe for
// concurrent use. Close it when the process no longer needs it.
type State struct {
	name     string
	cfg      config
	engine   transport.Engine
	embedded *embedded // the engine, if it is Open's; else nil
	updates  updateQueues
	adds     addQueues  // a proxy's Counter.Adds, in batches
	flights  flights    // LoadOrCompute's calls that ask the owner
	bg       background // LoadOrCompute's refreshes of stale entries
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$`)

// Open joins the state called name, becoming its owner if no other process
// is, and returns once the state can be used. Name is 1 to 64 letters,
// digits, '.', '_' or '-', not starting with '.'. Open returns ErrUnavailable
// if ctx ends before an owner is reachable, and ErrVersionMismatch or
// ErrUnauthorized at once if the owner refuses this process.
func Open(ctx context.Context, name string, opts ...Option) (*State, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	cfg := newConfig(opts)
	e, err := openEmbedded(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	return &State{name: name, cfg: cfg, engine: e, embedded: e}, nil
}

// NewState returns the state called name kept by engine e, such as the
// Redis engine of the redisstate module. Options that concern the
// embedded engine (WithDir, WithDurability and the like) have no effect.
// Close closes e.
func NewState(name string, e transport.Engine, opts ...Option) (*State, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return &State{name: name, cfg: newConfig(opts), engine: e}, nil
}

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: %q: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'", ErrInvalidName, name)
	}
	return nil
}

// Close leaves the state. If this process is the owner, another process takes
// over. Calls in progress and later return ErrClosed.
func (s *State) Close() error {
	s.bg.stop()
	return s.engine.Close()
}

// Name returns the state's name.
func (s *State) Name() string { return s.name }

// IsOwner reports whether this process currently owns the state. It is
// always false with an engine other than Open's.
func (s *State) IsOwner() bool { return s.embedded != nil && s.embedded.isOwner() }

// do performs req on the engine, and turns a status other than StatusOK
// into an error. Taking req by value keeps the caller's copy off the heap;
// the engine gets a pooled copy.
func (s *State) do(ctx context.Context, req transport.Request) (transport.Response, error) {
	r := requests.Get().(*transport.Request)
	*r = req
	return s.send(ctx, r)
}

// send performs r, a request from the pool, and puts it back. The hot paths
// (Counter) fill pooled requests directly: an owner-local call is fast enough
// for copies of the request to show.
func (s *State) send(ctx context.Context, r *transport.Request) (transport.Response, error) {
	// A call whose context has ended does nothing, rather than acting and
	// then reporting the context's error, as database/sql does.
	if err := ctx.Err(); err != nil {
		*r = transport.Request{}
		requests.Put(r)
		return transport.Response{}, err
	}
	resp, err := s.engine.Do(ctx, r)
	*r = transport.Request{} // drop references to values
	requests.Put(r)
	if err != nil {
		return resp, err
	}
	return resp, statusError(resp.Status, resp.Msg)
}

// readLocal answers req, a read, from the owner's table if this process is
// a proxy that can (proxy.readTable), skipping what a call to the owner
// needs: a pooled request, an id, the wait for an answer.
func (s *State) readLocal(ctx context.Context, req *transport.Request) (transport.Response, bool) {
	if s.embedded == nil || ctx.Err() != nil {
		return transport.Response{}, false // a call whose context has ended fails as the others do
	}
	return s.embedded.readTable(req)
}

// requests reuses the requests that State.do hands to engines, which do not
// keep them (see transport.Engine).
var requests = sync.Pool{New: func() any { return new(transport.Request) }}

// Counter is a shared int64 with the methods of sync/atomic.Int64. Its zero
// value is 0.
type Counter struct {
	st   *State
	name string
}

// Counter returns the counter called name.
func (s *State) Counter(name string) *Counter {
	return &Counter{st: s, name: name}
}

func (c *Counter) do(ctx context.Context, op transport.Op, old, v int64) (transport.Response, error) {
	r := requests.Get().(*transport.Request)
	r.Op, r.Name, r.OldInt, r.Int = op, c.name, old, v
	resp, err := c.st.send(ctx, r)
	if err != nil {
		err = fmt.Errorf("sharedstate: counter %q: %v: %w", c.name, op, err)
	}
	return resp, err
}

// Add adds delta to the counter and returns the new value. The Adds of a
// process that does not own the state go to the owner in batches while one
// is in flight (see adds.go): a hot counter costs a round trip per batch.
func (c *Counter) Add(ctx context.Context, delta int64) (int64, error) {
	if e := c.st.embedded; e != nil && ctx.Err() == nil && !e.isOwner() {
		return c.combinedAdd(ctx, delta)
	}
	resp, err := c.do(ctx, transport.OpAdd, 0, delta)
	return resp.Int, err
}

// Load returns the counter's value.
func (c *Counter) Load(ctx context.Context) (int64, error) {
	req := transport.Request{Op: transport.OpGet, Name: c.name}
	if resp, ok := c.st.readLocal(ctx, &req); ok {
		return resp.Int, nil
	}
	resp, err := c.do(ctx, transport.OpGet, 0, 0)
	return resp.Int, err
}

// Store sets the counter to v.
func (c *Counter) Store(ctx context.Context, v int64) error {
	_, err := c.do(ctx, transport.OpSet, 0, v)
	return err
}

// Swap sets the counter to v and returns its previous value.
func (c *Counter) Swap(ctx context.Context, v int64) (old int64, err error) {
	resp, err := c.do(ctx, transport.OpSwap, 0, v)
	return resp.Int, err
}

// Delete removes the counter, and reports whether it existed. A counter
// deleted reads 0, like one never used, and no longer appears in Names.
func (c *Counter) Delete(ctx context.Context) (existed bool, err error) {
	resp, err := c.do(ctx, transport.OpDeleteCounter, 0, 0)
	return resp.Found, err
}

// CompareAndSwap sets the counter to new if its value is old, and reports
// whether it did.
func (c *Counter) CompareAndSwap(ctx context.Context, old, new int64) (swapped bool, err error) {
	resp, err := c.do(ctx, transport.OpCAS, old, new)
	return resp.Found, err
}
