package journal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/sharedstate/sharedstate/internal/filemap"
	"github.com/sharedstate/sharedstate/internal/statedir"
)

// Journal is an owner's log of every change, replayed by the next owner on
// top of the latest snapshot.
//
// It is a file mapped into memory. Appending a record is a copy into the
// mapping, which is the kernel's page cache: once copied, the record
// survives the death of the process, with no system call. Space is
// reserved before any write (see filemap.Allocate), so a full disk is an error
// returned to the caller, never a SIGBUS. With sync
// (DurabilityDisk), a syncer goroutine flushes the file with one fdatasync
// per batch of records (group commit), and answers wait for it.
type Journal struct {
	dir  *statedir.Dir
	name string
	f    *os.File
	data []byte // the mapping; as long as the file
	off  int    // where the next record goes
	// released is where the pages that Release has let go of end.
	released int
	// faulted is where the pages made ready for writing end (prefault).
	faulted int
	hdr     Header
	seed    uint32 // of hdr.Salt
	id      statedir.FileID

	// Group commit, with sync only.
	syncMu  sync.Mutex
	written int             // end of the records appended so far
	synced  int             // end of the records known on disk
	waiters []durableWaiter // answers held until their records are synced
	wake    chan struct{}   // capacity 1: records wait for a sync
	stop    chan struct{}   // closed to end the syncer
	done    chan struct{}   // closed when the syncer has ended
	failed  func(error)     // reports a failed sync
	sync    bool
}

// durableWaiter is an answer to run once the journal is synced up to off.
type durableWaiter struct {
	off int
	fn  func()
}

const (
	minJournal = 1 << 20 // first size of the file; it doubles as it fills
	// slack is kept free beyond what a request needs, for the records an
	// operation adds on its own (a lock granted to the next waiter).
	slack = 64 << 10
	// prefaultAhead is how far past a record Append makes pages ready for
	// writing, at once: a page's first write faults and waits for the file
	// system (2-10 µs, on ext4 or tmpfs), which page by page would be inside
	// one answer in 64 (an Add's record is 64 bytes). Eight pages at a time
	// (about 20 µs) it is inside one in 512, and still well within what a
	// proxy waits for an answer before it turns to the socket (proxyWait).
	prefaultAhead = 32 << 10
)

// ErrFull is returned for a record the journal has no room for: the disk
// (or tmpfs) holding the state's directory is full.
var ErrFull = errors.New("journal full")

// Create starts a journal of generation gen as name, continuing the
// snapshot whose salt is link (0 for generation 0), in place of any file
// of that name.
func Create(dir *statedir.Dir, name string, gen, link uint64, sync bool) (*Journal, error) {
	j := &Journal{dir: dir, name: name, sync: sync}
	next, err := j.Prepare(gen, link)
	if err != nil {
		return nil, err
	}
	release, err := j.Switch(next)
	if err != nil {
		return nil, err
	}
	release()
	return j, nil
}

// Next is a journal made ready to replace another: its header written and
// its space reserved, but not yet in place. Records copied into it
// (CopyTo) come with it.
type Next struct{ j Journal }

// Prepare makes ready the journal that will replace j, of generation gen,
// continuing the snapshot whose salt is link. A full disk fails here,
// before anything has changed.
func (j *Journal) Prepare(gen, link uint64) (*Next, error) {
	h := Header{Gen: gen, Salt: NewSalt(), Link: link}
	f, err := j.dir.CreateTemp(j.name)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(appendHeader(nil, journalMagic, h))
	if err == nil {
		err = reserve(f, minJournal)
	}
	var data []byte
	if err == nil {
		data, err = mapFile(f, minJournal)
	}
	var id statedir.FileID
	if err == nil {
		id, err = statedir.IDOf(f)
	}
	if err != nil {
		j.dir.Discard(f, j.name)
		return nil, err
	}
	return &Next{Journal{dir: j.dir, name: j.name, f: f, data: data, off: HeaderSize, hdr: h, seed: seedOf(h.Salt), id: id}}, nil
}

// Reserve makes n's file room for size bytes of header and records:
// called before copying records into it, outside the caller's locks, so
// that the copies do not wait for the file to grow.
func (n *Next) Reserve(size int) error {
	if size <= len(n.j.data) {
		return nil
	}
	return n.j.grow(size)
}

// Prefault faults in the pages of n's next size bytes (as many as
// reserved), so that copying records there waits for no page fault: called
// outside the caller's locks before the copy it makes under them. The
// pages stay mapped: only what one copy needs.
func (n *Next) Prefault(size int) { n.j.prefault(n.j.off + size) }

// Release lets go of the pages of the records copied into n so far, as
// Journal.Release does.
func (n *Next) Release() { n.j.Release() }

