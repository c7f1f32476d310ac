package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/sharedstate/sharedstate/internal/journal"
	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/table"
)

// ErrDamaged is sharedstate.ErrDamaged: a state file is missing, damaged,
// or does not belong with the others.
var ErrDamaged = errors.New("sharedstate: damaged state file")

// Options say how a recovered store keeps itself.
type Options struct {
	Clock     func() time.Time // the wall clock
	Sync      bool             // DurabilityDisk: answers wait for the journal's fsync
	LocksOnly bool             // DurabilityMemory: journal the locks alone
	Logger    *slog.Logger
}

// persistence is how a store keeps itself: its journal and snapshot, the
// files name.journal and name.snapshot of its directory.
type persistence struct {
	dir       *statedir.Dir
	name      string
	sync      bool // DurabilityDisk
	locksOnly bool // DurabilityMemory: journal the locks alone
	compactAt int  // journal size at which to write a snapshot
	// snapshotID is the snapshot's file, if there is one, to notice its
	// deletion or replacement.
	snapshotID statedir.FileID
	logger     *slog.Logger
	onBroken   func(error) // the journal failed: give up ownership
}

func (p *persistence) journalName() string  { return p.name + ".journal" }
func (p *persistence) snapshotName() string { return p.name + ".snapshot" }

// JournalName, SnapshotName and TableName are the names of the store's
// files in its directory.
func (s *Store) JournalName() string  { return s.persist.journalName() }
func (s *Store) SnapshotName() string { return s.persist.snapshotName() }
func (s *Store) TableName() string    { return TableName(s.persist.name) }

// minCompact is the journal size below which no snapshot is written. A
// journal is compacted once it outgrows the snapshot (the live state), so
// the two files hold at most about twice the live state, and a rebuild
// replays at most about twice the records the state has. A compaction
// costs the owner some hundreds of µs of CPU, taken from its calls on a
// machine with few CPUs: at 512 KiB, one proxy's Adds made one every
// 10 ms, and one call in 200 waited ten times its usual time; from 4 MiB
// up, no tail of theirs was left to tell. At 4 MiB a rebuild replays the
// records in about 30 ms, and the journal's file, memory on a tmpfs, stays
// within 8 MiB.
const minCompact = 4 << 20

