package sharedstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The journal is the owner's log of every mutation, replayed by the next
// owner on top of the latest snapshot.
//
// It is a file mapped into memory. Appending a record is a copy into the
// mapping, which is the kernel's page cache: once copied, the record
// survives the death of the process, with no system call. Space is
// reserved with fallocate before any write, so a full disk is an error
// returned to the caller, never a SIGBUS. With DurabilityDisk, a syncer
// goroutine flushes the file with one fdatasync per batch of records (group
// commit), and answers wait for it.
//
// File layout: a 16-byte header (magic, then the generation: the snapshot
// the records apply to), then records of [length u32][CRC-32C u32][payload],
// then zeros. A length of 0 ends the records.
type journal struct {
	path string
	f    *os.File
	data []byte // the mapping; as long as the file
	off  int    // where the next record goes
	gen  uint64

	// Group commit, with DurabilityDisk only.
	syncMu  sync.Mutex
	written int             // end of the records appended so far
	synced  int             // end of the records known on disk
	waiters []durableWaiter // answers held until their records are synced
	wake    chan struct{}   // capacity 1: records wait for a sync
	stop    chan struct{}   // closed to end the syncer
	done    chan struct{}   // closed when the syncer has ended
	failed  func(error)     // reports a failed sync
	sync    bool            // fdatasync batches (DurabilityDisk)
}

// durableWaiter is an answer to run once the journal is synced up to off.
type durableWaiter struct {
	off int
	fn  func()
}

var (
	journalMagic  = [4]byte{'S', 'S', 'J', 1}
	snapshotMagic = [4]byte{'S', 'S', 'S', 1}
	crcTable      = crc32.MakeTable(crc32.Castagnoli)
)

const (
	headerLen      = 16
	recordOverhead = 8
	minJournal     = 1 << 20 // first size of the file; it doubles as it fills
	// journalSlack is kept free beyond what a request needs, for the records
	// an operation adds on its own (a lock granted to the next waiter).
	journalSlack = 64 << 10
)

// ErrJournalFull is returned for a write the journal has no room for: the
// disk (or tmpfs) holding the state's directory is full.
var ErrJournalFull = errors.New("sharedstate: journal full")

// openJournal opens or creates the journal at path, checking its records
// (see j.records): a torn last record (a write cut short by a crash) is
// dropped, while a damaged record followed by others is an error naming the
// file and offset, since dropping it would lose data silently.
func openJournal(path string, sync bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	j := &journal{path: path, f: f, sync: sync}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := int(fi.Size())
	if size < headerLen {
		// New, or created by an owner that died before writing the header.
		if err := j.mapFile(minJournal); err != nil {
			f.Close()
			return nil, err
		}
		copy(j.data, journalMagic[:])
		j.off = headerLen
		j.written, j.synced = j.off, j.off
		return j, nil
	}
	if err := j.mapFile(size); err != nil {
		f.Close()
		return nil, err
	}
	if !bytes.Equal(j.data[:4], journalMagic[:]) {
		j.close()
		return nil, fmt.Errorf("sharedstate: %s is not a journal of this version", path)
	}
	j.gen = binary.LittleEndian.Uint64(j.data[8:])
	end, err := scanRecords(j.data, headerLen)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("sharedstate: journal %s: %w", path, err)
	}
	// Clear whatever a torn write left, so that later records start clean.
	clear(j.data[end:lastNonZero(j.data, end)])
	j.off = end
	j.written, j.synced = j.off, j.off
	return j, nil
}

// records returns the journal's records, valid until the next append.
func (j *journal) records() iter.Seq[[]byte] { return records(j.data, headerLen, j.off) }

// records returns the records of data between off and end, which
// scanRecords has checked.
func records(data []byte, off, end int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for at := off; at < end; { // at, not off: the sequence may be ranged over again
			next := at + recordOverhead + int(binary.LittleEndian.Uint32(data[at:]))
			if !yield(data[at+recordOverhead : next]) {
				return
			}
			at = next
		}
	}
}

// scanRecords checks the records of data from off to the first length of 0,
// and returns the offset where they end. A damaged record is dropped if only
// zeros follow it (a torn tail); otherwise it is an error.
func scanRecords(data []byte, off int) (end int, err error) {
	for off+recordOverhead <= len(data) {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 {
			break
		}
		sum := binary.LittleEndian.Uint32(data[off+4:])
		next := off + recordOverhead + n
		if next > len(data) || n < 0 || crc32.Checksum(data[off+recordOverhead:next], crcTable) != sum {
			if lastNonZero(data, min(max(next, off+recordOverhead), len(data))) > min(max(next, off+recordOverhead), len(data)) {
				return 0, fmt.Errorf("corrupt record at offset %d, with records after it: refusing to drop them; move the file aside to start over from the snapshot", off)
			}
			return off, nil // torn tail
		}
		off = next
	}
	return off, nil
}

// lastNonZero returns the end of the last non-zero byte in data[from:], or
// from if there is none.
func lastNonZero(data []byte, from int) int {
	for i := len(data) - 1; i >= from; i-- {
		if data[i] != 0 {
			return i + 1
		}
	}
	return from
}

