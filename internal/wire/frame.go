package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge reports a frame whose declared size exceeds the cap.
var ErrFrameTooLarge = errors.New("frame too large")

// ErrMalformed reports a frame or message that does not follow the protocol.
var ErrMalformed = errors.New("malformed message")

const (
	headerSize = 4
	// readChunk bounds how much of a frame is buffered ahead of the bytes
	// actually received, so a peer that declares a large frame and then
	// stalls costs little memory.
	readChunk = 64 << 10
	// keepBuffer is the largest read buffer kept for reuse between frames.
	keepBuffer = 1 << 20
)

// FrameReader reads length-prefixed frames from a stream.
type FrameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
	hdr [headerSize]byte // here rather than on Next's stack, where it would escape
}

// NewFrameReader returns a FrameReader that refuses frames larger than max.
func NewFrameReader(r io.Reader, max int) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 32<<10), max: max}
}

// Buffered returns the number of bytes read from the stream but not yet
// returned by Next: more frames that Next will return without a system call.
func (fr *FrameReader) Buffered() int { return fr.r.Buffered() }

// Next returns the body of the next frame. The body is valid until the next
// call to Next. A body of zero bytes is malformed: every message has a kind.
func (fr *FrameReader) Next() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:])
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	case uint64(n) > uint64(fr.max):
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if cap(fr.buf) > keepBuffer {
		fr.buf = nil
	}
	b := fr.buf[:0]
	for len(b) < int(n) {
		want := min(int(n)-len(b), max(readChunk, len(b)))
		b = grow(b, want)
		if _, err := io.ReadFull(fr.r, b[len(b)-want:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	fr.buf = b
	return b, nil
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// beginFrame reserves room for a frame header at the end of b and returns
// the extended slice and the header's offset, for endFrame.
func beginFrame(b []byte, k Kind) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, byte(k))
	return b, start
}

// endFrame writes the length of the frame that begins at start.
func endFrame(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerSize))
	return b
}

// NextFrame splits the frame at b's start from the frames that follow it,
// for a buffer that holds several (a mailbox's slot): it returns the frame's
// body and the rest of b, or an error if b does not start with a whole
// frame of at least one byte.
func NextFrame(b []byte) (body, rest []byte, err error) {
	if len(b) < headerSize {
		return nil, nil, fmt.Errorf("%w: truncated frame header", ErrMalformed)
	}
	n := binary.BigEndian.Uint32(b)
	switch {
	case n == 0:
		return nil, nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	case uint64(n) > uint64(len(b)-headerSize):
		return nil, nil, fmt.Errorf("%w: frame of %d bytes, %d left", ErrMalformed, n, len(b)-headerSize)
	}
	end := headerSize + int(n)
	return b[headerSize:end], b[end:], nil
}

// FramesWithin returns the length of the longest run of whole frames at
// the start of b that takes at most max bytes. b holds frames this process
// appended, so their headers are trusted.
func FramesWithin(b []byte, max int) int {
	n := 0
	for n+headerSize <= len(b) {
		end := n + headerSize + int(binary.BigEndian.Uint32(b[n:]))
		if end > max || end > len(b) {
			break
		}
		n = end
	}
	return n
}