// Recover opens the state called name from its files in dir, and returns
// it with the number of journal records replayed. The store journals to
// the same files from then on.
//
// The last owner's table is adopted as it is when it can be (adopt): the
// journal is replayed only from where the table's contents end. Otherwise
// (another boot, a table missing or damaged, a memory-only state) the
// table is rebuilt from the snapshot and the whole journal.
//
// Nothing is dropped silently: a missing, damaged or mismatched file is an
// error (ErrDamaged) that names it, and Repair is the way past it. Only a
// torn tail, writes that were never acknowledged, is dropped.
func Recover(dir *statedir.Dir, name string, opts Options, onBroken func(error)) (*Store, int, error) {
	if !opts.LocksOnly {
		s, replayed, err := adopt(dir, name, opts, onBroken)
		if err == nil {
			return s, replayed, nil
		}
		// No table, one of another boot, or of a journal since replaced
		// are what a restart meets; a damaged one is worth a word.
		level := slog.LevelDebug
		if errors.Is(err, table.ErrCorrupt) || errors.Is(err, ErrDamaged) {
			level = slog.LevelWarn
		}
		opts.Logger.Log(context.Background(), level, "sharedstate: cannot adopt the table; rebuilding it from the files",
			"table", dir.Join(TableName(name)), "why", err)
	}
	// The last owner's table goes first, so that a full disk has room for
	// the new one, and its readers learn that it is not the owner's any more.
	retireTable(dir, TableName(name))
	if err := dir.Remove(TableName(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	file, tab, err := table.Create(dir, TableName(name))
	if err != nil {
		return nil, 0, err
	}
	s := newStore(file, tab)
	s.setPersistence(dir, name, opts, onBroken)
	replayed, err := s.recover()
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	return s, replayed, nil
}

// adopt opens the state with the last owner's table as it is, when it can:
// a table of this boot, repaired by its intent (see table.OpenOwner), whose
// position is in the journal, which continues the snapshot. It reads what
// the table keeps besides the data (loadKept) and replays the journal's
// records after the table's position: a takeover in time independent of the
// state's size, but for the entries with deadlines, which it reads into
// the expiry heap. An error says why not; nothing has been changed then
// but a torn tail dropped and an intent applied again.
func adopt(dir *statedir.Dir, name string, opts Options, onBroken func(error)) (*Store, int, error) {
	file, tab, err := table.OpenOwner(dir, TableName(name))
	if err != nil {
		return nil, 0, err
	}
	s := newStore(file, tab)
	s.namesKnown = false
	s.setPersistence(dir, name, opts, onBroken)
	replayed, err := s.adopt()
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	s.adopted = true
	return s, replayed, nil
}

func (s *Store) adopt() (int, error) {
	p := &s.persist
	snap, snapID, snapSize, err := journal.SnapshotHeader(p.dir, p.snapshotName())
	haveSnap := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	// The table first, which is only read: a live owner's journal is not
	// to be touched (OpenAt drops a torn tail).
	if err := s.loadKept(); err != nil {
		return 0, err
	}
	if err := s.lastOwnerGone(); err != nil {
		return 0, err
	}
	at := s.tab.Position()
	j, torn, err := journal.OpenAt(p.dir, p.journalName(), p.sync, at.Journal, int(at.Offset))
	if err != nil {
		return 0, err
	}
	if from, err := p.follows(snap, haveSnap, j.Header(), j.Size()); err != nil || from > int(at.Offset) {
		j.Close()
		return 0, fmt.Errorf("the journal does not continue the snapshot, or the table precedes the snapshot: %v", err)
	}
	s.settled, s.settledKept = at, at
	replayed, err := s.replay(j.Records(int(at.Offset)), at.Journal)
	if err != nil {
		j.Close()
		return 0, fmt.Errorf("%w: journal %s: %w", ErrDamaged, j.Path(), err)
	}
	p.snapshotID = snapID
	s.unchecked = uncheckedRecords{journal: at.Journal, from: journal.HeaderSize, to: int(at.Offset)}
	s.snapshotUnchecked = haveSnap
	s.startJournal(j, torn, snapSize)
	// The journal was not compacted when the last owner died: let it grow
	// past the live state again before it is, rather than stall the first
	// write of the new owner.
	p.compactAt = j.Size() + max(minCompact, snapSize)
	return replayed, nil
}

// lastOwnerGone returns an error if the owner that last wrote the table
// may still write it: it did not retire the table (Close does), and its
// process runs. Where no beacon tells a live owner whose lock file was
// deleted from no owner at all, such an owner writes on until its guard
// notices, and two writers must not share a table: the new owner then
// writes a table of its own. A process killed is a zombie, or gone, within
// moments of its lock's release.
func (s *Store) lastOwnerGone() error {
	p, ok := s.procs[s.owner]
	if s.tab.Retired() || !ok || p.pid == os.Getpid() {
		return nil
	}
	for range 500 {
		if p.Exited() {
			return nil
		}
		time.Sleep(100 * time.Microsecond)
	}
	return fmt.Errorf("the last owner, pid %d, still runs", p.pid)
}

// Adopted reports whether Recover adopted the last owner's table, rather
// than rebuilding it.
func (s *Store) Adopted() bool { return s.adopted }

// setPersistence says where and how the store keeps itself.
func (s *Store) setPersistence(dir *statedir.Dir, name string, opts Options, onBroken func(error)) {
	s.wall = opts.Clock
	s.persist = persistence{
		dir:       dir,
		name:      name,
		sync:      opts.Sync,
		locksOnly: opts.LocksOnly,
		compactAt: minCompact,
		logger:    opts.Logger,
		onBroken:  onBroken,
	}
}

// startJournal makes the store journal to j from now on, and publishes
// that the table holds all of it. A torn tail, dropped, is reported.
func (s *Store) startJournal(j *journal.Journal, torn bool, snapSize int) {
	s.log = j
	// The snapshot measures the live state; a journal already past it is
	// compacted at the next write.
	s.persist.compactAt = max(minCompact, snapSize)
	if torn {
		s.persist.logger.Warn("sharedstate: the journal ended in writes that were cut short and never acknowledged; dropped them",
			"journal", j.Path(), "records end", j.Size())
	}
	s.finish()
	if s.persist.sync {
		j.StartSyncer(s.persist.onBroken)
		s.syncer = j
	}
}

// recover rebuilds the empty store from the snapshot and the journal.
func (s *Store) recover() (int, error) {
	p := &s.persist
	snap, haveSnap, snapSize, err := s.loadSnapshot()
	if err != nil {
		return 0, damaged(err, p.name)
	}
	j, torn, err := journal.Open(p.dir, p.journalName(), p.sync)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !haveSnap: // a new state
		j, err = journal.Create(p.dir, p.journalName(), 0, 0, p.sync)
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("%w: journal %s is missing, and snapshot %s (generation %d) needs one",
			ErrDamaged, p.dir.Join(p.journalName()), p.dir.Join(p.snapshotName()), snap.Gen)
	}
	if err != nil {
		return 0, damaged(err, p.name)
	}
	replayed := 0
	from, err := p.follows(snap, haveSnap, j.Header(), j.Size())
	if err == nil {
		replayed, err = s.replayFrom(j.Path(), j.Header().Salt, from, j.RecordsFrom)
	}
	if err != nil {
		j.Close()
		return 0, damaged(err, p.name)
	}
	s.startJournal(j, torn, snapSize)
	if s.broken != nil {
		return 0, s.broken
	}
	return replayed, nil
}

// follows returns where the records of a journal with header j, whose
// records end at end, are to be replayed from on the snapshot with header
// snap (the zero header if there is none): all of them for the journal on
// the snapshot, and for the journal the snapshot replaces, those from the
// snapshot's End on, appended while it was written (a compaction writes
// the snapshot, then replaces the journal, and may have been cut short
// between the two). Any other pair means a file was replaced or lost.
func (p *persistence) follows(snap journal.Header, haveSnap bool, j journal.Header, end int) (from int, err error) {
	switch {
	case j.Gen == snap.Gen && j.Link == snap.Salt:
		return journal.HeaderSize, nil
	case haveSnap && j.Gen+1 == snap.Gen && j.Salt == snap.Link && snap.End <= uint64(end):
		return int(snap.End), nil
	case !haveSnap:
		return 0, fmt.Errorf("%w: journal %s continues a snapshot of generation %d, and there is no snapshot %s",
			ErrDamaged, p.dir.Join(p.journalName()), j.Gen, p.dir.Join(p.snapshotName()))
	}
	return 0, fmt.Errorf("%w: journal %s (generation %d) does not continue snapshot %s (generation %d): one of them was replaced",
		ErrDamaged, p.dir.Join(p.journalName()), j.Gen, p.dir.Join(p.snapshotName()), snap.Gen)
}

// damaged explains an error reading a state's files, and what to do.
func damaged(err error, name string) error {
	if errors.Is(err, journal.ErrDamaged) && !errors.Is(err, ErrDamaged) {
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if errors.Is(err, ErrDamaged) {
		return fmt.Errorf("%w; nothing was changed: to keep what can be read and set the rest aside, run sharedstate.Repair (the inspector's \"repair %s\")", err, name)
	}
	return err
}

// beginTerm records that owner, of Process p, now owns the state, and deals
// with the locks of the previous term.
func (s *Store) BeginTerm(owner uint64, p Process, grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startClock()
	now := s.tick(s.elapsed())
	prev := s.owner
	s.owner = owner
	s.terms++
	s.grace = grace
	s.journal(ownerRecord(s.scratch[:0], now, owner))
	s.startGrace(prev, owner)
	s.forget(prev) // that Process is gone, and its answers with it
	s.identify(owner, p)
	s.finish()
	s.claimTable(owner)
}

// Syncs reports whether answers wait for the journal to reach the disk.
func (s *Store) Syncs() bool { return s.syncer != nil }

// WhenDurable runs fn once the records journaled so far are durable.
func (s *Store) WhenDurable(fn func()) {
	if s.syncer == nil {
		fn()
		return
	}
	s.syncer.WhenDurable(fn)
}

// Close ends the store: see Retire.
func (s *Store) Close() { s.Retire()() }

// Retire ends the store: it answers nothing more, and retires the table it
// owned, which the next owner may then adopt at once. It returns what
// unmaps and closes the store's files, which takes milliseconds for a large
// journal or table: an owner handing over calls it once it has let the
// next owner in.
func (s *Store) Retire() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	s.stopCompaction()
	log, tab := s.log, s.tabFile
	s.log, s.tabFile = nil, nil // nothing is written from now on
	if tab != nil {
		if log != nil {
			// A clean end: the next owner adopts the table without
			// asking whether this process still runs (adopt).
			s.tab.Retire()
		}
		s.broken = errClosed // the table is going: answer nothing more
	}
	return func() {
		s.compactions.Wait() // one stopped may still let go of its files
		if log != nil {
			log.Close()
		}
		if tab != nil {
			tab.Close()
		}
	}
}

// errClosed is why a closed store answers nothing.
var errClosed = errors.New("the store is closed")

// Read loads the state called name from its files in dir without
// changing them, for an observer.
func Read(dir *statedir.Dir, name string) (*Store, error) {
	file, tab, err := table.NewMemory()
	if err != nil {
		return nil, err
	}
	s := newStore(file, tab)
	if err := s.read(dir, name); err != nil {
		s.Close()
		return nil, err
	}
	s.startClock()
	return s, nil
}

func (s *Store) read(dir *statedir.Dir, name string) error {
	s.persist = persistence{dir: dir, name: name}
	snap, haveSnap, _, err := s.loadSnapshot()
	if err != nil {
		return damaged(err, name)
	}
	c, err := journal.Read(dir, s.persist.journalName())
	switch {
	case errors.Is(err, fs.ErrNotExist) && !haveSnap:
		return nil // a state never written
	case err == nil && c.Damage != nil:
		err = c.Damage
	}
	if err != nil {
		return damaged(err, name)
	}
	from, err := s.persist.follows(snap, haveSnap, c.Header, c.End)
	if err == nil {
		_, err = s.replayFrom(dir.Join(s.persist.journalName()), c.Salt, from, c.RecordsFrom)
	}
	if err != nil {
		return damaged(err, name)
	}
	return nil
}

// GuardFiles writes the journal and snapshot anew, with a compaction, if
// either is no longer the file the store wrote (deleted, or replaced), or
// if the journal's records that adopt did not check are damaged: the table
// holds what they did. It reports whether it did. It checks a slice of
// those records each time (checkBudget), so as not to hold up operations.
func (s *Store) GuardFiles() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil || s.broken != nil {
		return false
	}
	p := &s.persist
	s.guardTable()
	s.log.Release()
	if s.compacting != nil {
		return false // it writes both files anew
	}
	id, err := p.dir.Stat(p.journalName())
	ours := err == nil && id == s.log.ID()
	if ours && p.snapshotID != (statedir.FileID{}) {
		id, err = p.dir.Stat(p.snapshotName())
		ours = err == nil && id == p.snapshotID
	}
	if ours {
		err := s.checkUnchecked()
		if err == nil {
			return false
		}
		p.logger.Error("sharedstate: the journal is damaged where the table holds what it recorded; writing a snapshot from the table", "err", err)
	}
	s.compact()
	return true
}

