package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// sampleMessages returns messages of every kind, with every field set in at
// least one of them, including extreme integers and fields long enough to
// need a multi-byte length prefix.
func sampleMessages() []Message {
	return []Message{
		&Hello{Version: Version, PID: 4242, Nonce: []byte("0123456789abcdef0123456789abcdef"), MaxFrame: DefaultMaxFrame, Owner: 0xfeed},
		&Hello{Version: math.MaxUint64, PID: math.MinInt64},
		&Join{Version: Version, ClientID: 0xdeadbeefcafef00d, PID: 77, MAC: bytes.Repeat([]byte{0xa5}, 32), MaxFrame: 1 << 30},
		&Join{PID: -1},
		&Welcome{},
		&Refuse{Status: transport.StatusVersionMismatch, Msg: "pid 7 speaks protocol version 99"},
		&Refuse{Status: transport.StatusShuttingDown},
		&Refuse{},
		&Request{
			ID:      1<<63 + 7,
			Op:      transport.OpStoreIfVersion,
			Name:    "sessions",
			Key:     "user:\u00fc\x00\xff",
			Value:   []byte{0, 1, 2, 0xff},
			Old:     bytes.Repeat([]byte("old"), 100),
			Int:     math.MinInt64,
			OldInt:  math.MaxInt64,
			Version: 300,
			TTL:     90 * time.Second,
			KeepTTL: true,
			Limit:   math.MaxUint64,
		},
		&Request{Op: transport.OpUnlock},
		&Request{ID: 1, Op: transport.OpAdd, Name: "hits", Int: -1, TTL: math.MaxInt64},
		&Request{ID: 2, Op: transport.OpStore, Name: "cache", Key: "k", MaxEntries: 1000, MaxBytes: math.MaxUint64},
		&Request{Op: transport.OpStore, MaxBytes: 1},
		&Response{
			ID:      9,
			Status:  transport.StatusNotLocked,
			Msg:     "not held",
			Found:   true,
			Value:   []byte("v"),
			Int:     -5,
			Version: 1 << 40,
			TTL:     time.Hour,
			Entries: []transport.Entry{
				{Key: "a", Value: []byte("1"), Version: 1},
				{},
				{Key: string(bytes.Repeat([]byte("k"), 200)), Value: bytes.Repeat([]byte{0}, 300), Version: math.MaxUint64},
			},
		},
		&Response{},
		&Response{ID: 3, Stats: &transport.Stats{OwnerPID: 42, OwnerSince: -1, Clients: 3, Durability: 2, Counters: 1,
			Maps: 2, Entries: 3, Bytes: math.MaxInt64, Locks: 4, Ops: math.MaxUint64, SavedAnswers: 5, Terms: 6, JournalBytes: 7, Evictions: 8}},
		&Response{Stats: &transport.Stats{}},
		&Event{Channel: "cache", Data: []byte("drop everything")},
		&Event{},
	}
}

// zeroMessages returns a zero value of every message type.
func zeroMessages() []Message {
	return []Message{new(Hello), new(Join), new(Welcome), new(Refuse), new(Request), new(Response), new(Event)}
}

// kindOfType returns the Kind that m's type is encoded with.
func kindOfType(m Message) Kind {
	switch m.(type) {
	case *Hello:
		return KindHello
	case *Join:
		return KindJoin
	case *Welcome:
		return KindWelcome
	case *Refuse:
		return KindRefuse
	case *Request:
		return KindRequest
	case *Response:
		return KindResponse
	case *Event:
		return KindEvent
	}
	panic(fmt.Sprintf("unknown message type %T", m))
}

