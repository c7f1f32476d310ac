package transport

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Kind is the first byte of every frame body and names the message in it.
type Kind uint8

// Message kinds. The handshake is Hello (owner), Join (client), then Welcome
// or Refuse (owner); after it, clients send Requests and the owner answers
// each request with exactly one Response, and pushes an Event for each
// message published on a channel the client subscribed to.
const (
	KindHello Kind = iota + 1
	KindJoin
	KindWelcome
	KindRefuse
	KindRequest
	KindResponse
	KindEvent
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
	statusEnd
)

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
	OpStore                          // Name, Key, Value, TTL, KeepTTL → Version
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
	OpList                           // Int=kind (1 counters, 2 maps, 3 locks, 4 lock holders), Key=exclusive start, Limit → Entries (Key=name, Version=size; holders: Version=token, Value=pid and since, TTL=held for), Found=more
	OpStats                          // → Entries (Key=statistic, Version=value)
	OpLeave                          // the client's State is closing: release its locks, forget its saved answers
	OpAbandon                        // Name, Version=id of a Lock or TryLock the client gave up on: withdraw it, or release the lock it got
	OpMapAdd                         // Name, Key, Int=delta, TTL (of a new entry) → Int=new value, Version, TTL=left; the entry holds an msgpack integer
	OpTake                           // Name, Key, Int=interval, OldInt=burst, Limit=n (GCRA; see the store) → Found=allowed, Int=wait, TTL=until full
	OpDeleteCounter                  // Name → Found=existed
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
	OpDeleteCounter: "DeleteCounter",
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
	case OpGet, OpLoad, OpLen, OpRange, OpLockHeld, OpPublish, OpSubscribe, OpUnsubscribe, OpList, OpStats:
		return false
	}
	return true
}

// RangeInclusive in an OpRange request's Int makes its Key an inclusive
// start; otherwise the start is exclusive, as for the pages after the first.
const RangeInclusive = 1

// Hello is the owner's first message on a new connection.
type Hello struct {
	Version uint64
	PID     int64
	Nonce   []byte // challenge for the shared-secret MAC; empty without a secret
	// MaxFrame is the largest frame the owner reads: the client sends none
	// larger.
	MaxFrame uint64
	// Owner is the owner's client id: a client tells owners apart by it, as
	// a process id may be reused.
	Owner uint64
}

// Join is the client's answer to Hello.
type Join struct {
	Version  uint64
	ClientID uint64 // random per process, stable across reconnections
	PID      int64
	MAC      []byte // HMAC-SHA256(secret, Nonce || ClientID); empty without a secret
	MaxFrame uint64 // the largest frame the client reads
}

// Refuse ends a handshake that failed, saying why.
type Refuse struct {
	Status Status
	Msg    string
}

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
}

// Entry is one key of a map in a Range response.
type Entry struct {
	Key     string
	Value   []byte
	Version uint64
	TTL     time.Duration // left; 0 if it never expires
}

// Event carries a message published on a channel to a subscribed client.
type Event struct {
	Channel string
	Data    []byte
}

// Message is implemented by every message type.
type Message interface {
	// AppendFrame appends the message as a complete frame to b.
	AppendFrame(b []byte) []byte
	// Decode parses a frame body (kind byte included) into the message.
	Decode(body []byte) error
}

// KindOf returns the kind of a frame body, as returned by FrameReader.Next.
func KindOf(body []byte) Kind {
	if len(body) == 0 {
		return 0
	}
	return Kind(body[0])
}

func (m *Hello) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindHello)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendVarint(b, m.PID)
	b = AppendBytes(b, m.Nonce)
	b = binary.AppendUvarint(b, m.MaxFrame)
	b = binary.AppendUvarint(b, m.Owner)
	return endFrame(b, start)
}

func (m *Hello) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindHello)
	// The version comes first so that any future layout still reveals it.
	m.Version = d.Uvarint()
	m.PID = d.Varint()
	m.Nonce = d.Bytes()
	m.MaxFrame = d.Uvarint()
	m.Owner = d.Uvarint()
	return d.Finish()
}

func (m *Join) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindJoin)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendUvarint(b, m.ClientID)
	b = binary.AppendVarint(b, m.PID)
	b = AppendBytes(b, m.MAC)
	b = binary.AppendUvarint(b, m.MaxFrame)
	return endFrame(b, start)
}

func (m *Join) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindJoin)
	m.Version = d.Uvarint()
	m.ClientID = d.Uvarint()
	m.PID = d.Varint()
	m.MAC = d.Bytes()
	m.MaxFrame = d.Uvarint()
	return d.Finish()
}

// Welcome ends a handshake that succeeded.
type Welcome struct{}

func (m *Welcome) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindWelcome)
	return endFrame(b, start)
}

func (m *Welcome) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindWelcome)
	return d.Finish()
}

func (m *Refuse) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindRefuse)
	b = append(b, byte(m.Status))
	b = AppendString(b, m.Msg)
	return endFrame(b, start)
}

func (m *Refuse) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindRefuse)
	m.Status = d.status()
	m.Msg = d.String()
	return d.Finish()
}

// Error makes a Refuse usable as the error it reports.
func (m *Refuse) Error() string {
	return "refused: " + m.Status.String() + ": " + m.Msg
}

