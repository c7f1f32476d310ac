package transport

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Status is the outcome of a request or a handshake.
type Status uint8

// Statuses. StatusOK is the zero value.
const (
	StatusOK              Status = iota
	StatusBadRequest             // the request is invalid (unknown op, bad name)
	StatusTooLarge               // a value or key exceeds a limit
	StatusNotLocked              // Unlock of a lock not held with that token
	StatusUnauthorized           // the peer's uid or secret was refused
	StatusVersionMismatch        // the peers speak different protocol versions
	StatusShuttingDown           // the owner is closing; retry with the next one
	StatusJournalFull            // the owner cannot journal the write: disk full
	StatusReadOnly               // a write to a state opened read-only
	StatusWrongType              // an entry holds another kind of value than the operation needs
	StatusUnsupported            // the engine does not perform the operation
	statusEnd
)

// Known reports whether s is a status of this protocol version.
func (s Status) Known() bool { return s < statusEnd }

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusBadRequest:
		return "bad request"
	case StatusTooLarge:
		return "too large"
	case StatusNotLocked:
		return "not locked"
	case StatusUnauthorized:
		return "unauthorized"
	case StatusVersionMismatch:
		return "protocol version mismatch"
	case StatusShuttingDown:
		return "shutting down"
	case StatusJournalFull:
		return "journal full"
	case StatusReadOnly:
		return "read-only"
	case StatusWrongType:
		return "wrong type"
	case StatusUnsupported:
		return "unsupported"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Op is a state operation carried by a Request.
type Op uint8

// Operations. The fields of Request and Response each one uses are listed in
// the comment; fields an operation does not use are zero.
const (
	OpAdd              Op = iota + 1 // Name, Int=delta → Int=new value
	OpGet                            // Name → Int
	OpSet                            // Name, Int
	OpSwap                           // Name, Int=new → Int=old
	OpCAS                            // Name, OldInt, Int=new → Found=swapped
	OpLoad                           // Name, Key → Found, Value, Version, TTL=left (0: none)
	OpStore                          // Name, Key, Value, TTL, KeepTTL, Version=0 or the token of the entry's claim (OpCompute) to release once stored → Version
	OpLoadOrStore                    // Name, Key, Value, TTL → Found=loaded, Value=actual, Version
	OpLoadAndDelete                  // Name, Key → Found, Value
	OpDelete                         // Name, Key
	OpMapSwap                        // Name, Key, Value, TTL, KeepTTL → Found=loaded, Value=previous, Version
	OpCompareAndSwap                 // Name, Key, Old, Value, TTL, KeepTTL → Found=swapped, Version
	OpCompareAndDelete               // Name, Key, Old → Found=deleted
	OpStoreIfVersion                 // Name, Key, Value, TTL, KeepTTL, Version (0: absent) → Found=stored, Version; else the current entry
	OpLen                            // Name → Int
	OpClear                          // Name
	OpRange                          // Name, Key=start, Int=RangeInclusive or not, Limit → Entries sorted by key (with TTLs left), Found=more
	OpLock                           // Name → Version=fencing token, answered when granted
	OpTryLock                        // Name → Found=acquired, Version=fencing token
	OpUnlock                         // Name, Version=fencing token
	OpLockHeld                       // Name, Version=fencing token → Found=still held with it
	OpPublish                        // Name=channel, Value=message → Int=processes subscribed
	OpSubscribe                      // Name=channel: push its messages to this client as Events
	OpUnsubscribe                    // Name=channel
	OpList                           // Int=kind (ListCounters…), Key=exclusive start, Limit → Entries (Key=name, Version=size; holders: Version=token, Value=pid and since, TTL=held for), Found=more
	OpStats                          // → Stats
	OpLeave                          // the client's State is closing: release its locks, forget its saved answers
	OpAbandon                        // Name, Version=id of a Lock or TryLock the client gave up on: withdraw it, or release the lock it got
	OpMapAdd                         // Name, Key, Int=delta, TTL (of a new entry) → Int=new value, Version, TTL=left; the entry holds an msgpack integer
	OpTake                           // Name, Key, Int=interval, OldInt=burst, Limit=n (GCRA; see the store) → Found=allowed, Int=wait, TTL=until full
	OpDeleteCounter                  // Name → Found=existed
	OpTouch                          // Name, Value=keys read (each a uvarint length, then the key): tells a bounded map's eviction they were used
	OpCompute                        // Name, Key → Found, Value, Version, TTL=left if the entry is there; else Version=fencing token of its claim (the lock ClaimName), answered once the claim is granted, or with the entry once the claim's holder releases it with the entry there
	opEnd
)

var opNames = [...]string{
	OpAdd: "Add", OpGet: "Get", OpSet: "Set", OpSwap: "Swap", OpCAS: "CAS",
	OpLoad: "Load", OpStore: "Store", OpLoadOrStore: "LoadOrStore",
	OpLoadAndDelete: "LoadAndDelete", OpDelete: "Delete", OpMapSwap: "MapSwap",
	OpCompareAndSwap: "CompareAndSwap", OpCompareAndDelete: "CompareAndDelete",
	OpStoreIfVersion: "StoreIfVersion", OpLen: "Len", OpClear: "Clear",
	OpRange: "Range", OpLock: "Lock", OpTryLock: "TryLock", OpUnlock: "Unlock",
	OpLockHeld: "LockHeld", OpPublish: "Publish", OpSubscribe: "Subscribe",
	OpUnsubscribe: "Unsubscribe", OpList: "List", OpStats: "Stats", OpLeave: "Leave",
	OpAbandon: "Abandon", OpMapAdd: "MapAdd", OpTake: "Take",
	OpDeleteCounter: "DeleteCounter", OpTouch: "Touch", OpCompute: "Compute",
}