// newLike returns a new zero message of m's type.
func newLike(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

// readOneFrame reads frame, which must hold exactly one frame, through a
// FrameReader and returns its body.
func readOneFrame(t testing.TB, frame []byte) []byte {
	t.Helper()
	r := bytes.NewReader(frame)
	fr := NewFrameReader(r, DefaultMaxFrame)
	body, err := fr.Next()
	if err != nil {
		t.Fatalf("reading frame %q: %v", frame, err)
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the frame", r.Len())
	}
	return body
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		t.Run(fmt.Sprintf("%T", m), func(t *testing.T) {
			frame := m.AppendFrame(nil)
			body := readOneFrame(t, frame)
			if got, want := KindOf(body), kindOfType(m); got != want {
				t.Fatalf("KindOf = %d, want %d", got, want)
			}
			got := newLike(m)
			if err := got.Decode(body); err != nil {
				t.Fatalf("Decode(%q): %v", body, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
			}
		})
	}
}

// TestAppendFrameAppends checks that AppendFrame appends to b rather than
// overwriting it, so several frames can share one buffer.
func TestAppendFrameAppends(t *testing.T) {
	var buf []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		buf = m.AppendFrame(buf)
	}
	fr := NewFrameReader(bytes.NewReader(buf), DefaultMaxFrame)
	for _, m := range msgs {
		body, err := fr.Next()
		if err != nil {
			t.Fatalf("Next for %T: %v", m, err)
		}
		got := newLike(m)
		if err := got.Decode(body); err != nil {
			t.Fatalf("Decode %T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("got %+v, want %+v", got, m)
		}
	}
	if _, err := fr.Next(); err == nil {
		t.Error("Next after the last frame succeeded")
	}
}

// TestDecodePrefix checks that no strict prefix of a valid body decodes: a
// truncated frame must never pass for a shorter message. The one exception
// is an optional trailer, a Response's Stats (responses saved in snapshots
// before it existed have none) or a Request's bound (journals recorded
// before bounds have none): the body without it is the same message
// without it.
func TestDecodePrefix(t *testing.T) {
	for _, m := range sampleMessages() {
		body := m.AppendFrame(nil)[headerSize:]
		withoutTrailer := -1
		if r, ok := m.(*Response); ok && r.Stats != nil {
			bare := *r
			bare.Stats = nil
			withoutTrailer = len(bare.AppendFrame(nil)) - headerSize
		}
		if r, ok := m.(*Request); ok && (r.MaxEntries != 0 || r.MaxBytes != 0) {
			bare := *r
			bare.MaxEntries, bare.MaxBytes = 0, 0
			withoutTrailer = len(bare.AppendFrame(nil)) - headerSize
		}
		for i := range len(body) {
			if i == withoutTrailer {
				continue
			}
			err := newLike(m).Decode(body[:i])
			if err == nil {
				t.Errorf("%T: Decode of %d-byte prefix of %q succeeded", m, i, body)
			} else if !errors.Is(err, ErrMalformed) {
				t.Errorf("%T: Decode of %d-byte prefix: %v, want ErrMalformed", m, i, err)
			}
		}
	}
}

func TestDecodeTrailing(t *testing.T) {
	for _, m := range sampleMessages() {
		body := m.AppendFrame(nil)[headerSize:]
		for _, extra := range [][]byte{{0}, {1}, {0xff, 0xff}} {
			b := append(body[:len(body):len(body)], extra...)
			if err := newLike(m).Decode(b); !errors.Is(err, ErrMalformed) {
				t.Errorf("%T with trailing %q: Decode returned %v, want ErrMalformed", m, extra, err)
			}
		}
	}
}

func TestDecodeWrongKind(t *testing.T) {
	for _, m := range sampleMessages() {
		body := m.AppendFrame(nil)[headerSize:]
		for _, other := range zeroMessages() {
			if kindOfType(other) == kindOfType(m) {
				continue
			}
			if err := other.Decode(body); !errors.Is(err, ErrMalformed) {
				t.Errorf("%T.Decode of a %T body returned %v, want ErrMalformed", other, m, err)
			}
		}
		// The same fields under another kind byte are refused as well.
		b := bytes.Clone(body)
		for _, k := range []Kind{0, KindEvent + 1, 0xff, kindOfType(m)%KindEvent + 1} {
			b[0] = byte(k)
			if err := newLike(m).Decode(b); !errors.Is(err, ErrMalformed) {
				t.Errorf("%T with kind byte %d: Decode returned %v, want ErrMalformed", m, k, err)
			}
		}
	}
}

func TestKindOf(t *testing.T) {
	if k := KindOf(nil); k != 0 {
		t.Errorf("KindOf(nil) = %d, want 0", k)
	}
	if k := KindOf([]byte{byte(KindEvent), 1, 2}); k != KindEvent {
		t.Errorf("KindOf = %d, want %d", k, KindEvent)
	}
}

// TestDecodeInvalid checks field values that are well formed as bytes but
// outside what the protocol allows. (A request's op and arguments are the
// owner's to check and refuse with an answer.)
func TestDecodeInvalid(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		body []byte
	}{
		{"refuse status past end", new(Refuse), (&Refuse{Status: transport.Status(200)}).AppendFrame(nil)[headerSize:]},
		{"response status past end", new(Response), (&Response{Status: transport.Status(200)}).AppendFrame(nil)[headerSize:]},
		// ID 0, status OK, empty Msg, then a bool byte of 2.
		{"bool 2", new(Response), []byte{byte(KindResponse), 0, 0, 0, 2, 0, 0, 0, 0}},
		// Length prefix larger than what follows.
		{"long field", new(Hello), []byte{byte(KindHello), 1, 0, 5, 'a', 'b'}},
		{"huge field", new(Hello), []byte{byte(KindHello), 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		// A uvarint that overflows 64 bits.
		{"uvarint overflow", new(Request), []byte{byte(KindRequest), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		// An entry count that cannot fit in the bytes that follow.
		{"entry count", new(Response), []byte{byte(KindResponse), 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01}},
		{"entry count just over", new(Response), []byte{byte(KindResponse), 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0}},
		{"empty", new(Welcome), nil},
	}
	for _, tt := range tests {
		if err := tt.m.Decode(tt.body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode(%q) returned %v, want ErrMalformed", tt.name, tt.body, err)
		}
	}
}

// TestDecodeEntryCount checks that an entry count is checked against the
// bytes left before anything is allocated for it: 13 bytes claiming 2^28
// entries must not cost gigabytes.
func TestDecodeEntryCount(t *testing.T) {
	body := []byte{byte(KindResponse), 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01}
	var err error
	n := allocatedBy(func() { err = new(Response).Decode(body) })
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode: %v, want ErrMalformed", err)
	}
	if n > 1<<20 {
		t.Errorf("Decode of a 13-byte body allocated %d bytes", n)
	}
}

// TestDecodeEntriesLinear bounds what the densest valid Response costs to
// decode: each 3-byte empty entry becomes a 48-byte Entry, so allocation is
// linear in the body with a factor of about 16, and no worse.
func TestDecodeEntriesLinear(t *testing.T) {
	m := &Response{Entries: make([]transport.Entry, 10000)}
	body := m.AppendFrame(nil)[headerSize:]
	var got Response
	var err error
	n := allocatedBy(func() { err = got.Decode(body) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != len(m.Entries) {
		t.Fatalf("decoded %d entries, want %d", len(got.Entries), len(m.Entries))
	}
	if limit := uint64(20 * len(body)); n > limit {
		t.Errorf("decoding a %d-byte body allocated %d bytes, more than %d", len(body), n, limit)
	}
}

// TestDecodeCopies checks that decoded values do not alias the frame body,
// which FrameReader reuses for the next frame.
func TestDecodeCopies(t *testing.T) {
	m := &Response{Msg: "msg", Value: []byte("value"), Entries: []transport.Entry{{Key: "key", Value: []byte("ev")}}}
	body := m.AppendFrame(nil)[headerSize:]
	var got Response
	if err := got.Decode(body); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'X'
	}
	if !reflect.DeepEqual(&got, m) {
		t.Errorf("after overwriting the body, decoded %+v, want %+v", got, *m)
	}
}

// TestDecodeReuse checks that decoding into a message that already holds
// values replaces all of them.
func TestDecodeReuse(t *testing.T) {
	for _, full := range sampleMessages() {
		for _, m := range sampleMessages() {
			if kindOfType(m) != kindOfType(full) {
				continue
			}
			dst := newLike(full)
			if err := dst.Decode(full.AppendFrame(nil)[headerSize:]); err != nil {
				t.Fatal(err)
			}
			if err := dst.Decode(m.AppendFrame(nil)[headerSize:]); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dst, m) {
				t.Errorf("decoding over %+v: got %+v, want %+v", full, dst, m)
			}
		}
	}
}

func TestRefuseError(t *testing.T) {
	var err error = &Refuse{Status: transport.StatusUnauthorized, Msg: "uid 5"}
	var r *Refuse
	if !errors.As(fmt.Errorf("wrapped: %w", err), &r) || r.Status != transport.StatusUnauthorized {
		t.Fatalf("errors.As did not find the Refuse in %v", err)
	}
	if got, want := err.Error(), "refused: unauthorized: uid 5"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestStatsOfAnEarlierOwner checks that the Stats of an owner that counts no
// evictions (the trailer's first layout) still decode.
func TestStatsOfAnEarlierOwner(t *testing.T) {
	r := Response{ID: 3, Stats: &transport.Stats{OwnerPID: 42, JournalBytes: 7}}
	body := r.AppendFrame(nil)[headerSize:]
	bare := r
	bare.Stats = nil
	at := len(bare.AppendFrame(nil)) - headerSize
	body[at] = statsWithoutEvictions
	body = body[:len(body)-1] // Evictions, a 1-byte varint
	var got Response
	if err := got.Decode(body); err != nil {
		t.Fatal(err)
	}
	if *got.Stats != *r.Stats {
		t.Errorf("got %+v, want %+v", *got.Stats, *r.Stats)
	}
}
