package store

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// Besides the counters and maps, the table keeps what else a new owner
// needs to carry on where the last one stopped: the store's own words
// (the last version, the clock, the term, the counts), the locks, the
// clients' processes and the answers saved for their retries, and the
// names of the maps whose entries expire. They change in the transactions
// of the operations that change them, and live in a namespace of their own,
// the value of the root's key "s": a new owner reads them alone (adopt),
// in time independent of the number of counters and entries.
const (
	keptKey            = "s"
	keptMeta           = "M" // metaWords
	keptLockPrefix     = "l" // + name: holder, holderReq, token, since
	keptProcPrefix     = "p" // + client: pid, start
	keptRingPrefix     = "r" // + client + slot: an answer's frame (addAnswer)
	keptAnswerPrefix   = "a" // + client + request id: an answer's frame
	keptExpiringPrefix = "e" // + map name: the map has entries with a deadline
)

// The words of the kept key "M".
const (
	metaRev = iota
	metaClock
	metaOwner
	metaTerms
	metaEntries
	metaBytes
	metaWords
)

// keptSpace returns the namespace of what the table keeps besides the
// data, made if it is missing.
func (s *Store) keptSpace() table.Space {
	if s.keptAt.Space() == 0 {
		e, ok := s.txn().Get(table.Root, keptKey)
		if !ok {
			e = s.txn().NewSpace(keptKey, 0)
		}
		s.keptAt = e
	}
	return s.keptAt.Space()
}

// keep sets the kept key to words.
func (s *Store) keep(key string, words ...uint64) {
	b := s.keepBuf[:0]
	for _, w := range words {
		b = binary.NativeEndian.AppendUint64(b, w)
	}
	s.keepBuf = b
	s.txn().Put(s.keptSpace(), key, b, 0, 0)
}

// unkeep removes the kept key.
func (s *Store) unkeep(key string) { s.txn().Delete(s.keptSpace(), key) }

// keepMeta sets the words of "M" that differ from the store's; commit
// calls it, so that every operation's transaction carries them. The words
// as the table has them are kept in s.metaKept too: most operations change
// none, and comparing in memory spares their transactions a lookup each.
func (s *Store) keepMeta() {
	words := [metaWords]uint64{s.rev, uint64(s.clock), s.owner, s.terms, uint64(s.entries), uint64(s.bytes)}
	if words == s.metaKept && s.metaAt.Value != nil {
		return
	}
	tx := s.txn()
	if s.metaAt.Value == nil {
		e, ok := tx.Get(s.keptSpace(), keptMeta)
		if !ok {
			e, _, _ = tx.Put(s.keptSpace(), keptMeta, make([]byte, metaWords*8), 0, 0)
		}
		s.metaAt = e
	}
	for i, w := range words {
		if tx.Word(s.metaAt, i) != w {
			tx.SetWord(s.metaAt, i, w)
		}
	}
	s.metaKept = words
}

func clientKey(prefix string, client uint64) string {
	return string(binary.BigEndian.AppendUint64([]byte(prefix), client))
}

// keepLock keeps a lock's holder and token.
func (s *Store) keepLock(name string, l *lockState) {
	s.keep(keptLockPrefix+name, l.holder, l.holderReq, l.token, uint64(l.since))
}

// setProc records the Process of a client.
func (s *Store) setProc(client uint64, p Process) {
	s.procs[client] = p
	s.keep(clientKey(keptProcPrefix, client), uint64(p.pid), p.start)
}

// dropProc forgets the Process of a client.
func (s *Store) dropProc(client uint64) {
	if _, ok := s.procs[client]; ok {
		delete(s.procs, client)
		s.unkeep(clientKey(keptProcPrefix, client))
	}
}

// answerRing is the slots each client's answers are kept in: the answer
// to request id goes in slot id%answerRing, replacing the one there, which
// the client has acknowledged by then unless it has that many calls in
// flight (the answer then goes under a key of its own). Replacing a key
// costs a write of a proxy less than adding one and deleting it later.
const answerRing = 64