func (m *Request) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindRequest)
	b = binary.AppendUvarint(b, m.ID)
	b = binary.AppendUvarint(b, m.Ack)
	b = append(b, byte(m.Op))
	b = AppendString(b, m.Name)
	b = AppendString(b, m.Key)
	b = AppendBytes(b, m.Value)
	b = AppendBytes(b, m.Old)
	b = binary.AppendVarint(b, m.Int)
	b = binary.AppendVarint(b, m.OldInt)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendVarint(b, int64(m.TTL))
	b = AppendBool(b, m.KeepTTL)
	b = binary.AppendUvarint(b, m.Limit)
	return endFrame(b, start)
}

func (m *Request) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindRequest)
	m.ID = d.Uvarint()
	m.Ack = d.Uvarint()
	m.Op = Op(d.Byte())
	m.Name = d.String()
	m.Key = d.String()
	m.Value = d.Bytes()
	m.Old = d.Bytes()
	m.Int = d.Varint()
	m.OldInt = d.Varint()
	m.Version = d.Uvarint()
	m.TTL = time.Duration(d.Varint())
	m.KeepTTL = d.Bool()
	m.Limit = d.Uvarint()
	// An unknown op or a bad argument is the owner's to refuse, with an
	// answer: the frame itself is sound.
	return d.Finish()
}

func (m *Response) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindResponse)
	b = binary.AppendUvarint(b, m.ID)
	b = append(b, byte(m.Status))
	b = AppendString(b, m.Msg)
	b = AppendBool(b, m.Found)
	b = AppendBytes(b, m.Value)
	b = binary.AppendVarint(b, m.Int)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendVarint(b, int64(m.TTL))
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for _, e := range m.Entries {
		b = AppendString(b, e.Key)
		b = AppendBytes(b, e.Value)
		b = binary.AppendUvarint(b, e.Version)
		b = binary.AppendVarint(b, int64(e.TTL))
	}
	return endFrame(b, start)
}

func (m *Response) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindResponse)
	m.ID = d.Uvarint()
	m.Status = d.status()
	m.Msg = d.String()
	m.Found = d.Bool()
	m.Value = d.Bytes()
	m.Int = d.Varint()
	m.Version = d.Uvarint()
	m.TTL = time.Duration(d.Varint())
	// Each entry takes at least four bytes, so the count is checked against
	// what is left before anything is allocated for it.
	n := d.Uvarint()
	if n > uint64(len(d.b))/4 {
		d.fail("%d entries cannot fit in %d bytes", n, len(d.b))
	}
	m.Entries = nil
	if d.err == nil && n > 0 {
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			m.Entries[i] = Entry{Key: d.String(), Value: d.Bytes(), Version: d.Uvarint(), TTL: time.Duration(d.Varint())}
		}
	}
	return d.Finish()
}

func (m *Event) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b, KindEvent)
	b = AppendString(b, m.Channel)
	b = AppendBytes(b, m.Data)
	return endFrame(b, start)
}

func (m *Event) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindEvent)
	m.Channel = d.String()
	m.Data = d.Bytes()
	return d.Finish()
}

// AppendBytes appends v with its length, for Decoder.Bytes.
func AppendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// AppendString appends s with its length, for Decoder.String.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBool appends v as one byte, for Decoder.Bool.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Decoder reads the fields of a message body, or of any record built with
// the Append functions and encoding/binary's AppendUvarint and AppendVarint.
// The first error sticks and later reads return zero values, so a caller
// checks once, with Finish.
type Decoder struct {
	b   []byte
	err error
}

func (d *Decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	d.b = nil
}

func (d *Decoder) kind(want Kind) {
	if k := Kind(d.Byte()); d.err == nil && k != want {
		d.fail("kind %d, want %d", k, want)
	}
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// Bool reads a byte written by AppendBool.
func (d *Decoder) Bool() bool {
	switch c := d.Byte(); c {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("bool byte %d", c)
		return false
	}
}

func (d *Decoder) status() Status {
	s := Status(d.Byte())
	if d.err == nil && s >= statusEnd {
		d.fail("unknown status %d", s)
	}
	return s
}

// Uvarint reads a binary.AppendUvarint value.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a binary.AppendVarint value.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// raw returns the next length-prefixed field without copying it.
func (d *Decoder) raw() []byte {
	n := d.Uvarint()
	if n > uint64(len(d.b)) {
		d.fail("field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// Bytes returns a copy of the next field, written by AppendBytes: frame
// buffers are reused, while values outlive them. An empty field reads as nil.
func (d *Decoder) Bytes() []byte {
	if v := d.raw(); len(v) > 0 {
		return append([]byte(nil), v...)
	}
	return nil
}

// Frame reads a message appended whole by its AppendFrame method, and
// returns its body for the message's Decode.
func (d *Decoder) Frame() []byte {
	if len(d.b) < headerSize {
		d.fail("truncated frame header")
		return nil
	}
	n := binary.BigEndian.Uint32(d.b)
	if uint64(n) > uint64(len(d.b)-headerSize) {
		d.fail("frame of %d bytes, %d left", n, len(d.b)-headerSize)
		return nil
	}
	body := d.b[headerSize : headerSize+int(n)]
	d.b = d.b[headerSize+int(n):]
	return body
}

// String reads a field written by AppendString.
func (d *Decoder) String() string { return string(d.raw()) }

// NewDecoder returns a Decoder reading b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Finish returns the first error met, or an error if bytes are left over.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
