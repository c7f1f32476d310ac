package store

import (
	"encoding/binary"
	"fmt"
	"iter"
	"strings"

	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

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
	snapLock                    // name, holder, holder's request, token, since
	snapClient                  // client, ack, then its saved answers as frames
	snapEnd                     // the snapshot is complete
	snapMap                     // name, entries: sizes the map before its entries come
	recForget                   // a client's saved answers dropped: client
	recClient                   // a client connected from a process: client, pid, start
	snapProc                    // a client's process: client, pid, start
	recEvict                    // entries a bounded map evicted: time, map, keys
)

func (s *Store) requestRecord(client uint64, now int64, req *transport.Request) []byte {
	b := append(s.scratch[:0], recRequest)
	b = binary.AppendUvarint(b, client)
	b = binary.AppendVarint(b, now)
	b = (*wire.Request)(req).AppendFrame(b)
	s.scratch = b
	return b
}

func grantRecord(b []byte, now int64, client, req uint64, name string, token uint64) []byte {
	b = append(b, recGrant)
	b = binary.AppendUvarint(b, client)
	b = binary.AppendVarint(b, now)
	b = binary.AppendUvarint(b, req)
	b = wire.AppendString(b, name)
	return binary.AppendUvarint(b, token)
}

func releaseRecord(b []byte, now int64, name string) []byte {
	b = append(b, recRelease)
	b = binary.AppendVarint(b, now)
	return wire.AppendString(b, name)
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
func (s *Store) forget(client uint64) {
	_, saved := s.clients[client]
	_, known := s.procs[client]
	if saved || known {
		s.journal(forgetRecord(s.scratch[:0], client))
		s.dropClient(client)
		s.dropProc(client)
	}
}

func clientRecord(b []byte, client uint64, p Process) []byte {
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
func (s *Store) journal(rec []byte) {
	s.scratch = rec[:0]
	if s.log == nil || s.broken != nil {
		return
	}
	if err := s.log.Append(rec); err != nil {
		s.broken = err
		s.persist.onBroken(err)
	}
}

// replayFrom replays the records from off of the journal at path, of salt
// salt, which records returns (its RecordsFrom).
func (s *Store) replayFrom(path string, salt uint64, off int, records func(int) (iter.Seq2[[]byte, int], error)) (int, error) {
	recs, err := records(off)
	n := 0
	if err == nil {
		n, err = s.replay(recs, salt)
	}
	if err != nil {
		return 0, fmt.Errorf("%w: journal %s: %w", ErrDamaged, path, err)
	}
	return n, nil
}

// replay applies the records of the journal of salt journal to the store,
// each in a transaction that publishes its position (see Store.settled).
// Each request is applied as its client's, at the time it was first
// applied. Answers are saved only for the writes whose clients had not
// acknowledged them by the journal's end: saving every answer to drop it a
// record later made up a third of a replay's time.
func (s *Store) replay(records iter.Seq2[[]byte, int], journal uint64) (n int, err error) {
	acked := finalAcks(records)
	defer func() {
		for client, ack := range acked {
			if t := s.clients[client]; t != nil {
				s.acknowledge(client, t, ack)
			}
		}
		s.commit()
	}()
	sessions := make(map[uint64]*Session)
	sessionOf := func(id uint64) *Session {
		if sessions[id] == nil {
			sessions[id] = s.NewSession(id, 0, func(transport.Response) {})
		}
		return sessions[id]
	}
	var req transport.Request
	i := -1
	for rec, next := range records {
		i++
		if len(rec) == 0 {
			return i, fmt.Errorf("record %d is empty", i)
		}
		d := wire.NewDecoder(rec[1:])
		switch rec[0] {
		case recRequest:
			client, now, frame := d.Uvarint(), d.Varint(), d.Frame()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			if err := (*wire.Request)(&req).Decode(frame); err != nil {
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
			l.holder, l.holderReq, l.token, l.since = client, id, token, now
			s.keepLock(name, l)
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
		case recEvict:
			now, mapName, n := d.Varint(), d.String(), d.Uvarint()
			s.expire(s.tick(now))
			for range n {
				if !d.More() {
					break // Finish reports it
				}
				s.remove(mapName, d.String())
			}
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
		case recForget:
			client := d.Uvarint()
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.dropClient(client)
			s.dropProc(client)
		case recClient:
			client, p := d.Uvarint(), readProcess(d)
			if err := d.Finish(); err != nil {
				return i, fmt.Errorf("record %d: %w", i, err)
			}
			s.setProc(client, p)
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
		// Each record in a transaction, as its operation had it.
		s.settled = table.Position{Journal: journal, Offset: uint64(next)}
		s.commit()
	}
	return i + 1, nil
}

// finalAcks returns each client's latest Ack in the journal records: a
// quick pass that reads only the start of each request.
func finalAcks(records iter.Seq2[[]byte, int]) map[uint64]uint64 {
	acked := make(map[uint64]uint64)
	for rec := range records {
		if len(rec) == 0 || rec[0] != recRequest {
			continue
		}
		d := wire.NewDecoder(rec[1:])
		client, _, frame := d.Uvarint(), d.Varint(), d.Frame()
		if len(frame) == 0 || wire.Kind(frame[0]) != wire.KindRequest {
			continue // replay reports it
		}
		d = wire.NewDecoder(frame[1:])
		_, ack := d.Uvarint(), d.Uvarint()
		acked[client] = max(acked[client], ack)
	}
	return acked
}

func (s *Store) lockNamed(name string) *lockState {
	l := s.locks[name]
	if l == nil {
		l = &lockState{}
		if strings.HasPrefix(name, transport.ClaimPrefix) {
			l.token = uint64(s.clock) // a claim made again gives no token twice: see dropClaim
		}
		s.locks[name] = l
		s.lockNames.Insert(name)
	}
	return l
}
