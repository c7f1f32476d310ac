package sharedstate

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// Durability says what an acknowledged write survives.
type Durability int

const (
	// DurabilityProcess, the default, journals every write before
	// answering it, into the page cache: writes survive the death of any
	// process, and so a takeover or a restart of every worker, but not a
	// crash of the machine (the last seconds before it are lost). It costs
	// a memory copy per write, no system call.
	DurabilityProcess Durability = iota
	// DurabilityDisk also flushes the journal to disk before answering,
	// one fdatasync for each batch of concurrent writes: writes survive a
	// power cut, at the cost of a disk flush per batch.
	DurabilityDisk
	// DurabilityMemory journals only locks: counters and maps live only
	// in the owner's memory and are lost when the owner exits, though the
	// other processes carry on with them empty under a new owner. Locks
	// keep their guarantees, as with the other durabilities: a holder keeps
	// its lock through a takeover, and fencing tokens keep increasing.
	DurabilityMemory
)

func (d Durability) String() string {
	switch d {
	case DurabilityProcess:
		return "process"
	case DurabilityDisk:
		return "disk"
	case DurabilityMemory:
		return "memory"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// persistence is how a store keeps itself: its journal and snapshot.
type persistence struct {
	snapshot  string // path of the snapshot file
	sync      bool   // DurabilityDisk
	locksOnly bool   // DurabilityMemory: journal the locks alone
	compactAt int    // journal size at which to write a snapshot
	logger    *slog.Logger
	onBroken  func(error) // the journal failed: give up ownership
}

// minCompact is the journal size below which no snapshot is written. A
// journal is compacted once it outgrows the snapshot (the live state), so
// the two files hold at most about twice the live state, and a takeover
// replays at most about twice the records the state has.
const minCompact = 512 << 10

// Record types. Journal records change the state; snapshot records set it.
const (
	recRequest  byte = iota + 1 // a client's write: client, time, request
	recGrant                    // a lock granted: client, time, request id, name, token
	recRelease                  // a lock taken from a gone holder: time, name
	recOwner                    // a new owner's term begins: client, time
	recExpire                   // entries expired with no operation: time
	snapMeta                    // rev, clock, owner of the latest term, terms
	snapCounter                 // name, value
	snapEntry                   // map, key, value, version, expiry (0: none)
	snapLock                    // name, holder, holder's request, token
	snapClient                  // client, ack, then its saved answers as frames
	snapEnd                     // the snapshot is complete
	snapMap                     // name, entries: sizes the map before its entries come
	recForget                   // a client's saved answers dropped: client
	recClient                   // a client connected from a process: client, pid, start
	snapProc                    // a client's process: client, pid, start
)

func (s *store) requestRecord(client uint64, now int64, req *transport.Request) []byte {
	b := append(s.scratch[:0], recRequest)
	b = binary.AppendUvarint(b, client)
	b = binary.AppendVarint(b, now)
	b = req.AppendFrame(b)
	s.scratch = b
	return b
}

func grantRecord(b []byte, now int64, client, req uint64, name string, token uint64) []byte {
	b = append(b, recGrant)
	b = binary.AppendUvarint(b, client)
	b = binary.AppendVarint(b, now)
	b = binary.AppendUvarint(b, req)
	b = transport.AppendString(b, name)
	return binary.AppendUvarint(b, token)
}

func releaseRecord(b []byte, now int64, name string) []byte {
	b = append(b, recRelease)
	b = binary.AppendVarint(b, now)
	return transport.AppendString(b, name)
}

func expireRecord(b []byte, now int64) []byte {
	b = append(b, recExpire)
	return binary.AppendVarint(b, now)
}

func forgetRecord(b []byte, client uint64) []byte {
	return binary.AppendUvarint(append(b, recForget), client)
}

// forget drops the answers saved for a client that will not ask for them
// again; s.mu is held.
func (s *store) forget(client uint64) {
	_, saved := s.clients[client]
	_, known := s.procs[client]
	if saved || known {
		s.journal(forgetRecord(s.scratch[:0], client))
		delete(s.clients, client)
		delete(s.procs, client)
	}
}

func clientRecord(b []byte, client uint64, p process) []byte {
	b = binary.AppendUvarint(append(b, recClient), client)
	return p.append(b)
}

func ownerRecord(b []byte, now int64, client uint64) []byte {
	b = append(b, recOwner)
	b = binary.AppendUvarint(b, client)
	return binary.AppendVarint(b, now)
}

// journal appends a record; s.mu is held. If the journal cannot take it, the
// store stops serving: its memory now holds a change the journal lacks, so
// no answer may be given from it.
func (s *store) journal(rec []byte) {
	s.scratch = rec[:0]
	if s.log == nil || s.broken != nil {
		return
	}
	if err := s.log.append(rec); err != nil {
		s.broken = err
		s.persist.onBroken(err)
	}
}

// replay applies the records of a journal to the store. Each request is
// applied as its client's, at the time it was first applied. Answers are
// saved only for the writes whose clients had not acknowledged them by the
// journal's end: saving every answer to drop it a record later made up a
// third of a replay's time.
func (s *store) replay(records iter.Seq[[]byte]) (n int, err error) {
	acked := finalAcks(records)
	defer func() {
		for client, ack := range acked {
			if t := s.clients[client]; t != nil {
				t.acknowledge(ack)
			}
		}
	}()
	sessions := make(map[uint64]*session)
	sessionOf := func(id uint64) *session {
		if sessions[id] == nil {
			sessions[id] = s.newSession(id, 0, func(transport.Response) {})
		}
		return sessions[id]
	}
	var req transport.Request
	i := -1
	for rec := range records {
		i++
		if len(rec) == 0 {
			return i, fmt.Errorf("record %d is empty", i)
		}
		d := transport.NewDecoder(rec[1:])
		switch rec[0] {
		case recRequest:
			client, now, frame := d.Uvarint(), d.Varint(), d.Frame()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			if err := req.Decode(frame); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			if now != 0 {
				now = s.tick(now)
			}
			s.expire(now)
			sess := sessionOf(client)
			resp, _ := s.exec(sess, &req, now)
			// The owner's own writes are never retried through the
			// socket: it applied them itself.
			if req.ID >= acked[client] && client != s.owner {
				s.save(sess, &req, resp)
			}
		case recGrant:
			client, now, id, name, token := d.Uvarint(), d.Varint(), d.Uvarint(), d.String(), d.Uvarint()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.expire(s.tick(now))
			l := s.lockNamed(name)
			l.holder, l.holderReq, l.token = client, id, token
		case recRelease:
			now, name := d.Varint(), d.String()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.expire(s.tick(now))
			s.release(name, s.lockNamed(name))
		case recExpire:
			now := d.Varint()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.expire(s.tick(now))
		case recForget:
			client := d.Uvarint()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			delete(s.clients, client)
			delete(s.procs, client)
		case recClient:
			client, p := d.Uvarint(), readProcess(d)
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.procs[client] = p
		case recOwner:
			client, now := d.Uvarint(), d.Varint()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.tick(now)
			s.owner = client
			s.terms++
		default:
			return i, fmt.Errorf("record %d: unknown type %d", i, rec[0])
		}
	}
	return i + 1, nil
}

// finalAcks returns each client's latest Ack in the journal records: a
// quick pass that reads only the start of each request.
func finalAcks(records iter.Seq[[]byte]) map[uint64]uint64 {
	acked := make(map[uint64]uint64)
	for rec := range records {
		if len(rec) == 0 || rec[0] != recRequest {
			continue
		}
		d := transport.NewDecoder(rec[1:])
		client, _, frame := d.Uvarint(), d.Varint(), d.Frame()
		if len(frame) == 0 || transport.Kind(frame[0]) != transport.KindRequest {
			continue // replay reports it
		}
		d = transport.NewDecoder(frame[1:])
		_, ack := d.Uvarint(), d.Uvarint()
		acked[client] = max(acked[client], ack)
	}
	return acked
}

func (s *store) lockNamed(name string) *lockState {
	l := s.locks[name]
	if l == nil {
		l = &lockState{}
		s.locks[name] = l
	}
	return l
}

// compact writes a snapshot of the store and starts an empty journal on it;
// s.mu is held. A failure leaves the journal as it was, to try again later.
func (s *store) compact() {
	start := time.Now()
	gen := s.log.gen + 1
	size, err := s.writeSnapshot(gen)
	if err == nil {
		err = s.log.restart(gen)
		if err != nil {
			// The snapshot holds everything; the old journal, of an older
			// generation, will be ignored. Nothing to append to, though.
			s.broken = err
			s.persist.onBroken(err)
		}
	}
	// Whatever happened, wait for the journal to grow well past the live
	// state before trying again.
	s.persist.compactAt = s.log.size() + max(minCompact, size)
	if err != nil {
		s.persist.logger.Error("sharedstate: cannot write a snapshot", "err", err)
		return
	}
	s.persist.logger.Debug("sharedstate: wrote a snapshot", "bytes", size, "took", time.Since(start))
}

// writeSnapshot writes the store to a temporary file and renames it over
// the snapshot, so that a crash leaves the old snapshot or the new one.
func (s *store) writeSnapshot(gen uint64) (int, error) {
	tmp := s.persist.snapshot + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	w := &recordWriter{w: bufio.NewWriterSize(f, 256<<10)}
	var hdr [headerLen]byte
	copy(hdr[:], snapshotMagic[:])
	binary.LittleEndian.PutUint64(hdr[8:], gen)
	w.raw(hdr[:])
	s.snapshotRecords(w)
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err == nil && s.persist.sync {
		w.err = f.Sync()
	}
	if err := f.Close(); w.err == nil {
		w.err = err
	}
	if w.err == nil {
		w.err = os.Rename(tmp, s.persist.snapshot)
	}
	if w.err != nil {
		os.Remove(tmp)
		return 0, w.err
	}
	if s.persist.sync {
		syncDir(filepath.Dir(s.persist.snapshot))
	}
	return w.n, nil
}

// snapshotRecords writes every part of the store as records.
func (s *store) snapshotRecords(w *recordWriter) {
	b := []byte{snapMeta}
	b = binary.AppendUvarint(b, s.rev)
	b = binary.AppendVarint(b, s.clock)
	b = binary.AppendUvarint(b, s.owner)
	w.record(binary.AppendUvarint(b, s.terms))
	s.snapshotLocks(w, b)
	s.snapshotProcs(w, b)
	if !s.persist.locksOnly {
		s.snapshotData(w, b)
	}
	w.record([]byte{snapEnd})
}

// snapshotData writes the counters, the maps and the saved answers.
func (s *store) snapshotData(w *recordWriter, b []byte) {
	for name, v := range s.counters {
		b = transport.AppendString(append(b[:0], snapCounter), name)
		w.record(binary.AppendVarint(b, v))
	}
	for mapName, m := range s.maps {
		b = transport.AppendString(append(b[:0], snapMap), mapName)
		w.record(binary.AppendUvarint(b, uint64(len(m))))
		for key, e := range m {
			b = transport.AppendString(append(b[:0], snapEntry), mapName)
			b = transport.AppendString(b, key)
			b = transport.AppendBytes(b, e.value)
			b = binary.AppendUvarint(b, e.version)
			var expiry int64
			if e.expiry != nil {
				expiry = e.expiry.at
			}
			w.record(binary.AppendVarint(b, expiry))
		}
	}
	for id, t := range s.clients {
		if len(t.results) == 0 {
			continue // nothing to answer again: the client may be long gone
		}
		b = binary.AppendUvarint(append(b[:0], snapClient), id)
		b = binary.AppendUvarint(b, t.ack)
		b = binary.AppendUvarint(b, uint64(len(t.results)))
		for _, resp := range t.results {
			b = resp.AppendFrame(b)
		}
		w.record(b)
	}
}

// snapshotProcs writes the processes of the clients that hold locks or
// have answers saved.
func (s *store) snapshotProcs(w *recordWriter, b []byte) {
	for id, p := range s.procs {
		b = binary.AppendUvarint(append(b[:0], snapProc), id)
		w.record(p.append(b))
	}
}

// snapshotLocks writes the locks ever taken.
func (s *store) snapshotLocks(w *recordWriter, b []byte) {
	for name, l := range s.locks {
		if l.holder == 0 && l.token == 0 {
			continue
		}
		b = transport.AppendString(append(b[:0], snapLock), name)
		b = binary.AppendUvarint(b, l.holder)
		b = binary.AppendUvarint(b, l.holderReq)
		w.record(binary.AppendUvarint(b, l.token))
	}
}

// recordWriter writes framed records, keeping the first error.
type recordWriter struct {
	w   *bufio.Writer
	n   int
	err error
}

func (w *recordWriter) raw(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
		w.n += len(b)
	}
}

func (w *recordWriter) record(payload []byte) {
	var hdr [recordOverhead]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, crcTable))
	w.raw(hdr[:])
	w.raw(payload)
}

