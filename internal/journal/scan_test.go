package journal

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
)

func own(n int) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = -1
	}
	return c
}

func TestScanClean(t *testing.T) {
	data, offs := build(7, own(5), 4096)
	end, tl, err := scan(data, HeaderSize, 7, "j", math.MaxInt)
	if err != nil || tl != tailClean || end != align(offs[4]+recordHeader+len("record 4, some bytes")) {
		t.Fatalf("scan = %d, %v, %v", end, tl, err)
	}
	var got []string
	for r := range Records(data, HeaderSize, end) {
		got = append(got, string(r))
	}
	if len(got) != 5 || got[4] != "record 4, some bytes" {
		t.Errorf("records %q", got)
	}
}

// TestScanOtherSalt: records of another file (an earlier generation, whose
// bytes a new file might show) are no records of this one.
func TestScanOtherSalt(t *testing.T) {
	data, _ := build(7, own(5), 4096)
	if end, _, err := scan(data, HeaderSize, 8, "j", math.MaxInt); end != HeaderSize || err != nil {
		t.Errorf("scan with another salt = %d, %v; want no records", end, err)
	}
}

func TestScanTornAndDamaged(t *testing.T) {
	for _, tc := range []struct {
		name      string
		committed []int               // of the 6 records
		damage    func([]byte, []int) // to the bytes, given the offsets
		end       int                 // index of the first record not read
		torn      bool
		damaged   bool
	}{
		{"process died before the word", own(6), func(d []byte, o []int) { clear(d[o[5] : o[5]+8]) }, 5, true, false},
		{"last record's payload cut", own(6), func(d []byte, o []int) { d[o[5]+recordHeader+3] = 0 }, 5, true, false},
		{"a middle record's length", own(6), func(d []byte, o []int) { d[o[2]] ^= 0x04 }, 2, false, true},
		{"a middle record's word zeroed", own(6), func(d []byte, o []int) { clear(d[o[2] : o[2]+8]) }, 2, false, true},
		{"a middle record's committed offset", own(6), func(d []byte, o []int) { d[o[2]+8] ^= 0x08 }, 2, false, true},
		// With sync, the records after the last disk flush claim only what
		// was flushed: a machine crash may leave them on disk around a
		// record that is not, and none was acknowledged.
		{"unflushed records around a torn one", []int{-1, -1, -1, 0, 0, 0}, func(d []byte, o []int) { d[o[4]+recordHeader] ^= 1 }, 4, true, false},
		// A record claiming the damaged one was flushed before it: damage.
		{"flushed record damaged", []int{-1, -1, -1, 0, 0, -1}, func(d []byte, o []int) { d[o[4]+recordHeader] ^= 1 }, 4, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, offs := build(7, tc.committed, 4096)
			tc.damage(data, offs)
			damaged := bytes.Clone(data)
			end, tl, err := scan(data, HeaderSize, 7, "j", math.MaxInt)
			if end != offs[tc.end] {
				t.Errorf("records end at %d, want %d (record %d)", end, offs[tc.end], tc.end)
			}
			if (tl == tailTorn) != tc.torn {
				t.Errorf("torn = %v, want %v", tl == tailTorn, tc.torn)
			}
			var d *DamageError
			if tc.damaged != errors.As(err, &d) || tc.damaged && (d.Offset != end || !errors.Is(err, ErrDamaged)) {
				t.Errorf("error %v, want damage %v at %d", err, tc.damaged, end)
			}
			if !bytes.Equal(data, damaged) {
				t.Error("scan changed the bytes")
			}
		})
	}
}

// build builds the bytes of a journal: a header, records with the given
// committed offsets, and zeros up to size. A committed offset of -1 stands
// for the record's own (as without sync), 0 for the end of record 2 (the
// last disk flush, with sync).
func build(salt uint64, committed []int, size int) ([]byte, []int) {
	data := appendHeader(nil, journalMagic, Header{Salt: salt})
	var offs []int
	for i, c := range committed {
		offs = append(offs, len(data))
		switch {
		case c < 0:
			c = len(data)
		case c == 0:
			c = offs[2] + align(recordHeader+len("record 2, some bytes"))
		}
		data = appendRecord(data, seedOf(salt), uint64(c), []byte(fmt.Sprintf("record %d, some bytes", i)))
	}
	return append(data, make([]byte, size-len(data))...), offs
}

func TestHeader(t *testing.T) {
	h := Header{Gen: 3, Salt: 99, Link: 5, End: 1234}
	b := appendHeader(nil, snapshotMagic, h)
	if got, err := readHeader(b, snapshotMagic, "s"); err != nil || got != h {
		t.Fatalf("readHeader = %+v, %v", got, err)
	}
	if _, err := readHeader(b, journalMagic, "s"); !errors.Is(err, ErrDamaged) {
		t.Errorf("a snapshot read as a journal: %v", err)
	}
	for i := 4; i < HeaderSize; i++ {
		d := bytes.Clone(b)
		d[i] ^= 1
		if _, err := readHeader(d, snapshotMagic, "s"); !errors.Is(err, ErrDamaged) {
			t.Errorf("byte %d flipped: %v", i, err)
		}
	}
	old := bytes.Clone(b)
	old[3] = 1
	if _, err := readHeader(old, snapshotMagic, "s"); err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("a file of format 1: %v; want an error naming the format", err)
	}
}