// Discard gives up a journal from Prepare.
func (j *Journal) Discard(n *Next) {
	filemap.Unmap(n.j.data)
	j.dir.Discard(n.j.f, j.name)
}

// CopyTo appends to n the records of j from off, a record's start, for
// about budget bytes, and returns where the records it has not copied
// begin: the records appended while the snapshot that n continues was
// written, which it does not hold. Each is sealed anew for n (see
// recordSum).
func (j *Journal) CopyTo(n *Next, off, budget int) (int, error) {
	return CopyRecords(n, j.data, off, min(j.off, off+budget))
}

// CopyRecords is CopyTo of the records of data, a journal's, from off to
// end (see MapRecords).
func CopyRecords(n *Next, data []byte, off, end int) (int, error) {
	for payload, next := range Records(data, off, end) {
		if err := n.j.Append(payload); err != nil {
			return off, err
		}
		off = next
	}
	return off, nil
}

// MapRecords maps j's file up to end, where its records end as the caller
// read j.Size under the writer's lock: for CopyRecords to read them
// without that lock, unaffected by the appends that follow and by the
// growth of j's own mapping. Unmap it with filemap.Unmap.
func (j *Journal) MapRecords(end int) ([]byte, error) {
	return filemap.Map(j.f, end, false)
}

// Switch puts n, from Prepare, in place of j's file, and appends to it from
// then on. It is called once the snapshot n continues holds everything j
// had, but the records copied into n. The caller lets go of the old file
// by calling release, outside its locks: the kernel frees the old file's
// pages then, which takes milliseconds for a large one.
func (j *Journal) Switch(n *Next) (release func(), err error) {
	if err := j.dir.Commit(n.j.f, j.name, j.sync); err != nil {
		j.Discard(n)
		return nil, err
	}
	// Swap files under syncMu: the syncer reads the descriptor there.
	j.syncMu.Lock()
	old, oldData := j.f, j.data
	j.f, j.data, j.hdr, j.id, j.seed = n.j.f, n.j.data, n.j.hdr, n.j.id, n.j.seed
	j.off, j.released, j.faulted = n.j.off, n.j.released, n.j.faulted
	j.written, j.synced = j.off, j.off
	// What they waited for is in the snapshot, or in n, synced before this.
	ready := j.waiters
	j.waiters = nil
	j.syncMu.Unlock()
	for _, w := range ready {
		w.fn()
	}
	return func() {
		if old != nil {
			filemap.Unmap(oldData)
			old.Close()
		}
	}, nil
}

// NewSalt returns a salt for a new file.
func NewSalt() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:]) | 1
}

// Open opens the journal name to append to it. Its records are checked
// (see scan): a torn tail, writes never acknowledged, is dropped (zeroed,
// so that appends begin after the last record as on a clean tail), and
// reported; damage is an error.
func Open(dir *statedir.Dir, name string, sync bool) (j *Journal, torn bool, err error) {
	return open(dir, name, sync, 0, HeaderSize, math.MaxInt)
}

// ErrElsewhere means that a journal is not the file a position is in: it
// was replaced (compacted) since.
var ErrElsewhere = errors.New("journal: not the file of the position")

// OpenAt is Open for a caller that has the effects of the records before
// off in the journal of salt already, and so trusts them: only the records
// from off are checked. A journal of another salt, or with no record
// boundary at off, is ErrElsewhere.
//
// The caller knows that the journal's last writer died in this boot, so
// that every byte it wrote is in the page cache: what follows the records
// is at most the one record it was appending. Only tornWindow bytes after
// the records are checked and dropped, not the file's reserved space to
// its end: a longer torn record leaves bytes that a later Open drops.
func OpenAt(dir *statedir.Dir, name string, sync bool, salt uint64, off int) (j *Journal, torn bool, err error) {
	if salt == 0 {
		return nil, false, ErrElsewhere
	}
	return open(dir, name, sync, salt, off, tornWindow)
}

// tornWindow is what OpenAt checks after the records.
const tornWindow = 1 << 20

// open opens a journal and checks its records from off, and window bytes
// after them; a salt other than 0 must be the journal's.
func open(dir *statedir.Dir, name string, sync bool, salt uint64, off, window int) (j *Journal, torn bool, err error) {
	f, err := dir.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if fi.Size() < HeaderSize {
		f.Close()
		return nil, false, &DamageError{File: f.Name(), Reason: fmt.Sprintf("%d bytes, shorter than a header", fi.Size())}
	}
	data, err := mapFile(f, int(fi.Size()))
	if err != nil {
		f.Close()
		return nil, false, err
	}
	j = &Journal{dir: dir, name: name, f: f, data: data, sync: sync}
	if j.id, err = statedir.IDOf(f); err != nil {
		j.Close()
		return nil, false, err
	}
	c := inspect(data, f.Name(), salt, off, window)
	if c.err != nil {
		j.Close()
		return nil, false, c.err
	}
	j.hdr, j.off, j.seed = c.Header, c.End, seedOf(c.Salt)
	j.written, j.synced = j.off, j.off
	if c.Torn {
		j.dropTail(window)
	}
	return j, c.Torn, nil
}