// loadSnapshot reads the snapshot at path into the empty store and returns
// its generation (0 if there is none) and size.
func (s *store) loadSnapshot(path string) (gen uint64, size int, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	if len(data) < headerLen || !bytes.Equal(data[:4], snapshotMagic[:]) {
		return 0, 0, fmt.Errorf("sharedstate: %s is not a snapshot of this version", path)
	}
	gen = binary.LittleEndian.Uint64(data[8:])
	end, err := scanRecords(data, headerLen)
	if err == nil && end != len(data) {
		err = fmt.Errorf("incomplete, ending at offset %d", end)
	}
	if err == nil {
		err = s.loadSnapshotRecords(records(data, headerLen, end))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sharedstate: snapshot %s: %w", path, err)
	}
	return gen, len(data), nil
}

func (s *store) loadSnapshotRecords(records iter.Seq[[]byte]) error {
	var resp transport.Response
	i, complete := -1, false
	for rec := range records {
		i++
		switch {
		case len(rec) == 0:
			return fmt.Errorf("record %d is empty", i)
		case complete:
			return fmt.Errorf("record %d follows the end", i)
		}
		d := transport.NewDecoder(rec[1:])
		switch rec[0] {
		case snapMeta:
			s.rev, s.clock, s.owner, s.terms = d.Uvarint(), d.Varint(), d.Uvarint(), d.Uvarint()
		case snapMap:
			name, n := d.String(), d.Uvarint()
			s.maps[name] = make(map[string]entry, min(n, 1<<24)) // a size, not a promise
		case snapCounter:
			name := d.String()
			s.counters[name] = d.Varint()
		case snapEntry:
			mapName, key, value, version, expiry := d.String(), d.String(), d.Bytes(), d.Uvarint(), d.Varint()
			m := s.maps[mapName]
			if m == nil {
				m = make(map[string]entry)
				s.maps[mapName] = m
			}
			e := entry{value: value, version: version}
			if expiry != 0 {
				e.expiry = &expiryRef{at: expiry, mapName: mapName, key: key}
				heap.Push(&s.expiries, e.expiry)
			}
			m[key] = e
		case snapLock:
			l := s.lockNamed(d.String())
			l.holder, l.holderReq, l.token = d.Uvarint(), d.Uvarint(), d.Uvarint()
		case snapClient:
			t := &clientTable{results: make(map[uint64]transport.Response)}
			s.clients[d.Uvarint()] = t
			t.ack = d.Uvarint()
			n := d.Uvarint()
			for range n {
				if err := resp.Decode(d.Frame()); err != nil {
					return fmt.Errorf("record %d: %w", i, err)
				}
				t.add(resp.ID, resp)
			}
			slices.Sort(t.order) // written from a map, in no order
		case snapProc:
			client := d.Uvarint()
			s.procs[client] = readProcess(d)
		case snapEnd:
			complete = true
		default:
			return fmt.Errorf("record %d: unknown type %d", i, rec[0])
		}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	if !complete {
		return errors.New("incomplete: no end record")
	}
	return nil
}

// recoverStore rebuilds a state from its snapshot and journal, at base plus
// ".snapshot" and ".journal", and returns it with the number of journal
// records replayed. The store journals to the same files from then on.
func recoverStore(base string, cfg config, onBroken func(error)) (*store, int, error) {
	s := newStore()
	s.wall = cfg.clock
	s.persist = persistence{
		snapshot:  base + ".snapshot",
		sync:      cfg.durability == DurabilityDisk,
		locksOnly: cfg.durability == DurabilityMemory,
		compactAt: minCompact,
		logger:    cfg.logger,
		onBroken:  onBroken,
	}
	gen, snapSize, err := s.loadSnapshot(s.persist.snapshot)
	if err != nil {
		return nil, 0, err
	}
	j, err := openJournal(base+".journal", s.persist.sync)
	if err != nil {
		return nil, 0, err
	}
	replayed := 0
	switch {
	case j.gen < gen:
		// A crash between writing a snapshot and starting its journal: the
		// snapshot holds every record of the old one.
		err = j.restart(gen)
	case j.gen > gen:
		err = fmt.Errorf("sharedstate: journal %s continues snapshot %d, but snapshot %s is %d", j.path, j.gen, s.persist.snapshot, gen)
	default:
		if replayed, err = s.replay(j.records()); err != nil {
			err = fmt.Errorf("sharedstate: journal %s: %w", j.path, err)
		}
	}
	if err != nil {
		j.close()
		return nil, 0, err
	}
	s.log = j
	// The snapshot measures the live state; a journal already past it is
	// compacted at the next write.
	s.persist.compactAt = max(minCompact, snapSize)
	if s.persist.sync {
		j.startSyncer(onBroken)
	}
	return s, replayed, nil
}

// beginTerm records that owner now owns the state, and deals with the locks
// of the previous term.
func (s *store) beginTerm(owner uint64, grace time.Duration) {
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
	s.forget(prev) // that process is gone, and its answers with it
}

// syncs reports whether answers wait for the journal to reach the disk.
func (s *store) syncs() bool { return s.log != nil && s.log.sync }

// whenDurable runs fn once the records journaled so far are durable.
func (s *store) whenDurable(fn func()) {
	if !s.syncs() {
		fn()
		return
	}
	s.log.whenDurable(fn)
}

// close stops journaling. Records already written stay.
func (s *store) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log != nil {
		s.log.close()
		s.log = nil
	}
}

