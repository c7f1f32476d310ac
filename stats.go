package sharedstate

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// Stats describes a state as its owner sees it.
type Stats struct {
	OwnerPID   int       // the owner's process id
	OwnerSince time.Time // when it became the owner
	Clients    int       // processes connected to the owner, besides itself
	Durability Durability
	Counters   int
	Maps       int
	Entries    int    // entries in all maps
	Bytes      int64  // bytes of map names, keys and values
	Locks      int    // locks ever used
	Ops        uint64 // operations the owner has applied since it became the owner
	// SavedAnswers counts the answers kept for writes whose clients may
	// not have received them and may retry: bounded by the writes in
	// flight of the processes alive.
	SavedAnswers int
	Terms        uint64 // owners the state has had: 1 + takeovers and restarts
	JournalBytes int64  // the journal's length, before the next compaction
	// Evictions counts the entries bounded maps evicted (WithMaxEntries,
	// WithMaxBytes) since the owner became the owner.
	Evictions uint64
}

// Stats returns statistics from the state's owner. An engine that keeps
// none (Redis) answers with ErrUnsupported.
func (s *State) Stats(ctx context.Context) (Stats, error) {
	resp, err := s.do(ctx, transport.Request{Op: transport.OpStats})
	if err == nil && resp.Stats == nil {
		err = fmt.Errorf("%w: no statistics in the answer", ErrUnsupported)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("sharedstate: stats: %w", err)
	}
	st := resp.Stats
	return Stats{
		OwnerPID: int(st.OwnerPID), OwnerSince: time.Unix(0, st.OwnerSince), Clients: int(st.Clients),
		Durability: Durability(st.Durability), Counters: int(st.Counters), Maps: int(st.Maps),
		Entries: int(st.Entries), Bytes: st.Bytes, Locks: int(st.Locks), Ops: st.Ops,
		SavedAnswers: int(st.SavedAnswers), Terms: st.Terms, JournalBytes: st.JournalBytes, Evictions: st.Evictions,
	}, nil
}

// Kind is a kind of named object in a state, for Names.
type Kind int

// Kinds of named objects.
const (
	KindCounter Kind = transport.ListCounters // size: the counter's value
	KindMap     Kind = transport.ListMaps     // size: the number of entries
	KindLock    Kind = transport.ListLocks    // size: 0 if free, else non-zero
)

// Names calls fn with each name of the given kind in the state, in order,
// and a size that depends on the kind, until fn returns false.
func (s *State) Names(ctx context.Context, kind Kind, fn func(name string, size int64) bool) error {
	err := s.list(ctx, int64(kind), func(e transport.Entry) bool { return fn(e.Key, int64(e.Version)) })
	if err != nil {
		return fmt.Errorf("sharedstate: names: %w", err)
	}
	return nil
}

// LockInfo describes one of a state's locks, for Locks.
type LockInfo struct {
	Name  string
	Held  bool
	PID   int       // the holding process's id, if held (0 if unknown)
	Token uint64    // the latest fencing token given out for the lock
	Since time.Time // when the holder got the lock, if held
}

// Locks calls fn with each lock the state has used, in name order, until fn
// returns false: who holds it, with which token, since when. It is for
// inspection: by the time fn runs, the lock may have changed hands. The
// claims of LoadOrCompute's computations in progress are locks too, which
// Stats.Locks counts while they last, but neither Locks nor Names lists.
func (s *State) Locks(ctx context.Context, fn func(LockInfo) bool) error {
	var bad error
	err := s.list(ctx, transport.ListHolders, func(e transport.Entry) bool {
		info := LockInfo{Name: e.Key, Token: e.Version, Held: len(e.Value) > 0}
		if info.Held {
			d := wire.NewDecoder(e.Value)
			info.PID, info.Since = int(d.Uvarint()), time.Unix(0, d.Varint())
			if err := d.Finish(); err != nil {
				bad = fmt.Errorf("malformed answer for lock %q: %w", e.Key, err)
				return false
			}
		}
		return fn(info)
	})
	err = cmp.Or(err, bad)
	if err != nil {
		return fmt.Errorf("sharedstate: locks: %w", err)
	}
	return nil
}

// list calls fn with the names of one kind, a page at a time, until fn
// returns false.
func (s *State) list(ctx context.Context, kind int64, fn func(transport.Entry) bool) error {
	after := ""
	for {
		resp, err := s.do(ctx, transport.Request{Op: transport.OpList, Int: kind, Key: after, Limit: rangePage})
		if err != nil {
			return err
		}
		for _, e := range resp.Entries {
			if !fn(e) {
				return nil
			}
			after = e.Key
		}
		if !resp.Found {
			return nil
		}
	}
}
