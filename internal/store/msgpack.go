package store

import (
	"encoding/binary"
	"math"
)

// MsgpackInt reads b as one msgpack integer, in any of its forms, as the
// owner reads an entry Map.Add adds to. It decodes nothing else: the owner
// never decodes values beyond this.
func MsgpackInt(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	c, rest := b[0], b[1:]
	size := 0
	switch c {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2:
		size = 4
	case 0xcf, 0xd3:
		size = 8
	}
	switch {
	case len(b) == 1 && (c <= 0x7f || c >= 0xe0): // fixints
		return int64(int8(c)), true
	case size == 0 || len(rest) != size:
		return 0, false
	}
	var u uint64
	for _, x := range rest {
		u = u<<8 | uint64(x)
	}
	switch c {
	case 0xcf:
		return int64(u), u <= math.MaxInt64
	case 0xd0:
		return int64(int8(u)), true
	case 0xd1:
		return int64(int16(u)), true
	case 0xd2:
		return int64(int32(u)), true
	}
	return int64(u), true // 0xcc, 0xcd, 0xce, 0xd3
}

// AppendMsgpackInt appends n in its shortest msgpack form, as the encoder
// writes every integer (see encode).
func AppendMsgpackInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8, n < 0 && n >= -32:
		return append(b, byte(n))
	case n > 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n > 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n > 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n > 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}
