package journal

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"os"

	"github.com/sharedstate/sharedstate/internal/statedir"
)

// SnapshotWriter writes the records of a snapshot, keeping the first error.
type SnapshotWriter struct {
	w    *bufio.Writer
	seed uint32
	off  int
	buf  []byte
	err  error
}

// Record appends a record.
func (w *SnapshotWriter) Record(payload []byte) {
	if w.err != nil {
		return
	}
	w.buf = appendRecord(w.buf[:0], w.seed, uint64(w.off), payload)
	_, w.err = w.w.Write(w.buf)
	w.off += len(w.buf)
}

// WriteSnapshot writes a snapshot as name, in place of the previous one at
// once (see statedir.Dir.Replace), with the records that fill writes; an
// error from fill leaves the previous one in place. h
// gives its generation and salt, and which journal it replaces (Link and
// End). It returns the snapshot's size and the identity of its file.
func WriteSnapshot(dir *statedir.Dir, name string, h Header, sync bool, fill func(*SnapshotWriter) error) (int, statedir.FileID, error) {
	size := 0
	f, err := dir.Replace(name, sync, func(f *os.File) error {
		w := &SnapshotWriter{w: bufio.NewWriterSize(f, 256<<10), seed: seedOf(h.Salt), off: HeaderSize}
		_, w.err = w.w.Write(appendHeader(nil, snapshotMagic, h))
		if err := fill(w); err != nil {
			return err
		}
		if w.err == nil {
			w.err = w.w.Flush()
		}
		size = w.off
		return w.err
	})
	if err != nil {
		return 0, statedir.FileID{}, err
	}
	defer f.Close()
	id, err := statedir.IDOf(f)
	return size, id, err
}

// SnapshotHeader reads the header of the snapshot name alone, and returns
// it with the snapshot's identity and size: for an owner that has the
// state without reading the snapshot, to know which journal continues it.
// A missing snapshot is an error matching fs.ErrNotExist.
func SnapshotHeader(dir *statedir.Dir, name string) (Header, statedir.FileID, int, error) {
	f, err := dir.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return Header{}, statedir.FileID{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	var id statedir.FileID
	if err == nil {
		id, err = statedir.IDOf(f)
	}
	if err != nil {
		return Header{}, statedir.FileID{}, 0, err
	}
	b := make([]byte, HeaderSize)
	n, _ := io.ReadFull(f, b)
	h, err := readHeader(b[:n], snapshotMagic, f.Name())
	return h, id, int(fi.Size()), err
}

// ReadSnapshot reads the snapshot name and checks every record of it: a
// snapshot is written whole before it is put in place, so any record that
// fails its check is damage. A missing snapshot is an error matching
// fs.ErrNotExist.
func ReadSnapshot(dir *statedir.Dir, name string) (Header, iter.Seq2[[]byte, int], int, error) {
	data, err := dir.ReadFile(name)
	if err != nil {
		return Header{}, nil, 0, err
	}
	file := dir.Join(name)
	h, err := readHeader(data, snapshotMagic, file)
	if err != nil {
		return Header{}, nil, 0, err
	}
	off, seed := HeaderSize, seedOf(h.Salt)
	for off < len(data) {
		_, _, next, ok := record(data, off, seed)
		if !ok {
			return Header{}, nil, 0, &DamageError{File: file, Offset: off, Reason: fmt.Sprintf("not a record, %d bytes before the end", len(data)-off)}
		}
		off = next
	}
	if off != len(data) {
		return Header{}, nil, 0, &DamageError{File: file, Offset: len(data), Reason: "the last record is cut short"}
	}
	return h, Records(data, HeaderSize, len(data)), len(data), nil
}
