package store

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/sharedstate/sharedstate/internal/journal"
	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/table"
)

// Repair makes the state called name in dir openable again, keeping what
// of its journal can be read: the journal is set aside (renamed, never
// deleted), and what it kept becomes a snapshot of the next generation with
// an empty journal on it. It returns the problem found ("" if Open would
// succeed, and then changes nothing), the journal records kept, and the
// files set aside. The caller holds the state's lock file.
func Repair(dir *statedir.Dir, name string) (problem string, records int, setAside []string, err error) {
	file, tab, err := table.NewMemory()
	if err != nil {
		return "", 0, nil, err
	}
	s := newStore(file, tab)
	defer s.Close()
	s.persist = persistence{dir: dir, name: name, sync: true}
	snap, haveSnap, _, err := s.loadSnapshot()
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w; a snapshot cannot be repaired: remove the state's files to start over", err)
	}
	jname := s.persist.journalName()
	c, err := journal.Read(dir, jname)
	moveJournal := true
	switch {
	case errors.Is(err, fs.ErrNotExist) && !haveSnap:
		return "", 0, nil, nil // a state never written
	case errors.Is(err, fs.ErrNotExist):
		problem = fmt.Sprintf("journal %s is missing", dir.Join(jname))
		moveJournal = false
	case err != nil:
		problem = err.Error() // its header: nothing of it can be kept
	default:
		from, ferr := s.persist.follows(snap, haveSnap, c.Header, c.End)
		switch {
		case ferr != nil:
			problem = ferr.Error()
		case c.Damage != nil:
			problem = c.Damage.Error()
		default:
			return "", 0, nil, nil // Open would succeed
		}
		if ferr == nil {
			if records, err = s.replayFrom(dir.Join(jname), c.Salt, from, c.RecordsFrom); err != nil {
				return "", 0, nil, err
			}
		}
	}
	if moveJournal {
		aside := jname + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
		if err := dir.Rename(jname, aside); err != nil {
			return "", 0, nil, err
		}
		setAside = append(setAside, dir.Join(aside))
	}
	// What was kept becomes a snapshot of the next generation, with an
	// empty journal on it: written and synced before the journal, so that
	// an interrupted repair leaves a state that Repair can take up again.
	newSnap := journal.Header{Gen: snap.Gen + 1, Salt: journal.NewSalt()}
	st := s.stateRecords()
	f, err := s.tab.Freeze()
	if err != nil {
		return "", 0, nil, err
	}
	_, _, err = journal.WriteSnapshot(dir, s.persist.snapshotName(), newSnap, true, func(w *journal.SnapshotWriter) error {
		return snapshotRecords(w, &st, f)
	})
	s.tab.Thaw()
	f.Release()
	if err == nil {
		var j *journal.Journal
		if j, err = journal.Create(dir, jname, newSnap.Gen, newSnap.Salt, true); err == nil {
			j.Close()
		}
	}
	return problem, records, setAside, err
}