// CheckSnapshot reads the snapshot whole and checks it, once after adopt,
// which read only its header, without the store's lock: damage there is
// logged, and the snapshot written anew from the table. It reports whether
// it was.
func (s *Store) CheckSnapshot() bool {
	s.mu.Lock()
	id, pending := s.persist.snapshotID, s.snapshotUnchecked
	s.snapshotUnchecked = false
	s.mu.Unlock()
	if !pending {
		return false
	}
	p := &s.persist
	_, _, _, err := journal.ReadSnapshot(p.dir, p.snapshotName())
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return false // whole, or gone (GuardFiles writes it again)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil || s.broken != nil || p.snapshotID != id {
		return false // closed, or replaced since
	}
	p.logger.Error("sharedstate: the snapshot is damaged, and the table holds what it did; writing a snapshot from the table", "err", err)
	s.compact()
	return true
}

// uncheckedRecords are the records of the journal of salt journal, from
// from to to, that the table adopted holds and that adopt trusted.
type uncheckedRecords struct {
	journal  uint64
	from, to int
}

// checkBudget is the bytes of records checked at each guard: well under a
// millisecond.
const checkBudget = 1 << 20

// checkUnchecked checks the next slice of the unchecked records.
func (s *Store) checkUnchecked() error {
	u := &s.unchecked
	if u.from >= u.to || s.log.Header().Salt != u.journal {
		*u = uncheckedRecords{} // none, or the journal was replaced
		return nil
	}
	next, err := s.log.Check(u.from, min(checkBudget, u.to-u.from))
	if err != nil {
		*u = uncheckedRecords{}
		return err
	}
	u.from = next
	return nil
}

// stop makes the store refuse every request from now on, for an owner that
// must not write again.
func (s *Store) Stop(why error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken == nil {
		s.broken = why
	}
}
