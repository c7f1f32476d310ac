package sharedstate

import (
	"errors"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
)

// guardInterval is how often the owner checks that the state's files are
// its own.
const guardInterval = 250 * time.Millisecond

// touchAge is how old a state file's times may get before the owner
// touches it. Age-based cleaners of temporary directories remove files
// that have not been touched for days (systemd-tmpfiles: 10 days on
// several distributions); PostgreSQL touches its socket lock files hourly
// for the same reason.
const touchAge = time.Hour

// guardLoop runs guard every guardInterval until the owner closes.
func (m *manager) guardLoop() {
	defer m.wg.Done()
	t := time.NewTicker(guardInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.guard()
		case <-m.quit:
			return
		}
	}
}

// guard keeps the state's files the owner's own while it owns the state:
// whatever deletes or replaces them (a tmp cleaner, an operator's rm -rf, a
// deploy script), the owner puts back its directory, lock file and socket,
// and writes the journal and snapshot anew from what it holds, so that
// nothing acknowledged is lost and new workers can join. No second owner
// can start meanwhile: it would need the beacon too. Where there is no
// beacon and another process has taken the lock file, this one steps down
// instead.
func (m *manager) guard() {
	st, log := m.st, m.st.cfg.logger
	if _, err := stateDir(st.cfg.dir); err != nil { // made again if missing
		log.Error("sharedstate: cannot restore the state's directory", "state", st.name, "err", err)
		return
	}
	moved, err := st.dir.Reopen()
	if err != nil {
		log.Error("sharedstate: cannot open the state's directory", "state", st.name, "err", err)
		return
	}
	if moved {
		log.Warn("sharedstate: the state's directory was deleted; restoring its files from the owner", "state", st.name, "dir", st.dir.Path())
	}
	if !m.guardLock() {
		return
	}
	if id, err := st.dir.Stat(st.sockName()); err != nil || id != m.listenerID() {
		if err := m.listen(); err != nil {
			log.Error("sharedstate: cannot bind the state's socket again", "state", st.name, "err", err)
		} else {
			m.wg.Add(1)
			go m.acceptLoop(m.listener())
			log.Warn("sharedstate: the state's socket was deleted or replaced; bound it again", "state", st.name, "socket", st.sockPath)
		}
	}
	if m.store.GuardFiles() || m.store.CheckSnapshot() {
		log.Warn("sharedstate: the state's journal or snapshot was deleted, replaced or damaged; writing both again from the owner", "state", st.name)
	}
	for _, name := range []string{"", st.lockName(), st.sockName(), m.store.JournalName(), m.store.SnapshotName(), m.store.TableName()} {
		st.dir.Touch(name, touchAge) // a file missing now is restored at the next check
	}
}

// guardLock takes the lock file again if it is no longer the file this
// owner locked, and reports whether the owner may go on.
func (m *manager) guardLock() bool {
	st, log := m.st, m.st.cfg.logger
	if id, err := st.dir.Stat(st.lockName()); err == nil && id == m.lock.ID() {
		return true
	}
	lf, err := st.dir.TryLock(st.lockName())
	switch {
	case err != nil:
		log.Error("sharedstate: cannot take the state's lock file again", "state", st.name, "err", err)
	case lf != nil:
		m.lock.Release()
		m.lock = lf
		log.Warn("sharedstate: the state's lock file was deleted or replaced; took it again", "state", st.name)
	case m.beacon == nil:
		// Another process holds the new lock file and no beacon told it
		// that this one owns the state: it may be an owner now.
		log.Error("sharedstate: the state's lock file was replaced and another process holds it; giving up ownership", "state", st.name)
		m.store.Stop(errors.New("another process holds the state's lock file"))
		m.lose()
		return false
	}
	// Else a process electing an owner holds it for a moment, and the
	// beacon turns it away: take it at the next check.
	return true
}

func (m *manager) listenerID() (id statedir.FileID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sockID
}