// readStore loads the state from its snapshot and journal at base without
// changing them.
func readStore(base string) (*store, error) {
	s := newStore()
	gen, _, err := s.loadSnapshot(base + ".snapshot")
	if err != nil {
		return nil, err
	}
	path := base + ".journal"
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, err
	case len(data) < headerLen:
		return s, nil // an owner died before writing the header
	case !bytes.Equal(data[:4], journalMagic[:]):
		return nil, fmt.Errorf("sharedstate: %s is not a journal of this version", path)
	case binary.LittleEndian.Uint64(data[8:]) != gen:
		return s, nil // a journal the snapshot already holds
	}
	end, err := scanRecords(data, headerLen)
	if err == nil {
		_, err = s.replay(records(data, headerLen, end))
	}
	if err != nil {
		return nil, fmt.Errorf("sharedstate: journal %s: %w", path, err)
	}
	s.startClock()
	return s, nil
}

// offline serves an observer's reads from a copy of the state read from its
// files, while no owner runs. Once a process takes the state's lock, offline
// reports itself lost, so that the observer connects to the new owner.
type offline struct {
	store *store
	sess  *session
	owned chan struct{} // closed once a process holds the lock file
	quit  chan struct{}
	done  chan struct{}
}

// ownerPoll is how often an offline observer looks for a new owner.
const ownerPoll = 250 * time.Millisecond

