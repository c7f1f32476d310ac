package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"

	"github.com/sharedstate/sharedstate/transport"
)

// frameOf returns a frame with a body of n bytes, the first being a kind.
func frameOf(n int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(n))
	for i := range n {
		b = append(b, byte(i))
	}
	return b
}

// allocatedBy returns how many heap bytes f allocates. Tests that use it must
// not run in parallel with others.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestFrameReaderTooLarge(t *testing.T) {
	hdr := []byte{0xff, 0xff, 0xff, 0xff}
	var err error
	n := allocatedBy(func() {
		_, err = NewFrameReader(bytes.NewReader(hdr), DefaultMaxFrame).Next()
	})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Next of a 4 GiB frame: %v, want ErrFrameTooLarge", err)
	}
	if n > 1<<20 {
		t.Errorf("refusing a 4 GiB frame allocated %d bytes", n)
	}
}

// TestFrameReaderLazy checks that a frame within a generous cap is buffered
// only as its bytes arrive: a peer declaring 4 GiB and sending ten bytes
// must not make the reader allocate 4 GiB.
func TestFrameReaderLazy(t *testing.T) {
	in := append([]byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 10)...)
	var err error
	n := allocatedBy(func() {
		_, err = NewFrameReader(bytes.NewReader(in), math.MaxInt).Next()
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next of a truncated 4 GiB frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 1<<20 {
		t.Errorf("reading 10 bytes of a declared 4 GiB frame allocated %d bytes", n)
	}
}

func TestFrameReaderCap(t *testing.T) {
	const max = 100
	for _, n := range []int{1, max - 1, max} {
		frame := frameOf(n)
		body, err := NewFrameReader(bytes.NewReader(frame), max).Next()
		if err != nil {
			t.Errorf("%d-byte frame with cap %d: %v", n, max, err)
		} else if !bytes.Equal(body, frame[headerSize:]) {
			t.Errorf("%d-byte frame: body %q, want %q", n, body, frame[headerSize:])
		}
	}
	_, err := NewFrameReader(bytes.NewReader(frameOf(max+1)), max).Next()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("%d-byte frame with cap %d: %v, want ErrFrameTooLarge", max+1, max, err)
	}
}

// TestFrameReaderLarge reads frames longer than the read chunk, so the body
// is assembled over several reads, and checks it arrives whole.
func TestFrameReaderLarge(t *testing.T) {
	var in []byte
	sizes := []int{readChunk + 1, 3*readChunk + 17, 5, keepBuffer + 1, 2}
	for _, n := range sizes {
		in = append(in, frameOf(n)...)
	}
	// iotest.OneByteReader would be slow for megabytes; a reader returning
	// odd-sized pieces exercises the same partial reads.
	fr := NewFrameReader(&pieceReader{b: in, piece: 1000}, DefaultMaxFrame)
	for _, n := range sizes {
		body, err := fr.Next()
		if err != nil {
			t.Fatalf("%d-byte frame: %v", n, err)
		}
		if !bytes.Equal(body, frameOf(n)[headerSize:]) {
			t.Fatalf("%d-byte frame arrived corrupted", n)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Errorf("Next at the end: %v, want io.EOF", err)
	}
}

type pieceReader struct {
	b     []byte
	piece int
}

func (r *pieceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.piece)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestFrameReaderEmpty(t *testing.T) {
	in := append([]byte{0, 0, 0, 0}, frameOf(1)...)
	_, err := NewFrameReader(bytes.NewReader(in), DefaultMaxFrame).Next()
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("Next of an empty frame: %v, want ErrMalformed", err)
	}
}

func TestFrameReaderTruncated(t *testing.T) {
	frame := frameOf(10)
	for i := 1; i < len(frame); i++ {
		_, err := NewFrameReader(bytes.NewReader(frame[:i]), DefaultMaxFrame).Next()
		if err != io.ErrUnexpectedEOF {
			t.Errorf("Next of a frame cut after %d bytes: %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
	// Nothing at all is a clean end of stream.
	if _, err := NewFrameReader(bytes.NewReader(nil), DefaultMaxFrame).Next(); err != io.EOF {
		t.Errorf("Next of an empty stream: %v, want io.EOF", err)
	}
}

func TestFrameReaderReadError(t *testing.T) {
	errBoom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(frameOf(10)[:7]), &errReader{errBoom})
	if _, err := NewFrameReader(r, DefaultMaxFrame).Next(); err != errBoom {
		t.Errorf("Next: %v, want %v", err, errBoom)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// TestFrameReaderReuse checks that steady reading reuses one body buffer
// instead of allocating a body per frame.
func TestFrameReaderReuse(t *testing.T) {
	frame := (&Request{ID: 1, Op: transport.OpStore, Name: "m", Value: make([]byte, 4096)}).AppendFrame(nil)
	fr := NewFrameReader(&repeatReader{b: frame}, DefaultMaxFrame)
	if _, err := fr.Next(); err != nil {
		t.Fatal(err)
	}
	const frames = 1000
	var err error
	n := allocatedBy(func() {
		for range frames {
			if _, err = fr.Next(); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// A few bytes per frame are tolerated (the header array escapes), a
	// body per frame is not.
	if n > uint64(frames*len(frame)/10) {
		t.Errorf("reading %d frames of %d bytes allocated %d bytes", frames, len(frame), n)
	}
}

// repeatReader returns b over and over.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// A buffer of several frames, as a mailbox's slot holds them: NextFrame
// splits them one by one and refuses any that is not whole; FramesWithin
// cuts the buffer at a frame's end.
func TestFramesInABuffer(t *testing.T) {
	buf := append(append(frameOf(3), frameOf(10)...), frameOf(1)...)
	var bodies []int
	for rest := buf; len(rest) > 0; {
		body, next, err := NextFrame(rest)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, len(body))
		rest = next
	}
	if len(bodies) != 3 || bodies[0] != 3 || bodies[1] != 10 || bodies[2] != 1 {
		t.Fatalf("NextFrame split the buffer into bodies of %v bytes, want [3 10 1]", bodies)
	}
	for name, b := range map[string][]byte{
		"a truncated header":    {0, 0},
		"an empty frame":        {0, 0, 0, 0},
		"a truncated body":      frameOf(10)[:9],
		"a length past the end": binary.BigEndian.AppendUint32(nil, math.MaxUint32),
	} {
		if _, _, err := NextFrame(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("NextFrame(%s) = %v, want ErrMalformed", name, err)
		}
	}
	for max, want := range map[int]int{0: 0, 6: 0, 7: 7, 20: 7, 21: 21, 26: 26, 100: 26} {
		if got := FramesWithin(buf, max); got != want {
			t.Errorf("FramesWithin(buf, %d) = %d, want %d", max, got, want)
		}
	}
}
