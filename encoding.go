package sharedstate

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// valueCodec encodes and decodes the values of one Map type with msgpack.
// Encodings are canonical: equal values encode to equal bytes, which is what
// CompareAndSwap compares, and integers take their shortest form. msgpack/v5 writes most maps in Go's random
// iteration order, so for types that can hold a map the encoding is rewritten
// with every map's entries sorted by their encoded keys.
type valueCodec struct {
	sortMaps bool
	// plain: a V holds no references (no pointer, slice, map, channel,
	// function or interface; strings are immutable), so a copy of one is
	// a value of its own, as another decoding would be.
	plain bool
}

func codecFor[V any]() valueCodec {
	t := reflect.TypeFor[V]()
	return valueCodec{sortMaps: mayHoldMap(t, map[reflect.Type]bool{}), plain: isPlain(t)}
}

// isPlain reports whether values of t hold no references.
func isPlain(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return isPlain(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !isPlain(t.Field(i).Type) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.UnsafePointer, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface:
		return false
	}
	return true
}

// mayHoldMap reports whether values of t can contain a map.
func mayHoldMap(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Map, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return mayHoldMap(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if mayHoldMap(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// encoders reuses msgpack encoders, which are costly to set up.
var encoders = sync.Pool{New: func() any { return new(valueEncoder) }}

type valueEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func (c valueCodec) encode(v any) ([]byte, error) {
	e := encoders.Get().(*valueEncoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if e.enc == nil {
		e.enc = msgpack.NewEncoder(&e.buf)
	} else {
		e.enc.Reset(&e.buf) // which clears the flags
	}
	// Every integer in its shortest form, whatever its Go type, as the
	// owner writes the results of Map.Add: an int64 and an int holding the
	// same number encode alike, which CompareAndSwap relies on.
	e.enc.UseCompactInts(true)
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	if c.sortMaps {
		return canonical(e.buf.Bytes())
	}
	return bytes.Clone(e.buf.Bytes()), nil
}

// decode checks b before msgpack sees it: msgpack/v5 trusts the lengths in
// its input (a few bytes can make it allocate gigabytes) and recurses without
// limit (deep nesting exhausts the stack). Any process may have stored b.
func (c valueCodec) decode(b []byte, v any) error {
	if decodeFlat(b, v) {
		return nil
	}
	if rest, err := skipMsgpack(b, 0); err != nil || len(rest) != 0 {
		return fmt.Errorf("stored value is not valid msgpack, or claims more than it holds, or nests deeper than %d", maxDepth)
	}
	return msgpack.Unmarshal(b, v)
}

// decodeFlat decodes a msgpack nil, str or bin that is the whole of b into
// a *[]byte or a *string as msgpack.Unmarshal would, without its reflection
// and set-up, which cost most of a cache read. It reports false for any
// other target or encoding, which decode leaves to msgpack.
func decodeFlat(b []byte, v any) bool {
	nilValue := len(b) == 1 && b[0] == 0xc0
	var payload []byte
	if !nilValue {
		hlen, n, _, err := msgpackHead(b)
		if err != nil || !isStrOrBin(b[0]) || hlen+n != len(b) {
			return false
		}
		payload = b[hlen:]
	}
	switch p := v.(type) {
	case *[]byte:
		if nilValue {
			*p = nil
		} else {
			*p = append([]byte{}, payload...) // empty, not nil, as msgpack decodes an empty bin
		}
	case *string:
		*p = string(payload)
	default:
		return false
	}
	return true
}

// isStrOrBin reports whether c is the type byte of a msgpack str or bin.
func isStrOrBin(c byte) bool {
	return c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb || c >= 0xc4 && c <= 0xc6
}

// maxDepth bounds the nesting of arrays and maps in a value.
const maxDepth = 10000

var errBadMsgpack = errors.New("malformed msgpack")

// skipMsgpack returns the bytes after the object at the start of b, checking
// that every length fits in b and nesting stays within maxDepth.
func skipMsgpack(b []byte, depth int) ([]byte, error) {
	hlen, n, kind, err := msgpackHead(b)
	if err != nil {
		return nil, err
	}
	rest := b[hlen:]
	switch {
	case kind == scalarKind:
		if len(rest) < n {
			return nil, errBadMsgpack
		}
		return rest[n:], nil
	case n > len(rest) || depth >= maxDepth:
		return nil, errBadMsgpack
	case kind == mapKind:
		n *= 2
	}
	for range n {
		if rest, err = skipMsgpack(rest, depth+1); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

// canonical returns a copy of the msgpack data b with the entries of every
// map sorted by their encoded keys.
func canonical(b []byte) ([]byte, error) {
	out, rest, err := appendCanonical(make([]byte, 0, len(b)), b)
	if err == nil && len(rest) != 0 {
		err = errBadMsgpack
	}
	return out, err
}

// appendCanonical appends the canonical form of the object at the start of b
// to dst, and returns the bytes after that object.
func appendCanonical(dst, b []byte) (_, rest []byte, err error) {
	hlen, n, kind, err := msgpackHead(b)
	if err != nil {
		return nil, nil, err
	}
	dst, rest = append(dst, b[:hlen]...), b[hlen:]
	switch {
	case kind == scalarKind:
		if len(rest) < n {
			return nil, nil, errBadMsgpack
		}
		return append(dst, rest[:n]...), rest[n:], nil
	case n > len(rest): // every element takes a byte at least
		return nil, nil, errBadMsgpack
	case kind == arrayKind || n < 2:
		if kind == mapKind {
			n *= 2
		}
		for range n {
			if dst, rest, err = appendCanonical(dst, rest); err != nil {
				return nil, nil, err
			}
		}
		return dst, rest, nil
	}
	// A map: canonicalize each entry into pairs, then append them sorted.
	type entry struct{ start, keyEnd, end int }
	var pairs []byte
	entries := make([]entry, n)
	for i := range entries {
		e := &entries[i]
		e.start = len(pairs)
		if pairs, rest, err = appendCanonical(pairs, rest); err != nil {
			return nil, nil, err
		}
		e.keyEnd = len(pairs)
		if pairs, rest, err = appendCanonical(pairs, rest); err != nil {
			return nil, nil, err
		}
		e.end = len(pairs)
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return bytes.Compare(pairs[a.start:a.keyEnd], pairs[b.start:b.keyEnd])
	})
	for _, e := range entries {
		dst = append(dst, pairs[e.start:e.end]...)
	}
	return dst, rest, nil
}

type msgpackKind int

const (
	scalarKind msgpackKind = iota
	arrayKind
	mapKind
)

// msgpackHead parses the header of the msgpack object at the start of b. It
// returns the header's length, then for a scalar the length of the payload
// that follows, and for an array or map its number of elements or entries.
func msgpackHead(b []byte) (hlen, n int, kind msgpackKind, err error) {
	if len(b) == 0 {
		return 0, 0, 0, errBadMsgpack
	}
	c := b[0]
	switch {
	case c <= 0x7f || c >= 0xe0: // fixint
		return 1, 0, scalarKind, nil
	case c <= 0x8f:
		return 1, int(c & 0x0f), mapKind, nil
	case c <= 0x9f:
		return 1, int(c & 0x0f), arrayKind, nil
	case c <= 0xbf: // fixstr
		return 1, int(c & 0x1f), scalarKind, nil
	}
	// Fixed payload sizes by type byte, from 0xc0; -1 marks the types whose
	// size follows the type byte.
	const sized = -1
	fixed := [...]int{
		0xc0: 0, 0xc2: 0, 0xc3: 0, // nil, false, true
		0xc4: sized, 0xc5: sized, 0xc6: sized, // bin
		0xc7: sized, 0xc8: sized, 0xc9: sized, // ext
		0xca: 4, 0xcb: 8, // floats
		0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, // uints
		0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8, // ints
		0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17, // fixext: type byte + data
		0xd9: sized, 0xda: sized, 0xdb: sized, // str
		0xdc: sized, 0xdd: sized, 0xde: sized, 0xdf: sized, // array, map
	}
	if c == 0xc1 {
		return 0, 0, 0, errBadMsgpack
	}
	if size := fixed[c]; size != sized {
		return 1, size, scalarKind, nil
	}
	var width, extra int
	kind = scalarKind
	switch c {
	case 0xc4, 0xd9:
		width = 1
	case 0xc5, 0xda:
		width = 2
	case 0xc6, 0xdb:
		width = 4
	case 0xc7, 0xc8, 0xc9: // ext: length, then a type byte
		width, extra = 1<<(c-0xc7), 1
	case 0xdc, 0xdd:
		width, kind = 2<<(c-0xdc), arrayKind
	case 0xde, 0xdf:
		width, kind = 2<<(c-0xde), mapKind
	}
	hlen = 1 + width + extra
	if len(b) < hlen {
		return 0, 0, 0, errBadMsgpack
	}
	var size uint64
	for _, x := range b[1 : 1+width] {
		size = size<<8 | uint64(x)
	}
	if size > uint64(len(b)) {
		return 0, 0, 0, errBadMsgpack
	}
	return hlen, int(size), kind, nil
}
