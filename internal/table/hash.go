package table

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// The hash of keys: salted per table, so that keys chosen to collide in one
// table do not in another, and the same in every process, which
// hash/maphash (seeded per process) is not.

func (t *Table) hash(key string) uint64 {
	return hashKey(t.salt, unsafe.Slice(unsafe.StringData(key), len(key)))
}

func (t *Table) hashBytes(key []byte) uint64 { return hashKey(t.salt, key) }

const (
	prime1 = 0x9e3779b185ebca87
	prime2 = 0xc2b2ae3d27d4eb4f
)

func hashKey(salt uint64, b []byte) uint64 {
	h := salt ^ uint64(len(b))*prime1
	for ; len(b) >= 8; b = b[8:] {
		h = mix(h, binary.LittleEndian.Uint64(b))
	}
	var tail uint64
	for i, c := range b {
		tail |= uint64(c) << (8 * i)
	}
	h = mix(h, tail)
	// murmur3's finalizer: every bit of the input moves the top bits (the
	// slot's tag) and the bottom ones (its place).
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

func mix(h, w uint64) uint64 { return bits.RotateLeft64(h^w*prime2, 31) * prime1 }
