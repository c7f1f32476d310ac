package sharedstate

import (
	"errors"
	"fmt"

	"github.com/sharedstate/sharedstate/internal/store"

	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// Errors returned by this package, wrapped with context; test for them with
// errors.Is. Errors from a call's context (context.Canceled,
// context.DeadlineExceeded) are wrapped too and match as well.
var (
	// ErrClosed: the State was closed.
	ErrClosed = errors.New("sharedstate: closed")
	// ErrUnavailable: the state could not be reached before the context
	// ended (no owner, or the Redis server down), so the call's outcome may
	// be unknown; the error says so for a write.
	ErrUnavailable = errors.New("sharedstate: unavailable")
	// ErrVersionMismatch: this process and the owner speak different
	// protocol versions (old and new binaries overlapping during a deploy).
	ErrVersionMismatch = errors.New("sharedstate: protocol version mismatch")
	// ErrTooLarge: a key or value exceeds the size limits.
	ErrTooLarge = errors.New("sharedstate: too large")
	// ErrUnauthorized: the peer runs as another user or lacks the secret.
	ErrUnauthorized = errors.New("sharedstate: unauthorized")
	// ErrInvalidName: a state name that cannot name files safely, or a
	// channel name that is empty or reserved.
	ErrInvalidName = errors.New("sharedstate: invalid name")
	// ErrInvalidArgument: an argument no engine accepts, such as a TTL that
	// is not positive; the request changed nothing.
	ErrInvalidArgument = errors.New("sharedstate: invalid argument")
	// ErrNotLocked: Unlock of a Mutex this process does not hold.
	ErrNotLocked = errors.New("sharedstate: not locked")
	// ErrReadOnly: a write through an observer while no owner runs (see
	// WithObserver).
	ErrReadOnly = errors.New("sharedstate: read-only")
	// ErrWrongType: an operation on an entry that holds another kind of
	// value than it needs, such as Map.Add on an entry that holds no
	// integer; it changed nothing.
	ErrWrongType = errors.New("sharedstate: wrong type")
	// ErrJournalFull: a write the journal has no room for, as the disk (or
	// tmpfs) holding the state's directory is full; it changed nothing.
	ErrJournalFull = errors.New("sharedstate: journal full")
	// ErrDamaged: a state file (journal, snapshot) is missing, damaged, or
	// does not belong with the others, and nothing was dropped to get
	// past it. The error names the file and offset; Repair keeps what can
	// be read and sets the rest aside.
	ErrDamaged = store.ErrDamaged
	// ErrUnsupported: an operation the engine does not perform, such as
	// Stats or Map.Watch on Redis. It matches errors.ErrUnsupported too.
	ErrUnsupported = fmt.Errorf("sharedstate: not supported by the engine (%w)", errors.ErrUnsupported)
)

// statusError turns a status from the owner into one of the errors above.
func statusError(s transport.Status, msg string) error {
	var sentinel error
	switch s {
	case transport.StatusOK:
		return nil
	case transport.StatusBadRequest:
		sentinel = ErrInvalidArgument
	case transport.StatusTooLarge:
		sentinel = ErrTooLarge
	case transport.StatusNotLocked:
		sentinel = ErrNotLocked
	case transport.StatusUnauthorized:
		sentinel = ErrUnauthorized
	case transport.StatusVersionMismatch:
		sentinel = ErrVersionMismatch
	case transport.StatusShuttingDown:
		sentinel = ErrUnavailable
	case transport.StatusJournalFull:
		sentinel = ErrJournalFull
	case transport.StatusReadOnly:
		sentinel = ErrReadOnly
	case transport.StatusWrongType:
		sentinel = ErrWrongType
	case transport.StatusUnsupported:
		sentinel = ErrUnsupported
	default:
		return fmt.Errorf("sharedstate: %v: %s", s, msg)
	}
	return fmt.Errorf("%w: %s", sentinel, msg)
}

// transportError maps errors from the handshake to the errors above.
func transportError(err error) error {
	var r *wire.Refuse
	if errors.As(err, &r) {
		return statusError(r.Status, r.Msg)
	}
	return err
}
