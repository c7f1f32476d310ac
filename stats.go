package sharedstate

import (
	"context"
	"fmt"
	"time"

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
}

// Stats returns statistics from the state's owner.
func (s *State) Stats(ctx context.Context) (Stats, error) {
	resp, err := s.do(ctx, transport.Request{Op: transport.OpStats, Name: "stats"})
	if err != nil {
		return Stats{}, fmt.Errorf("sharedstate: stats: %w", err)
	}
	var st Stats
	for _, e := range resp.Entries {
		v := e.Version
		switch e.Key {
		case "owner_pid":
			st.OwnerPID = int(v)
		case "owner_since":
			st.OwnerSince = time.Unix(0, int64(v))
		case "clients":
			st.Clients = int(v)
		case "durability":
			st.Durability = Durability(v)
		case "counters":
			st.Counters = int(v)
		case "maps":
			st.Maps = int(v)
		case "entries":
			st.Entries = int(v)
		case "bytes":
			st.Bytes = int64(v)
		case "locks":
			st.Locks = int(v)
		case "ops":
			st.Ops = v
		case "saved_answers":
			st.SavedAnswers = int(v)
		case "terms":
			st.Terms = v
		case "journal_bytes":
			st.JournalBytes = int64(v)
		}
	}
	return st, nil
}

// Kind is a kind of named object in a state, for Names.
type Kind int

// Kinds of named objects.
const (
	KindCounter Kind = listCounters // size: the counter's value
	KindMap     Kind = listMaps     // size: the number of entries
	KindLock    Kind = listLocks    // size: 0 if free, else non-zero
)

// Names calls fn with each name of the given kind in the state, in order,
// and a size that depends on the kind, until fn returns false.
func (s *State) Names(ctx context.Context, kind Kind, fn func(name string, size int64) bool) error {
	after := ""
	for {
		resp, err := s.do(ctx, transport.Request{Op: transport.OpList, Name: "names", Int: int64(kind), Key: after, Limit: rangePage})
		if err != nil {
			return fmt.Errorf("sharedstate: names: %w", err)
		}
		for _, e := range resp.Entries {
			if !fn(e.Key, int64(e.Version)) {
				return nil
			}
			after = e.Key
		}
		if !resp.Found {
			return nil
		}
	}
}