// dropTail zeroes what follows the records, up to window bytes: a torn
// tail, never acknowledged. A process that dies while zeroing leaves a
// shorter torn tail, dropped the same way by the next.
func (j *Journal) dropTail(window int) {
	tail := j.data[j.off : j.off+min(len(j.data)-j.off, window)]
	last := len(tail)
	for last > 0 && tail[last-1] == 0 {
		last--
	}
	clear(tail[:last])
}

// Check checks the records from off, a record's start, for about budget
// bytes, and returns where the records it has not checked begin: for an
// owner that opened the journal with OpenAt, which trusted the records
// before its offset, to check them while it serves. A record that fails
// its check before the end is damage. The pages read are let go of again
// (see Release).
func (j *Journal) Check(off, budget int) (next int, err error) {
	start, stop := off, min(j.off, off+budget)
	defer func() { filemap.Release(j.data[start:off]) }()
	for off < stop {
		_, _, n, ok := record(j.data[:j.off], off, j.seed)
		if !ok {
			return off, &DamageError{File: j.Path(), Offset: off, Reason: "not a record, with acknowledged records after it"}
		}
		off = n
	}
	return off, nil
}

// Contents is what a journal file holds, as Read finds it.
type Contents struct {
	Header
	Data []byte
	End  int  // the records are Data[HeaderSize:End]
	Torn bool // what follows them is a torn tail, not zeros
	// Damage, if not nil, says where records that were acknowledged are
	// damaged: Data[HeaderSize:End] are the records before it.
	Damage *DamageError
	err    error
}

// RecordsFrom returns the checked records from off, which must be where one
// begins (see recordsFrom).
func (c *Contents) RecordsFrom(off int) (iter.Seq2[[]byte, int], error) {
	return recordsFrom(c.Data, off, c.End)
}

// Read reads the journal name without changing it. A damaged header is an
// error; damaged records are reported in the Contents' Damage.
func Read(dir *statedir.Dir, name string) (*Contents, error) {
	data, err := dir.ReadFile(name)
	if err != nil {
		return nil, err
	}
	c := inspect(data, dir.Join(name), 0, HeaderSize, math.MaxInt)
	var d *DamageError
	if errors.As(c.err, &d) && d.Offset >= HeaderSize {
		c.Damage, c.err = d, nil
	}
	return c, c.err
}

// inspect reads a journal's header and checks its records from off, and
// window bytes after them; a salt other than 0 must be the journal's (else
// ErrElsewhere).
func inspect(data []byte, file string, salt uint64, off, window int) *Contents {
	c := &Contents{Data: data}
	if c.Header, c.err = readHeader(data, journalMagic, file); c.err != nil {
		return c
	}
	if salt != 0 && (salt != c.Salt || off < HeaderSize || off > len(data) || off%8 != 0) {
		c.err = ErrElsewhere
		return c
	}
	var t tail
	c.End, t, c.err = scan(data, off, c.Salt, file, window)
	c.Torn = t == tailTorn
	return c
}

// Header returns the journal's header.
func (j *Journal) Header() Header { return j.hdr }

// Records returns the journal's records from off, a record's start, with
// the offsets where the next ones begin; valid until the next append.
func (j *Journal) Records(off int) iter.Seq2[[]byte, int] { return Records(j.data, off, j.off) }

// RecordsFrom is Records for an offset not known to be a record's start:
// one that is not is an error.
func (j *Journal) RecordsFrom(off int) (iter.Seq2[[]byte, int], error) {
	return recordsFrom(j.data, off, j.off)
}

// Size is the journal's length in bytes: its header and records.
func (j *Journal) Size() int { return j.off }

// Path returns the journal's path.
func (j *Journal) Path() string { return j.dir.Join(j.name) }

// ID returns the identity of the journal's file, to tell whether its name
// still is this file.
func (j *Journal) ID() statedir.FileID { return j.id }

// mapFile maps the first size bytes of f.
func mapFile(f *os.File, size int) ([]byte, error) {
	data, err := filemap.Map(f, size, true)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
	}
	return data, nil
}

