package sharedstate

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/store"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCanonicalEncoding(t *testing.T) {
	type inner struct {
		M map[int]string
		B []byte
	}
	type value struct {
		S  map[string]int
		I  map[string]any
		P  *inner
		T  time.Time
		X  []map[float64]bool
		E  msgpack.RawMessage
		Z  struct{ A, B map[string]uint64 }
		Ar [2]map[string]int8
	}
	build := func() value {
		v := value{S: map[string]int{}, I: map[string]any{}, P: &inner{M: map[int]string{}, B: []byte("bytes")},
			T: time.Unix(1700000000, 5), X: []map[float64]bool{{}, {}}}
		for i := range 50 {
			v.S[string(rune('a'+i%26))+string(rune('A'+i))] = i
			v.I[string(rune('a'+i))] = map[string]int{"x": i, "y": -i, "z": 1 << 40}
			v.P.M[i*7919-100] = string(rune('a' + i%26))
			v.X[0][float64(i)/3] = i%2 == 0
		}
		v.Z.A = map[string]uint64{"one": 1, "two": 2, "three": 3}
		v.E = msgpack.RawMessage{0xc0}
		return v
	}
	c := codecFor[value]()
	if !c.sortMaps {
		t.Fatal("a type with maps is not sorted")
	}
	first, err := c.encode(build())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // map iteration order differs from run to run
		again, err := c.encode(build())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatal("equal values encoded differently")
		}
	}
	var back value
	if err := c.decode(first, &back); err != nil {
		t.Fatal(err)
	}
	if back.P.M[7919-100] != "b" || back.I["c"].(map[string]any)["y"] != int8(-2) || !back.T.Equal(build().T) {
		t.Errorf("round trip lost data: %+v", back)
	}
	if codecFor[struct{ A []int }]().sortMaps {
		t.Error("a type without maps is rewritten needlessly")
	}
}

func TestCanonicalRejectsMalformed(t *testing.T) {
	for _, b := range [][]byte{{}, {0xc1}, {0x82, 0x01}, {0xdf, 0xff, 0xff, 0xff, 0xff}, {0xc4, 0x05, 1}, {0x91}, {0xc0, 0xc0}} {
		if _, err := canonical(b); err == nil {
			t.Errorf("canonical(% x) succeeded", b)
		}
	}
}

func TestDecodeRefusesHostileValues(t *testing.T) {
	c := codecFor[any]()
	deep := bytes.Repeat([]byte{0x91}, 1<<20) // a million nested arrays
	deep = append(deep, 0xc0)
	huge := []byte{0xdd, 0x7f, 0xff, 0xff, 0xff} // an array claiming 2^31 elements
	for name, b := range map[string][]byte{"deep": deep, "huge": huge, "trailing": {0xc0, 0xc0}} {
		var v any
		if err := c.decode(b, &v); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	var v any
	if err := c.decode(append(bytes.Repeat([]byte{0x91}, 100), 0x01), &v); err != nil {
		t.Errorf("moderate nesting refused: %v", err)
	}
}

// TestMsgpackInts: the owner reads every msgpack form of an integer, and
// writes each in the one form the encoder gives any Go integer type.
func TestMsgpackInts(t *testing.T) {
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	codec := codecFor[int64]()
	for _, n := range ints {
		want, err := codec.encode(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := store.AppendMsgpackInt(nil, n); !bytes.Equal(got, want) {
			t.Errorf("store.AppendMsgpackInt(%d) = %x, the encoder writes %x", n, got, want)
		}
		forms := []any{n, int(n), int32(n), int8(n)}
		if n >= 0 {
			forms = append(forms, uint64(n)) // a larger uint64 is no int64
		}
		for _, v := range forms {
			b, err := msgpack.Marshal(v) // not compact: every form
			if err != nil {
				t.Fatal(err)
			}
			var exact int64
			msgpack.Unmarshal(b, &exact)
			if got, ok := store.MsgpackInt(b); !ok || got != exact {
				t.Errorf("store.MsgpackInt(%x) = %d, %v; want %d", b, got, ok, exact)
			}
		}
	}
	for _, b := range [][]byte{nil, {0xc0}, {0xcd, 1}, {0xcc, 1, 2}, {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0xa1, 'x'}, {0x05, 0x05}} {
		if n, ok := store.MsgpackInt(b); ok {
			t.Errorf("store.MsgpackInt(%x) = %d, true; want no integer", b, n)
		}
	}
}

// TestDecodeFlatAsMsgpack: the fast decoding of strings and byte slices
// gives what msgpack.Unmarshal gives, nil and empty values included, for
// every way msgpack writes them, and leaves anything else to msgpack.
func TestDecodeFlatAsMsgpack(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 70_000) // a 32-bit length
	inputs := [][]byte{{0xc0}, {0xc4, 0}, {0xa0}, {0xa2, 'a', 'b'}, {0xc4, 2, 0, 0xff}, {0xd9, 1, 'x'},
		append([]byte{0xda, 1, 0}, bytes.Repeat([]byte("y"), 256)...), append([]byte{0xc6, 0, 1, 0x11, 0x70}, long...)}
	for _, in := range inputs {
		var fast, slow []byte
		var fastS, slowS string
		if !decodeFlat(in, &fast) || !decodeFlat(in, &fastS) {
			t.Fatalf("%x: not decoded flat", in[:min(len(in), 8)])
		}
		if err := msgpack.Unmarshal(in, &slow); err != nil {
			t.Fatal(err)
		}
		if err := msgpack.Unmarshal(in, &slowS); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) || (fast == nil) != (slow == nil) || fastS != slowS {
			t.Errorf("%x: flat %q (nil %v), %q; msgpack %q (nil %v), %q", in[:min(len(in), 8)], fast, fast == nil, fastS, slow, slow == nil, slowS)
		}
	}
	var b []byte
	var n int
	for _, in := range [][]byte{{0x01}, {0xa2, 'a'}, {0xa1, 'a', 'b'}, {0x92, 1, 2}, {}} {
		if decodeFlat(in, &b) {
			t.Errorf("%x decoded flat into a []byte", in)
		}
	}
	if decodeFlat([]byte{0xa1, 'a'}, &n) {
		t.Error("a string decoded flat into an int")
	}
}