// answerRef names a saved answer in the table: in its ring slot, or under
// its id.
type answerRef struct {
	client, id uint64
	ring       bool
}

// key returns the kept key of a, in s.keyBuf: valid until the next call.
// A key is only read by the table (Put copies it into the entry): a string
// made per write was a tenth of the owner's time.
func (s *Store) key(a answerRef) string {
	b := s.keyBuf[:0]
	if a.ring {
		b = binary.BigEndian.AppendUint64(append(b, keptRingPrefix...), a.client)
		b = append(b, byte(a.id%answerRing))
	} else {
		b = binary.BigEndian.AppendUint64(append(b, keptAnswerPrefix...), a.client)
		b = binary.BigEndian.AppendUint64(b, a.id)
	}
	s.keyBuf = b
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// ref returns where the answer to a client's request id is kept.
func (t *clientTable) ref(client, id uint64) answerRef {
	return answerRef{client: client, id: id, ring: t.ring[id%answerRing] == id}
}

// addAnswer saves the answer to a client's request id, for its retry.
func (s *Store) addAnswer(client uint64, t *clientTable, id uint64, resp transport.Response) {
	t.results[id] = resp
	t.order = append(t.order, id)
	if held := t.ring[id%answerRing]; held == 0 || t.results[held].ID != held {
		t.ring[id%answerRing] = id // free, or holding an answer acknowledged
	}
	s.scratch = (*wire.Response)(&resp).AppendFrame(s.scratch[:0])
	s.txn().Put(s.keptSpace(), s.key(t.ref(client, id)), s.scratch, 0, 0)
}

// pruneBudget bounds the answers dropped from the table in one
// transaction. An acknowledgement can drop as many answers as its client
// has calls in flight beyond its ring, which no transaction could hold; an
// answer left in the table is harmless (a client never retries a call it
// has the answer to), so the answers dropped wait in s.stale, and each
// transaction takes some: more than an operation saves, so the queue stays
// short.
const pruneBudget = 8

// prune drops some of the stale answers from the table.
func (s *Store) prune() {
	n := min(len(s.stale), pruneBudget)
	for _, a := range s.stale[:n] {
		s.unkeep(s.key(a))
	}
	s.stale = s.stale[n:]
	if len(s.stale) == 0 {
		s.stale = nil // let the array go
	}
}

// acknowledge drops the answers a client has received: those below ack.
func (s *Store) acknowledge(client uint64, t *clientTable, ack uint64) {
	if ack <= t.ack {
		return
	}
	t.ack = ack
	// An id below ack behind one above it waits for a later ack: ack only
	// grows, so it goes once the ids before it have.
	i := 0
	for i < len(t.order) && t.order[i] < ack {
		// An answer in its ring slot stays there until another replaces it.
		if a := t.ref(client, t.order[i]); !a.ring {
			s.stale = append(s.stale, a)
		}
		delete(t.results, t.order[i])
		i++
	}
	if i == len(t.order) {
		t.order = t.order[:0] // empty: reuse the array from its start
	} else {
		t.order = t.order[i:]
	}
}

// dropClient forgets a client's saved answers.
func (s *Store) dropClient(client uint64) {
	t := s.clients[client]
	if t == nil {
		return
	}
	for _, id := range t.order {
		if a := t.ref(client, id); !a.ring {
			s.stale = append(s.stale, a)
		}
	}
	for _, id := range t.ring {
		if id != 0 {
			s.stale = append(s.stale, answerRef{client: client, id: id, ring: true})
		}
	}
	delete(s.clients, client)
}

// markExpiring records whether a map has entries with a deadline.
func (s *Store) markExpiring(mapName string, expiring bool) {
	if expiring {
		s.keep(keptExpiringPrefix + mapName)
	} else {
		s.unkeep(keptExpiringPrefix + mapName)
	}
}

// loadKept reads what the table keeps besides the data into the empty
// store of a new owner, and the deadlines of the maps whose entries expire.
// The table is the last owner's, whose bytes are checked as they are read:
// anything amiss is an error, and the state is rebuilt from its files.
func (s *Store) loadKept() error {
	tx := s.txn()
	e, ok := tx.Get(table.Root, keptKey)
	if !ok {
		return fmt.Errorf("%w: the table keeps no store", table.ErrCorrupt)
	}
	s.keptAt = e
	var expiringMaps []string
	var resp transport.Response
	for k, e := range tx.All(e.Space()) {
		key := string(k)
		w := func(i int) uint64 { return binary.NativeEndian.Uint64(e.Value[i*8:]) }
		words := len(e.Value) / 8
		if len(e.Value)%8 != 0 {
			words = -1 // not words: only an answer's frame
		}
		bad := false
		switch {
		case key == keptMeta && words == metaWords:
			s.metaAt = e
			for i := range s.metaKept {
				s.metaKept[i] = w(i)
			}
			s.rev, s.clock, s.owner, s.terms = w(metaRev), int64(w(metaClock)), w(metaOwner), w(metaTerms)
			s.entries, s.bytes = int(w(metaEntries)), int64(w(metaBytes))
		case len(key) > 1 && key[:1] == keptLockPrefix && words == 4:
			l := s.lockNamed(key[1:])
			l.holder, l.holderReq, l.token, l.since = w(0), w(1), w(2), int64(w(3))
		case len(key) == 9 && key[:1] == keptProcPrefix && words == 2:
			s.procs[binary.BigEndian.Uint64(k[1:])] = Process{pid: int(w(0)), start: w(1)}
		case len(key) == 17 && key[:1] == keptAnswerPrefix, len(key) == 10 && key[:1] == keptRingPrefix:
			d := wire.NewDecoder(e.Value)
			frame := d.Frame()
			err := d.Finish()
			if err == nil {
				err = (*wire.Response)(&resp).Decode(frame)
			}
			if err != nil {
				return fmt.Errorf("%w: a saved answer: %v", table.ErrCorrupt, err)
			}
			client := binary.BigEndian.Uint64(k[1:])
			t := s.clients[client]
			if t == nil {
				t = newClientTable()
				s.clients[client] = t
			}
			if key[:1] == keptRingPrefix {
				if resp.ID%answerRing != uint64(k[9]) {
					return fmt.Errorf("%w: the answer to request %d in ring slot %d", table.ErrCorrupt, resp.ID, k[9])
				}
				t.ring[k[9]] = resp.ID
			}
			t.results[resp.ID] = resp
			t.order = append(t.order, resp.ID)
		case len(key) > 1 && key[:1] == keptExpiringPrefix && words == 0:
			expiringMaps = append(expiringMaps, key[1:])
		default:
			bad = true
		}
		if bad {
			return fmt.Errorf("%w: kept key %q of %d bytes", table.ErrCorrupt, key, len(e.Value))
		}
	}
	if s.metaAt.Value == nil {
		return fmt.Errorf("%w: the table keeps no store words", table.ErrCorrupt)
	}
	for client, t := range s.clients {
		if _, ok := s.procs[client]; !ok {
			// A client's process is forgotten only once it has no answers
			// to retry: these are answers it had acknowledged, left in
			// their ring slots.
			s.dropClient(client)
			continue
		}
		slices.Sort(t.order) // read from a hash table, in no order
	}
	for _, name := range expiringMaps {
		sp, ok := s.mapSpace(name)
		if !ok {
			return fmt.Errorf("%w: map %q is marked expiring and is missing", table.ErrCorrupt, name)
		}
		for k, e := range tx.All(sp) {
			if e.Deadline != 0 {
				ref := &expiryRef{at: e.Deadline, index: len(s.expiries), mapName: name, key: string(k)}
				s.expiries = append(s.expiries, ref)
				s.expiring[entryKey{name, ref.key}] = ref
			}
		}
	}
	heap.Init(&s.expiries)
	return nil
}