// reserve sizes f to size bytes and reserves its blocks (see filemap.Allocate),
// so that writes to the mapping never meet a full disk: a full disk is
// ErrFull here instead of a SIGBUS later.
func reserve(f *os.File, size int) error {
	err := filemap.Allocate(f, size)
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: growing %s to %d bytes: %v", ErrFull, f.Name(), size, err)
	}
	if err != nil {
		return fmt.Errorf("growing %s: %w", f.Name(), err)
	}
	return nil
}

// grow makes the file and its mapping size bytes long.
func (j *Journal) grow(size int) error {
	if err := reserve(j.f, size); err != nil {
		return err
	}
	data, err := mapFile(j.f, size)
	if err != nil {
		return err
	}
	filemap.Unmap(j.data)
	j.data, j.faulted = data, 0 // a new mapping: no page is ready
	return nil
}

// prefault makes the pages from the record at j.off, or from those made
// ready before, up to end ready for writing (see filemap.Prefault).
func (j *Journal) prefault(end int) {
	start := max(j.faulted, j.off) &^ (os.Getpagesize() - 1)
	end = min(end, len(j.data))
	if start < end {
		filemap.Prefault(j.data[start:end])
		j.faulted = end
	}
}

// Reserve makes room for a record of n payload bytes plus the slack,
// growing the file if needed. It fails with ErrFull when the disk is full.
func (j *Journal) Reserve(n int) error {
	need := j.off + recordHeader + align(n) + slack
	if need <= len(j.data) {
		return nil
	}
	size := len(j.data)
	for size < need {
		size *= 2
	}
	return j.grow(size)
}

// Append adds a record, normally into room that Reserve has made. The
// record's word goes last, in one store, so that a copy cut short by the
// process's death reads as the end of the records.
func (j *Journal) Append(payload []byte) error {
	next := j.off + recordHeader + align(len(payload))
	if next > len(j.data) {
		// Beyond the reservation: an operation that added many records.
		if err := j.grow(2 * next); err != nil {
			return err
		}
	}
	committed := j.off // every record before this one is acknowledged...
	if j.sync {
		j.syncMu.Lock()
		committed = j.synced // ...or only those on disk
		j.syncMu.Unlock()
	}
	if next > j.faulted {
		j.prefault(next + prefaultAhead)
	}
	rec := j.data[j.off:next]
	binary.LittleEndian.PutUint64(rec[8:], uint64(committed))
	copy(rec[recordHeader:], payload) // the padding after it is zeros already
	var word [8]byte
	binary.LittleEndian.PutUint32(word[:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(word[4:], recordSum(j.seed, rec[8:recordHeader+len(payload)]))
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&rec[0])), binary.NativeEndian.Uint64(word[:]))
	j.off = next
	if j.sync {
		j.syncMu.Lock()
		j.written = j.off
		j.syncMu.Unlock()
	}
	return nil
}

// Release lets go of the pages of the records appended since the last
// Release (see filemap.Release): the journal is read again only by the
// next owner, and its pages need not count in the owner's memory.
func (j *Journal) Release() {
	filemap.Release(j.data[j.released:j.off])
	j.released = j.off &^ (os.Getpagesize() - 1)
}

// StartSyncer starts the group commit goroutine of a journal opened with
// sync; failed is told if a sync fails.
func (j *Journal) StartSyncer(failed func(error)) {
	j.wake = make(chan struct{}, 1)
	j.stop = make(chan struct{})
	j.done = make(chan struct{})
	j.failed = failed
	go j.syncLoop()
}

// Syncs reports whether answers wait for the disk.
func (j *Journal) Syncs() bool { return j.sync }

// WhenDurable runs fn once the records appended so far are on disk: at
// once without sync. fn must not block.
func (j *Journal) WhenDurable(fn func()) {
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

func (j *Journal) syncLoop() {
	defer close(j.done)
	for {
		select {
		case <-j.wake:
		case <-j.stop:
			return
		}
		j.syncMu.Lock()
		target, f := j.written, j.f
		j.syncMu.Unlock()
		if err := filemap.DataSync(f); err != nil {
			// The records may not be on disk: answering would promise
			// what is not true.
			j.failed(fmt.Errorf("syncing %s: %w", j.Path(), err))
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

// splitWaiters returns the waiters whose records end by synced, and the
// rest. Waiters are in append order, so the ready ones come first.
func splitWaiters(ws []durableWaiter, synced int) (ready, rest []durableWaiter) {
	i := 0
	for i < len(ws) && ws[i].off <= synced {
		i++
	}
	return ws[:i], append([]durableWaiter(nil), ws[i:]...)
}

// Close stops the syncer and unmaps the file. Appended records stay in the
// page cache and the file.
func (j *Journal) Close() {
	if j.stop != nil {
		close(j.stop)
		<-j.done
		j.stop = nil
	}
	if j.data != nil {
		filemap.Unmap(j.data)
		j.data = nil
	}
	j.f.Close()
}