// mapFile sizes the file to size bytes, reserving its blocks, and maps it.
func (j *journal) mapFile(size int) error {
	err := unix.Fallocate(int(j.f.Fd()), 0, 0, int64(size))
	if errors.Is(err, unix.EOPNOTSUPP) {
		// A file system that cannot reserve blocks (some network ones):
		// size the file anyway. A full disk there is a SIGBUS, not an
		// error; such file systems are a poor place for the state.
		err = j.f.Truncate(int64(size))
	}
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("%w: growing %s to %d bytes: %v", ErrJournalFull, j.path, size, err)
	}
	if err != nil {
		return fmt.Errorf("sharedstate: growing %s: %w", j.path, err)
	}
	data, err := unix.Mmap(int(j.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("sharedstate: mapping %s: %w", j.path, err)
	}
	if j.data != nil {
		unix.Munmap(j.data)
	}
	j.data = data
	return nil
}

// reserve makes room for a record of n payload bytes plus the slack, growing
// the file if needed. It fails with ErrJournalFull when the disk is full.
func (j *journal) reserve(n int) error {
	need := j.off + recordOverhead + n + journalSlack
	if need <= len(j.data) {
		return nil
	}
	size := len(j.data)
	for size < need {
		size *= 2
	}
	return j.mapFile(size)
}

// append adds a record, normally into room that reserve has made. The length
// goes last, so that a copy cut short by the process's death reads as the end.
func (j *journal) append(payload []byte) error {
	if j.off+recordOverhead+len(payload) > len(j.data) {
		// Beyond the reservation: an operation that added many records.
		if err := j.mapFile(2 * (j.off + recordOverhead + len(payload))); err != nil {
			return err
		}
	}
	rec := j.data[j.off:]
	copy(rec[recordOverhead:], payload)
	binary.LittleEndian.PutUint32(rec[4:], crc32.Checksum(payload, crcTable))
	binary.LittleEndian.PutUint32(rec, uint32(len(payload)))
	j.off += recordOverhead + len(payload)
	if j.sync {
		j.syncMu.Lock()
		j.written = j.off
		j.syncMu.Unlock()
	}
	return nil
}

// size is the journal's length in bytes.
func (j *journal) size() int { return j.off }

// startSyncer starts the group commit goroutine of DurabilityDisk.
func (j *journal) startSyncer(failed func(error)) {
	j.wake = make(chan struct{}, 1)
	j.stop = make(chan struct{})
	j.done = make(chan struct{})
	j.failed = failed
	go j.syncLoop()
}

// whenDurable runs fn once the records appended so far are on disk: at once
// without DurabilityDisk. fn must not block.
func (j *journal) whenDurable(fn func()) {
	if !j.sync {
		fn()
		return
	}
	j.syncMu.Lock()
	if j.synced >= j.written {
		j.syncMu.Unlock()
		fn()
		return
	}
	j.waiters = append(j.waiters, durableWaiter{j.written, fn})
	j.syncMu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *journal) syncLoop() {
	defer close(j.done)
	for {
		select {
		case <-j.wake:
		case <-j.stop:
			return
		}
		j.syncMu.Lock()
		target, fd := j.written, int(j.f.Fd())
		j.syncMu.Unlock()
		if err := unix.Fdatasync(fd); err != nil {
			// The records may not be on disk: answering would promise
			// what is not true. Give up ownership; clients retry.
			j.failed(fmt.Errorf("sharedstate: syncing %s: %w", j.path, err))
			return
		}
		j.syncMu.Lock()
		j.synced = max(j.synced, target)
		var ready []durableWaiter
		ready, j.waiters = splitWaiters(j.waiters, j.synced)
		more := j.synced < j.written
		j.syncMu.Unlock()
		for _, w := range ready {
			w.fn()
		}
		if more {
			select {
			case j.wake <- struct{}{}:
			default:
			}
		}
	}
}

// splitWaiters returns the waiters whose records end by synced, and the rest.
// Waiters are in append order, so the ready ones come first.
func splitWaiters(ws []durableWaiter, synced int) (ready, rest []durableWaiter) {
	i := 0
	for i < len(ws) && ws[i].off <= synced {
		i++
	}
	return ws[:i], append([]durableWaiter(nil), ws[i:]...)
}

// restart replaces the journal with an empty one of generation gen, once a
// snapshot holds everything it had.
func (j *journal) restart(gen uint64) error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	var hdr [headerLen]byte
	copy(hdr[:], journalMagic[:])
	binary.LittleEndian.PutUint64(hdr[8:], gen)
	if _, err := f.Write(hdr[:]); err == nil && j.sync {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if j.sync {
		syncDir(filepath.Dir(j.path))
	}
	// Swap files under syncMu: the syncer reads the descriptor there.
	j.syncMu.Lock()
	old := j.f
	j.f = f
	j.syncMu.Unlock()
	unix.Munmap(j.data)
	j.data = nil
	old.Close()
	if err := j.mapFile(minJournal); err != nil {
		return err
	}
	j.gen = gen
	j.off = headerLen
	j.syncMu.Lock()
	j.written, j.synced = j.off, j.off
	j.syncMu.Unlock()
	return nil
}

// close stops the syncer and unmaps the file. Appended records stay in the
// page cache and the file.
func (j *journal) close() {
	if j.stop != nil {
		close(j.stop)
		<-j.done
		j.stop = nil
	}
	if j.data != nil {
		unix.Munmap(j.data)
		j.data = nil
	}
	j.f.Close()
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
