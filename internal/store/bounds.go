package store

import (
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"

	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// A bounded map is one whose writes carry a bound (Request.MaxEntries,
// MaxBytes): once such a write is done, the store evicts entries until the
// map is within the bound again, never the entry just written. Each victim
// is the least recently used of evictSamples entries drawn at random from
// the map's namespace in the table (Tx.Sample), as Redis's allkeys-lru
// policy samples, so the store keeps no order of its entries. An entry's
// last use is the later of its version (its last write) and its last read,
// which the processes report in batches (OpTouch), since their reads come
// from the table and never reach the owner. The owner keeps those reads in
// memory, by a hash of the key, for two generations of the map's size:
// approximate, as the sample is, and lost on a takeover, after which the
// first victims are chosen by their last writes alone.
//
// Evictions are journaled in records of their own (recEvict), after the
// write's: replay removes what the owner removed, whatever it would sample.

// evictSamples is how many entries are drawn to choose each victim: Redis
// draws 5 by default and finds 10 close to true LRU.
const evictSamples = 16

// evictBudget bounds the entries one write evicts, which one transaction
// holds: a bound lowered far below a map's size is reached over the
// following writes.
const evictBudget = 64

// bound is what the store keeps of a bounded map.
type bound struct {
	bytes int64 // of the map's keys and values; -1 until a bound by bytes needs it
	// recent and older map a key's hash to the store's rev when a process
	// last read it; recent becomes older once it holds the map's size.
	recent, older map[uint64]uint64
}

// boundOf returns the bound of a map, made if it has none.
func (s *Store) boundOf(mapName string) *bound {
	b := s.bounds[mapName]
	if b == nil {
		b = &bound{bytes: -1, recent: make(map[uint64]uint64)}
		s.bounds[mapName] = b
	}
	return b
}

// countBytes adds n to the bytes of a bounded map, if they are counted.
func (s *Store) countBytes(mapName string, n int) {
	if b := s.bounds[mapName]; b != nil && b.bytes >= 0 {
		b.bytes += int64(n)
	}
}

// lastUse returns when the entry of key, of version, was last used.
func (s *Store) lastUse(b *bound, key []byte, version uint64) uint64 {
	h := maphash.Bytes(s.seed, key)
	read, ok := b.recent[h]
	if !ok {
		read = b.older[h]
	}
	return max(version, read)
}

// use records a read of the key of hash h (s.seed's) in a bounded map, of
// generation entries.
func (s *Store) use(b *bound, h uint64, generation int) {
	b.recent[h] = s.rev
	if len(b.recent) >= generation {
		b.older, b.recent = b.recent, make(map[uint64]uint64, generation)
	}
}

// generation is how many reads of a map a bound remembers in each of its
// two generations.
func (s *Store) generation(mapName string) int { return max(s.mapLen(mapName), 1024) }

// touch records the reads of a bounded map's keys that a process reports.
// A map that does not exist gets no bound: a client naming maps at random
// would make the store keep one for each.
func (s *Store) touch(req *transport.Request, resp transport.Response) (transport.Response, bool) {
	if _, ok := s.mapSpace(req.Name); !ok {
		return resp, false
	}
	b, generation := s.boundOf(req.Name), s.generation(req.Name)
	err := transport.EachTouched(req.Value, func(key []byte) { s.use(b, maphash.Bytes(s.seed, key), generation) })
	if err != nil {
		return fail(resp, transport.StatusBadRequest, err.Error())
	}
	return resp, false
}

// bounded does what a request that carries a bound needs once it is done:
// a read of an entry records its use, a write evicts.
func (s *Store) bounded(req *transport.Request, resp transport.Response, now int64) {
	if req.MaxEntries == 0 && req.MaxBytes == 0 {
		return
	}
	switch req.Op {
	case transport.OpLoad, transport.OpLoadOrStore, transport.OpCompute:
		if resp.Found {
			s.use(s.boundOf(req.Name), maphash.String(s.seed, req.Key), s.generation(req.Name))
		}
	}
	if req.Op.Mutates() && req.Op != transport.OpCompute {
		s.evict(req, now)
	}
}

// evict brings the map that req wrote within req's bound, sparing req.Key,
// and journals what it evicted.
func (s *Store) evict(req *transport.Request, now int64) {
	b := s.boundOf(req.Name)
	if req.MaxBytes != 0 && b.bytes < 0 {
		b.bytes = 0
		if sp, ok := s.mapSpace(req.Name); ok {
			for k, e := range s.txn().All(sp) {
				b.bytes += int64(len(k) + len(e.Value))
			}
		}
	}
	victims := s.victims[:0]
	for len(victims) < evictBudget {
		sp, ok := s.mapSpace(req.Name)
		over := ok && (req.MaxEntries != 0 && uint64(s.txn().Len(sp)) > req.MaxEntries ||
			req.MaxBytes != 0 && b.bytes > int64(req.MaxBytes))
		if !over {
			break
		}
		victim, found := s.victim(sp, b, req.Key)
		if !found {
			break // only the entry written is left: it stays, whatever its size
		}
		s.removeAs(req.Name, victim, Evicted)
		victims = append(victims, victim)
	}
	s.victims = victims[:0]
	if len(victims) == 0 {
		return
	}
	s.evictions += uint64(len(victims))
	if !s.persist.locksOnly {
		s.journal(evictRecord(s.scratch[:0], now, req.Name, victims))
	}
}

// victim returns the least recently used of some entries of sp drawn at
// random, other than keep's.
func (s *Store) victim(sp table.Space, b *bound, keep string) (key string, found bool) {
	var oldest uint64
	for k, e := range s.txn().Sample(sp, rand.Uint64(), evictSamples) {
		if string(k) == keep {
			continue
		}
		if use := s.lastUse(b, k, e.Version); !found || use < oldest {
			key, oldest, found = string(k), use, true
		}
	}
	return key, found
}

func evictRecord(b []byte, now int64, mapName string, keys []string) []byte {
	b = append(b, recEvict)
	b = binary.AppendVarint(b, now)
	b = wire.AppendString(b, mapName)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = wire.AppendString(b, k)
	}
	return b
}
