package wire

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/sharedstate/sharedstate/transport"
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
	Status transport.Status
	Msg    string
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

// Request and Response are transport's, with their codecs: a pointer to
// one converts to the other at no cost, (*wire.Request)(req).
type (
	Request  transport.Request
	Response transport.Response
)

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
	// A bound comes last, and only on a bounded write: every other request
	// keeps the layout that journals recorded before bounds existed.
	if m.MaxEntries != 0 || m.MaxBytes != 0 {
		b = append(b, 1)
		b = binary.AppendUvarint(b, m.MaxEntries)
		b = binary.AppendUvarint(b, m.MaxBytes)
	}
	return endFrame(b, start)
}

func (m *Request) Decode(body []byte) error {
	d := Decoder{b: body}
	d.kind(KindRequest)
	m.ID = d.Uvarint()
	m.Ack = d.Uvarint()
	m.Op = transport.Op(d.Byte())
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
	m.MaxEntries, m.MaxBytes = 0, 0
	if len(d.b) > 0 && d.err == nil {
		if d.Byte() != 1 {
			d.fail("unknown trailer of a request")
		}
		m.MaxEntries, m.MaxBytes = d.Uvarint(), d.Uvarint()
	}
	// An unknown op or a bad argument is the owner's to refuse, with an
	// answer: the frame itself is sound.
	return d.Finish()
}

// The layouts of a Response's Stats trailer: an owner of a version before
// bounded maps sends the first.
const (
	statsWithoutEvictions = 1
	statsWithEvictions    = 2
)

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
	// Stats come last, and only in a Stats answer: every other response
	// keeps the layout that snapshots saved before Stats were typed.
	if st := m.Stats; st != nil {
		b = append(b, statsWithEvictions)
		for _, v := range []int64{st.OwnerPID, st.OwnerSince, st.Clients, st.Durability, st.Counters, st.Maps,
			st.Entries, st.Bytes, st.Locks, int64(st.Ops), st.SavedAnswers, int64(st.Terms), st.JournalBytes, int64(st.Evictions)} {
			b = binary.AppendVarint(b, v)
		}
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
		m.Entries = make([]transport.Entry, n)
		for i := range m.Entries {
			m.Entries[i] = transport.Entry{Key: d.String(), Value: d.Bytes(), Version: d.Uvarint(), TTL: time.Duration(d.Varint())}
		}
	}
	m.Stats = nil
	if len(d.b) > 0 && d.err == nil {
		layout := d.Byte()
		if layout != statsWithoutEvictions && layout != statsWithEvictions {
			d.fail("unknown trailer of a response")
		}
		m.Stats = &transport.Stats{OwnerPID: d.Varint(), OwnerSince: d.Varint(), Clients: d.Varint(), Durability: d.Varint(),
			Counters: d.Varint(), Maps: d.Varint(), Entries: d.Varint(), Bytes: d.Varint(), Locks: d.Varint(),
			Ops: uint64(d.Varint()), SavedAnswers: d.Varint(), Terms: uint64(d.Varint()), JournalBytes: d.Varint()}
		if layout == statsWithEvictions {
			m.Stats.Evictions = uint64(d.Varint())
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

func (d *Decoder) status() transport.Status {
	s := transport.Status(d.Byte())
	if d.err == nil && !s.Known() {
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

// More reports whether bytes are left to read, after no error.
func (d *Decoder) More() bool { return len(d.b) > 0 }

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