func openOffline(st *embedded) (*offline, error) {
	s, err := readStore(st.basePath)
	if err != nil {
		return nil, err
	}
	st.cfg.logger.Info("sharedstate: no owner; reading the state from its journal", "state", st.name)
	o := &offline{
		store: s,
		sess:  s.newSession(st.clientID, os.Getpid(), func(transport.Response) {}),
		owned: make(chan struct{}),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go o.watchLock(st.lockPath)
	return o, nil
}

// watchLock closes owned once the lock file is held by another process.
func (o *offline) watchLock(path string) {
	defer close(o.done)
	t := time.NewTicker(ownerPoll)
	defer t.Stop()
	for {
		select {
		case <-o.quit:
			return
		case <-t.C:
		}
		lf, err := transport.TryLock(path)
		if err == nil && lf == nil {
			close(o.owned)
			return
		}
		if lf != nil {
			lf.Release()
		}
	}
}

func (o *offline) do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	if req.Op.Mutates() || isMessageOp(req.Op) || req.Op == transport.OpLockHeld {
		return transport.Response{ID: req.ID, Status: transport.StatusReadOnly,
			Msg: "no owner is running, and an observer reads the state from its journal"}, nil
	}
	resp, _ := o.store.apply(o.sess, req)
	return resp, nil
}

func (o *offline) lost() <-chan struct{} { return o.owned }

func (o *offline) close() {
	close(o.quit)
	<-o.done
}
