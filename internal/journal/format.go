// Package journal keeps the files a state's owner writes: the journal, a
// log of every change appended before the change is acknowledged, and the
// snapshots that the journal is compacted into. It knows records, not what
// they mean.
//
// # File format
//
// A journal and a snapshot share a layout. A 40-byte header:
//
//	magic  [4]byte  "SSJ\x02" (journal) or "SSS\x02" (snapshot)
//	crc    u32      CRC-32C of bytes 8 to 40
//	gen    u64      generation: snapshot N, then journal N on top of it
//	salt   u64      random, chosen when the file is created
//	link   u64      a journal: the salt of the snapshot it continues (0 for
//	                generation 0); a snapshot: the salt of the journal it
//	                replaces
//	end    u64      a snapshot: where the replaced journal's records end
//	                when the snapshot's state was taken; records after it
//	                are appended while the snapshot is written, and are
//	                copied into the journal that continues the snapshot
//
// then records, each at an offset that is a multiple of 8:
//
//	word       u64   payload length (low 32 bits) | CRC-32C (high 32 bits)
//	committed  u64   every record below this offset was acknowledged when
//	                 this one was written
//	payload          length bytes, then zeros to a multiple of 8
//
// All integers are little-endian. A record's CRC is of its committed
// offset and payload, seeded with the CRC of its file's salt, so that a
// record left by another file (an earlier generation) never passes for one
// of this file, and bytes elsewhere in a damaged file rarely pass for a
// record. Padding must be zeros.
// The journal's word is written last, in one 8-byte store: a process that
// dies while appending leaves a word of zeros, which ends the records.
//
// Readers never trust the bytes: a header or record that fails its check is
// damage, reported with the file and offset, unless it is a torn tail (see
// scan). Nothing here erases or rewrites what a file holds, but for a torn
// tail, which is zeroed before the journal is appended to again.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
)

// HeaderSize is the size of a file's header, where its records begin.
const HeaderSize = 40

// recordHeader is the size of a record's word and committed offset.
const recordHeader = 16

// Header is a file's header.
type Header struct {
	Gen  uint64
	Salt uint64
	Link uint64
	End  uint64
}

var (
	journalMagic  = [4]byte{'S', 'S', 'J', 2}
	snapshotMagic = [4]byte{'S', 'S', 'S', 2}
	crcTable      = crc32.MakeTable(crc32.Castagnoli)
)

// ErrDamaged reports a file whose bytes do not read as what was written;
// the error is a *DamageError.
var ErrDamaged = errors.New("damaged")

// DamageError says where a file is damaged.
type DamageError struct {
	File   string
	Offset int
	Reason string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("%s: damaged at offset %d: %s", e.File, e.Offset, e.Reason)
}

func (e *DamageError) Unwrap() error { return ErrDamaged }

func appendHeader(b []byte, magic [4]byte, h Header) []byte {
	start := len(b)
	b = append(b, magic[:]...)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, h.Gen)
	b = binary.LittleEndian.AppendUint64(b, h.Salt)
	b = binary.LittleEndian.AppendUint64(b, h.Link)
	b = binary.LittleEndian.AppendUint64(b, h.End)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+8:], crcTable))
	return b
}

// readHeader checks and decodes the header of data, a file named file.
func readHeader(data []byte, magic [4]byte, file string) (Header, error) {
	if len(data) < HeaderSize {
		return Header{}, &DamageError{File: file, Reason: fmt.Sprintf("%d bytes, shorter than a header", len(data))}
	}
	if [3]byte(data[:3]) != [3]byte(magic[:3]) {
		return Header{}, &DamageError{File: file, Reason: fmt.Sprintf("not a %s: magic %q", kindOf(magic), data[:4])}
	}
	if data[3] != magic[3] {
		return Header{}, fmt.Errorf("%s is a %s of format %d; this version reads format %d", file, kindOf(magic), data[3], magic[3])
	}
	if binary.LittleEndian.Uint32(data[4:]) != crc32.Checksum(data[8:HeaderSize], crcTable) {
		return Header{}, &DamageError{File: file, Offset: 4, Reason: "header checksum mismatch"}
	}
	return Header{
		Gen:  binary.LittleEndian.Uint64(data[8:]),
		Salt: binary.LittleEndian.Uint64(data[16:]),
		Link: binary.LittleEndian.Uint64(data[24:]),
		End:  binary.LittleEndian.Uint64(data[32:]),
	}, nil
}

func kindOf(magic [4]byte) string {
	if magic == journalMagic {
		return "journal"
	}
	return "snapshot"
}

// align rounds n up to a multiple of 8, where records begin.
func align(n int) int { return (n + 7) &^ 7 }

// seedOf is the CRC of a file's salt, which every record's CRC starts from.
func seedOf(salt uint64) uint32 {
	return crc32.Checksum(binary.LittleEndian.AppendUint64(nil, salt), crcTable)
}

// recordSum is a record's CRC, of body: its committed offset and payload,
// which follow each other in the record, seeded with its file's salt. The
// length needs no part in it: a wrong one puts the payload's end elsewhere.
func recordSum(seed uint32, body []byte) uint32 { return crc32.Update(seed, crcTable, body) }

// appendRecord appends a whole record to b, with its padding.
func appendRecord(b []byte, seed uint32, committed uint64, payload []byte) []byte {
	at := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, 0) // the CRC, once the body is in place
	b = binary.LittleEndian.AppendUint64(b, committed)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[at+4:], recordSum(seed, b[at+8:]))
	return append(b, make([]byte, align(len(payload))-len(payload))...)
}

// record checks the record at off, a multiple of 8, in data. It returns the
// payload and the offset of the next record, or ok false if off does not
// hold a record of a file whose salt has this seed.
func record(data []byte, off int, seed uint32) (payload []byte, committed uint64, next int, ok bool) {
	if off+recordHeader > len(data) {
		return nil, 0, 0, false
	}
	word := binary.LittleEndian.Uint64(data[off:])
	n := int(uint32(word))
	committed = binary.LittleEndian.Uint64(data[off+8:])
	start := off + recordHeader
	// Cheap checks first, so that a scan over damage computes few CRCs:
	// a record claims no commitment beyond itself.
	if n == 0 || n > len(data)-start || committed > uint64(off) || committed%8 != 0 {
		return nil, 0, 0, false
	}
	payload, next = data[start:start+n], align(start+n)
	if next > len(data) || !zero(data[start+n:next]) || uint32(word>>32) != recordSum(seed, data[off+8:start+n]) {
		return nil, 0, 0, false
	}
	return payload, committed, next, true
}

// Records yields the payloads of the records of data from off to end,
// which a scan has checked, each with the offset where the next begins.
func Records(data []byte, off, end int) iter.Seq2[[]byte, int] {
	return func(yield func([]byte, int) bool) {
		for at := off; at < end; {
			n := int(uint32(binary.LittleEndian.Uint64(data[at:])))
			next := align(at + recordHeader + n)
			if !yield(data[at+recordHeader:at+recordHeader+n], next) {
				return
			}
			at = next
		}
	}
}

// recordsFrom returns Records of data from off to end, if off is where one
// of the records from HeaderSize begins: a snapshot's End, which a damaged
// or a mismatched pair of files may put anywhere.
func recordsFrom(data []byte, off, end int) (iter.Seq2[[]byte, int], error) {
	at := HeaderSize
	for at < off && at < end {
		at = align(at + recordHeader + int(uint32(binary.LittleEndian.Uint64(data[at:]))))
	}
	if at != off {
		return nil, fmt.Errorf("no record begins at offset %d", off)
	}
	return Records(data, off, end), nil
}
