package store

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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

// JournalName and SnapshotName are the names of the store's files in its
// directory.
func (s *Store) JournalName() string  { return s.persist.journalName() }
func (s *Store) SnapshotName() string { return s.persist.snapshotName() }

// minCompact is the journal size below which no snapshot is written. A
// journal is compacted once it outgrows the snapshot (the live state), so
// the two files hold at most about twice the live state, and a takeover
// replays at most about twice the records the state has.
const minCompact = 512 << 10

// Recover rebuilds the state called name from its snapshot and
// journal in dir, and returns it with the number of journal records
// replayed. The store journals to the same files from then on.
//
// Nothing is dropped silently: a missing, damaged or mismatched file is an
// error (ErrDamaged) that names it, and Repair is the way past it. Only a
// torn tail, writes that were never acknowledged, is dropped; the journal
// is then replaced rather than written over.
func Recover(dir *statedir.Dir, name string, opts Options, onBroken func(error)) (*Store, int, error) {
	// The table is rebuilt from the snapshot and the journal: the last
	// owner's goes first, so that a full disk has room for the new one,
	// and its readers learn that it is not the owner's any more.
	retireTable(dir, TableName(name))
	if err := dir.Remove(TableName(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, err
	}
	file, tab, err := table.Create(dir, TableName(name))
	if err != nil {
		return nil, 0, err
	}
	s := newStore(file, tab)
	replayed, err := s.recover(dir, name, opts, onBroken)
	if err != nil {
		s.Close()
		return nil, 0, err
	}
	return s, replayed, nil
}

func (s *Store) recover(dir *statedir.Dir, name string, opts Options, onBroken func(error)) (int, error) {
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
	snap, haveSnap, snapSize, err := s.loadSnapshot()
	if err != nil {
		return 0, damaged(err, name)
	}
	j, torn, err := journal.Open(dir, s.persist.journalName(), s.persist.sync)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !haveSnap: // a new state
		j, err = journal.Create(dir, s.persist.journalName(), 0, 0, s.persist.sync)
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("%w: journal %s is missing, and snapshot %s (generation %d) needs one",
			ErrDamaged, dir.Join(s.persist.journalName()), dir.Join(s.persist.snapshotName()), snap.Gen)
	}
	if err != nil {
		return 0, damaged(err, name)
	}
	replayed := 0
	replay, err := s.persist.follows(snap, haveSnap, j.Header(), j.Size())
	switch {
	case err != nil:
	case replay:
		if replayed, err = s.replay(j.Records()); err != nil {
			err = fmt.Errorf("%w: journal %s: %w", ErrDamaged, j.Path(), err)
		}
	default: // replaced by the snapshot already
		torn = false
		err = j.Restart(snap.Gen, snap.Salt)
	}
	if err != nil {
		j.Close()
		return 0, damaged(err, name)
	}
	s.log = j
	// The snapshot measures the live state; a journal already past it is
	// compacted at the next write.
	s.persist.compactAt = max(minCompact, snapSize)
	if torn {
		opts.Logger.Warn("sharedstate: the journal ends in writes that were cut short and never acknowledged; dropping them",
			"journal", j.Path(), "records end", j.Size())
		s.compact()
		s.commit()
		if s.broken != nil {
			return 0, s.broken
		}
	}
	if s.persist.sync {
		j.StartSyncer(onBroken)
	}
	return replayed, nil
}

// follows reports whether a journal with header j, whose records end at
// end, is to be replayed on the snapshot with header snap (the zero header
// if there is none), or is one the snapshot already replaces: compaction
// writes the snapshot, then replaces the journal, and may have been cut
// short between the two. Any other pair means a file was replaced or lost.
func (p *persistence) follows(snap journal.Header, haveSnap bool, j journal.Header, end int) (replay bool, err error) {
	switch {
	case j.Gen == snap.Gen && j.Link == snap.Salt:
		return true, nil
	case haveSnap && j.Gen+1 == snap.Gen && j.Salt == snap.Link && uint64(end) == snap.End:
		return false, nil
	case !haveSnap:
		return false, fmt.Errorf("%w: journal %s continues a snapshot of generation %d, and there is no snapshot %s",
			ErrDamaged, p.dir.Join(p.journalName()), j.Gen, p.dir.Join(p.snapshotName()))
	}
	return false, fmt.Errorf("%w: journal %s (generation %d) does not continue snapshot %s (generation %d): one of them was replaced",
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
	s.claimTable(owner)
}

// syncs reports whether answers wait for the journal to reach the disk.
func (s *Store) Syncs() bool { return s.log != nil && s.log.Syncs() }

// whenDurable runs fn once the records journaled so far are durable.
func (s *Store) WhenDurable(fn func()) {
	if !s.Syncs() {
		fn()
		return
	}
	s.log.WhenDurable(fn)
}

// close stops journaling. Records already written stay.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log != nil {
		s.log.Close()
		s.log = nil
	}
	if s.tabFile != nil {
		s.tabFile.Close()
		s.tabFile = nil
		s.broken = errClosed // the table is gone: answer nothing more
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
	replay, err := s.persist.follows(snap, haveSnap, c.Header, c.End)
	if err == nil && replay {
		if _, err = s.replay(c.Records()); err != nil {
			err = fmt.Errorf("%w: journal %s: %w", ErrDamaged, dir.Join(s.persist.journalName()), err)
		}
	}
	if err != nil {
		return damaged(err, name)
	}
	return nil
}

// guardFiles writes the journal and snapshot anew, with a compaction, if
// either is no longer the file the store wrote: deleted, or replaced. It
// reports whether it did.
func (s *Store) GuardFiles() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil || s.broken != nil {
		return false
	}
	p := &s.persist
	s.guardTable()
	id, err := p.dir.Stat(p.journalName())
	ours := err == nil && id == s.log.ID()
	if ours && p.snapshotID != (statedir.FileID{}) {
		id, err = p.dir.Stat(p.snapshotName())
		ours = err == nil && id == p.snapshotID
	}
	if ours {
		return false
	}
	s.compact()
	s.commit()
	return true
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
