package transport

import "context"

// Engine keeps a state and performs operations on it: the narrow interface
// between sharedstate's public API (Counter, Map, Mutex) and where the data
// lives, as driver.Conn is to database/sql. sharedstate.Open uses the
// embedded engine (the owner and proxies); sharedstate.NewState runs the
// same API on another engine, such as Redis. The package sharedstatetest
// checks an engine's behaviour.
//
// The operations are those of Op, with each one's fields. Values are opaque bytes (canonical msgpack, written by Map),
// so that every engine stores the same bytes.
type Engine interface {
	// Do performs req and returns its answer. It is called from many
	// goroutines at once. An error means the outcome is unknown (ctx ended,
	// engine unreachable); a refusal is a Response with its Status set.
	// OpLock blocks until the lock is granted or ctx ends; if it ends, the
	// request must leave the queue without holding the lock. Do must not
	// keep req once it returns.
	Do(ctx context.Context, req *Request) (Response, error)
	// Close releases the engine. Calls made after it return
	// sharedstate.ErrClosed.
	Close() error
}

// Subscriber is implemented by engines that carry messages between
// processes: State.Subscribe needs it, while State.Publish is an operation
// like the others (OpPublish).
type Subscriber interface {
	// Subscribe calls fn with each message published on channel from now
	// on, until ctx ends or the engine closes, and returns a channel closed
	// after the last call. fn must not block.
	Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (<-chan struct{}, error)
}