// Known reports whether o is an operation of this protocol version.
func (o Op) Known() bool { return o > 0 && o < opEnd }

func (o Op) String() string {
	if o.Known() {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Mutates reports whether the operation may change the state. Messages
// (publish and subscribe) are not state.
func (o Op) Mutates() bool {
	switch o {
	case OpGet, OpLoad, OpLen, OpRange, OpLockHeld, OpPublish, OpSubscribe, OpUnsubscribe, OpList, OpStats, OpTouch:
		return false
	}
	return true
}

// Named reports whether the operation acts on one counter, map, lock or
// channel, and so needs a Name; the others act on the state as a whole.
func (o Op) Named() bool {
	switch o {
	case OpList, OpStats, OpLeave:
		return false
	}
	return true
}

// The kinds of names an OpList request lists, in its Int.
const (
	ListCounters = 1
	ListMaps     = 2
	ListLocks    = 3
	ListHolders  = 4 // the locks, with their holders
)

// RangeInclusive in an OpRange request's Int makes its Key an inclusive
// start; otherwise the start is exclusive, as for the pages after the first.
const RangeInclusive = 1

// Request asks the owner to perform one operation.
type Request struct {
	ID uint64 // unique per client; the Response carries it back
	// Ack tells the owner that the client has every answer to its requests
	// numbered below Ack, so their saved results may go.
	Ack     uint64
	Op      Op
	Name    string
	Key     string
	Value   []byte
	Old     []byte
	Int     int64
	OldInt  int64
	Version uint64
	TTL     time.Duration
	KeepTTL bool // a write keeps an existing entry's expiry (TTL applies to a new one)
	Limit   uint64
	// MaxEntries and MaxBytes bound the map a write adds to (0: no bound):
	// once the write is done, the engine evicts the entries least recently
	// used until the map holds at most MaxEntries entries and MaxBytes
	// bytes of keys and values, never the entry just written.
	MaxEntries uint64
	MaxBytes   uint64
}

// Response answers the Request with the same ID.
type Response struct {
	ID      uint64
	Status  Status
	Msg     string // detail for a Status other than StatusOK
	Found   bool
	Value   []byte
	Int     int64
	Version uint64
	TTL     time.Duration // the time an entry has left; 0 if it never expires
	Entries []Entry
	Stats   *Stats // the answer to OpStats
}

// Stats is an engine's answer to OpStats: what it knows of the state as a
// whole. An engine fills in what it keeps track of and leaves the rest zero.
type Stats struct {
	OwnerPID     int64 // the process serving the state, if one does
	OwnerSince   int64 // unix nanoseconds: when it began to
	Clients      int64 // processes connected to it, besides itself
	Durability   int64 // the sharedstate.Durability it keeps
	Counters     int64
	Maps         int64
	Entries      int64 // in all maps
	Bytes        int64 // of map names, keys and values
	Locks        int64
	Ops          uint64 // operations applied since OwnerSince
	SavedAnswers int64  // answers kept for writes that may be retried
	Terms        uint64 // owners the state has had
	JournalBytes int64
	Evictions    uint64 // entries bounded maps evicted since OwnerSince
}

// Entry is one key of a map in a Range response.
type Entry struct {
	Key     string
	Value   []byte
	Version uint64
	TTL     time.Duration // left; 0 if it never expires
}

// ClaimName is the name of the lock that an OpCompute of key in the map
// mapName claims: its holder computes the entry, and releases the claim
// with the OpStore of the entry (its Version the claim's token), or with
// OpUnlock of this name (or OpAbandon of its request) if it gives up. A name of fixed length, whatever the key's, in
// a space of its own: lock names that start with a NUL byte are refused.
func ClaimName(mapName, key string) string {
	h := sha256.New()
	h.Write([]byte(mapName))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return ClaimPrefix + hex.EncodeToString(h.Sum(nil)[:16])
}

// ClaimPrefix starts every ClaimName.
const ClaimPrefix = "\x00claim:"

// AppendTouched appends key to the Value of an OpTouch: its length as a
// uvarint, then its bytes.
func AppendTouched(value []byte, key string) []byte {
	return append(binary.AppendUvarint(value, uint64(len(key))), key...)
}

// EachTouched calls fn with each key of an OpTouch's Value, which it must
// not keep, and returns an error if the Value is malformed.
func EachTouched(value []byte, fn func(key []byte)) error {
	for len(value) > 0 {
		n, w := binary.Uvarint(value)
		if w <= 0 || n > uint64(len(value)-w) {
			return errors.New("malformed keys of a Touch")
		}
		fn(value[w : w+int(n)])
		value = value[w+int(n):]
	}
	return nil
}
