package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/sharedstate/sharedstate"
)

// Values are read with sharedstate.NewMap[any], which is what a program
// sees through a Map[any]. That decoding fails on some values that
// msgpack can hold, such as a map with integer keys (a Map[map[int]T]),
// and Range stops at the first failure. So when it fails, the inspector
// reads the map again as raw msgpack (rawValue) and decodes that itself,
// turning every value into something JSON can show.

// rawValue receives a stored value's msgpack encoding undecoded: the
// msgpack library hands types with an UnmarshalMsgpack method their bytes.
type rawValue []byte

// UnmarshalMsgpack implements msgpack.Unmarshaler.
func (r *rawValue) UnmarshalMsgpack(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

// load returns the entry for key in the map called name, decoded.
func (c *cli) load(ctx context.Context, name, key string) (entry, bool, error) {
	v, ttl, ok, err := sharedstate.NewMap[any](c.st, name).LoadTTL(ctx, key)
	if err == nil || !ok || ctx.Err() != nil {
		return entry{key, v, ttl}, ok, err
	}
	raw, ttl, ok, rerr := sharedstate.NewMap[rawValue](c.st, name).LoadTTL(ctx, key)
	if rerr != nil || !ok {
		return entry{}, ok, err
	}
	return entry{key, decodeRaw(raw), ttl}, true, nil
}

// entries returns every entry of the map called name, in key order.
func (c *cli) entries(ctx context.Context, name string) ([]entry, error) {
	var out []entry
	err := sharedstate.NewMap[any](c.st, name).RangeTTL(ctx, func(k string, v any, ttl time.Duration) bool {
		out = append(out, entry{k, v, ttl})
		return true
	})
	if err == nil || ctx.Err() != nil {
		return out, err
	}
	out = out[:0]
	rerr := sharedstate.NewMap[rawValue](c.st, name).RangeTTL(ctx, func(k string, v rawValue, ttl time.Duration) bool {
		out = append(out, entry{k, decodeRaw(v), ttl})
		return true
	})
	if rerr != nil {
		return nil, err
	}
	return out, nil
}

// decodeRaw decodes one msgpack value, or describes why it cannot.
func decodeRaw(b []byte) any {
	if len(b) == 0 {
		return nil // msgpack hands no bytes for nil to UnmarshalMsgpack
	}
	v, rest, err := decodeMsgpack(b, 0)
	if err == nil && len(rest) != 0 {
		err = errors.New("bytes after the value")
	}
	if err != nil {
		return map[string]any{"$error": "undecodable msgpack: " + err.Error(), "$raw": []byte(b)}
	}
	return v
}

var errShort = errors.New("truncated value")

// maxDepth bounds nesting, as the library does before decoding.
const maxDepth = 10000

// decodeMsgpack decodes the msgpack value at the start of b into nil, bool,
// int64, uint64, float64, string, []byte, time.Time, []any or
// map[string]any (keys other than strings are written as JSON), and an
// extension other than time as {"$ext": type, "data": bytes}. It returns
// the bytes after the value.
func decodeMsgpack(b []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, nil, errors.New("nested too deep")
	}
	if len(b) == 0 {
		return nil, nil, errShort
	}
	c, b := b[0], b[1:]
	switch {
	case c <= 0x7f:
		return int64(c), b, nil
	case c >= 0xe0:
		return int64(int8(c)), b, nil
	case c&0xf0 == 0x80:
		return decodeMap(b, int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return decodeArray(b, int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return decodeString(b, int(c&0x1f))
	}
	switch c {
	case 0xc0:
		return nil, b, nil
	case 0xc2:
		return false, b, nil
	case 0xc3:
		return true, b, nil
	case 0xc4, 0xc5, 0xc6:
		n, b, err := decodeLen(b, c-0xc4)
		if err != nil || len(b) < n {
			return nil, nil, errShort
		}
		return append([]byte(nil), b[:n]...), b[n:], nil
	case 0xc7, 0xc8, 0xc9:
		n, b, err := decodeLen(b, c-0xc7)
		if err != nil {
			return nil, nil, err
		}
		return decodeExt(b, n)
	case 0xca:
		if len(b) < 4 {
			return nil, nil, errShort
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), b[4:], nil
	case 0xcb:
		if len(b) < 8 {
			return nil, nil, errShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), b[8:], nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		size := 1 << (c - 0xcc)
		if len(b) < size {
			return nil, nil, errShort
		}
		u := uint64(0)
		for _, x := range b[:size] {
			u = u<<8 | uint64(x)
		}
		if u <= math.MaxInt64 {
			return int64(u), b[size:], nil
		}
		return u, b[size:], nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size := 1 << (c - 0xd0)
		if len(b) < size {
			return nil, nil, errShort
		}
		u := uint64(0)
		for _, x := range b[:size] {
			u = u<<8 | uint64(x)
		}
		shift := 64 - 8*size
		return int64(u<<shift) >> shift, b[size:], nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return decodeExt(b, 1<<(c-0xd4))
	case 0xd9, 0xda, 0xdb:
		n, b, err := decodeLen(b, c-0xd9)
		if err != nil {
			return nil, nil, err
		}
		return decodeString(b, n)
	case 0xdc, 0xdd:
		n, b, err := decodeLen(b, c-0xdc+1)
		if err != nil {
			return nil, nil, err
		}
		return decodeArray(b, n, depth)
	case 0xde, 0xdf:
		n, b, err := decodeLen(b, c-0xde+1)
		if err != nil {
			return nil, nil, err
		}
		return decodeMap(b, n, depth)
	}
	return nil, nil, fmt.Errorf("unknown type byte 0x%02x", c)
}

// decodeLen reads a big-endian length of 1, 2 or 4 bytes (size 0, 1, 2).
func decodeLen(b []byte, size byte) (int, []byte, error) {
	n := 1 << size
	if len(b) < n {
		return 0, nil, errShort
	}
	l := 0
	for _, x := range b[:n] {
		l = l<<8 | int(x)
	}
	return l, b[n:], nil
}

func decodeString(b []byte, n int) (any, []byte, error) {
	if len(b) < n {
		return nil, nil, errShort
	}
	return string(b[:n]), b[n:], nil
}

func decodeArray(b []byte, n, depth int) (any, []byte, error) {
	if n > len(b) { // each element takes a byte at least
		return nil, nil, errShort
	}
	out := make([]any, 0, n)
	for range n {
		v, rest, err := decodeMsgpack(b, depth+1)
		if err != nil {
			return nil, nil, err
		}
		out, b = append(out, v), rest
	}
	return out, b, nil
}

func decodeMap(b []byte, n, depth int) (any, []byte, error) {
	if 2*n > len(b) {
		return nil, nil, errShort
	}
	out := make(map[string]any, n)
	for range n {
		k, rest, err := decodeMsgpack(b, depth+1)
		if err != nil {
			return nil, nil, err
		}
		v, rest, err := decodeMsgpack(rest, depth+1)
		if err != nil {
			return nil, nil, err
		}
		key, ok := k.(string)
		if !ok {
			key = jsonText(k)
		}
		out[key], b = v, rest
	}
	return out, b, nil
}

// decodeExt decodes an extension of n data bytes: its type, then its data.
func decodeExt(b []byte, n int) (any, []byte, error) {
	if len(b) < 1+n {
		return nil, nil, errShort
	}
	typ, data, rest := int8(b[0]), b[1:1+n], b[1+n:]
	if typ == -1 { // timestamp
		switch n {
		case 4:
			return time.Unix(int64(binary.BigEndian.Uint32(data)), 0).UTC(), rest, nil
		case 8:
			u := binary.BigEndian.Uint64(data)
			return time.Unix(int64(u&(1<<34-1)), int64(u>>34)).UTC(), rest, nil
		case 12:
			nsec := binary.BigEndian.Uint32(data)
			sec := int64(binary.BigEndian.Uint64(data[4:]))
			return time.Unix(sec, int64(nsec)).UTC(), rest, nil
		}
	}
	return map[string]any{"$ext": int(typ), "data": append([]byte(nil), data...)}, rest, nil
}
