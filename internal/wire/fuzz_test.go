package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to every decoder. None may panic; every
// failure must be ErrMalformed; and whatever decodes must survive a round
// trip through AppendFrame and FrameReader unchanged, re-encoding to the
// same bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		frame := m.AppendFrame(nil)
		f.Add(frame[headerSize:])
		f.Add(frame) // for the FrameReader
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{byte(KindResponse), 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{byte(KindRequest), 0x80, 0x80, 0x80})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range zeroMessages() {
			err := m.Decode(data)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("%T.Decode: %v, want ErrMalformed", m, err)
				}
				continue
			}
			if k := KindOf(data); k != kindOfType(m) {
				t.Errorf("%T decoded a body of kind %d", m, k)
			}
			frame := m.AppendFrame(nil)
			body, err := NewFrameReader(bytes.NewReader(frame), len(frame)).Next()
			if err != nil {
				t.Fatalf("%T: reading re-encoded frame: %v", m, err)
			}
			again := newLike(m)
			if err := again.Decode(body); err != nil {
				t.Fatalf("%T: decoding re-encoded %+v: %v", m, m, err)
			}
			if !reflect.DeepEqual(again, m) {
				t.Fatalf("%T: round trip changed %+v to %+v", m, m, again)
			}
			// Decoding accepts non-minimal varints, so the input need not
			// match, but encoding is canonical from here on.
			if frame2 := again.AppendFrame(nil); !bytes.Equal(frame2, frame) {
				t.Fatalf("%T: re-encoding %+v: %q, then %q", m, m, frame, frame2)
			}
		}

		const max = 64
		fr := NewFrameReader(bytes.NewReader(data), max)
		for {
			body, err := fr.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF &&
					!errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Errorf("Next: unexpected error %v", err)
				}
				break
			}
			if len(body) == 0 || len(body) > max {
				t.Fatalf("Next returned a %d-byte body, cap %d", len(body), max)
			}
			for _, m := range zeroMessages() {
				m.Decode(body) // must not panic
			}
		}
	})
}
