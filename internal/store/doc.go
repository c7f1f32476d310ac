// Package store is the state as its owner keeps it: every counter, map and
// lock of one named state, in memory, changed only by Apply, one request at a
// time. Values are opaque bytes; the store reads none but the integers of
// Map.Add and the times of token buckets (MsgpackInt).
//
// The files, one concept each:
//
//   - store.go: Apply and the operations on counters and maps; the
//     store's clock, which expiries follow;
//   - data.go: the counters and maps' entries in the table (internal/table)
//     that every process maps, one transaction per operation, and the
//     reads a proxy answers from it (ReadTable); ranges.go: Range's pages
//     in key order over a table that keeps none; kept.go: the rest of the
//     store as the table keeps it too, for a new owner to adopt;
//   - locks.go: the lock table, its queues, fencing tokens, and what happens
//     to a holder's locks when its connection or process ends;
//   - channels.go: who subscribes to which channel (messages are not state,
//     and are not journaled);
//   - process.go: a client's process, told apart from a later one with the
//     same pid;
//   - replay.go: the journal's records and their replay;
//   - snapshot.go: compaction into a snapshot, written in the background
//     from the table frozen copy-on-write while operations go on, and
//     loading one;
//   - recovery.go: opening a store: adopting the last owner's table, or
//     rebuilding one from the files (Recover, Read), and what it needs to
//     keep journaling; repair.go: making a damaged state openable again.
//
// Apply depends only on the store, the request and the time, and the
// journal records all three, so replaying the journal on the latest
// snapshot rebuilds the store exactly: a new owner after a takeover has the
// state its predecessor acknowledged, with the answers to writes its clients
// may retry (exactly once). Each operation's transaction also records the
// journal's position after the operation's records, so that the table is
// the state at that position: a new owner of the same boot adopts it and
// replays only the records after it. The file formats are
// internal/journal's.
//
// A compaction holds up operations only in moments: the snapshot is the
// store as it was at one operation's end, read from the table frozen then
// (table.Frozen) and from the rest of the state recorded then; the records
// appended meanwhile are copied into the journal that replaces the old one,
// without the store's lock but for the last 64 KiB and the switch. Until the
// switch, the new snapshot and the old journal are a pair recovery reads:
// the old journal's records from the snapshot's End are what the snapshot
// lacks (follows).
package store
