// Package table keeps the entries of a state — its counters and the entries
// of its maps — in one file that every process of the state maps: the
// owner writes it, and every process reads it without asking the owner.
//
// # One writer, many readers
//
// The owner is the only writer. It changes the file in transactions (Tx),
// one per operation of the state: a transaction writes new blocks into free
// space, which no reader can reach, then publishes everything at once by a
// list of 8-byte stores (its plan) into words readers do reach: index
// slots, counts, the allocator's stacks, a counter's value. While it applies
// a plan, the owner holds the table's sequence number odd (a seqlock, as
// Linux's timekeeping uses): a reader notes the sequence number, reads
// what it needs (copying any bytes it returns), and keeps what it read only
// if the number is even and unchanged. A reader never trusts the bytes
// before that check: every offset and length it follows is bounds-checked
// against the mapping, so a torn or a damaged table is a retry or an error
// (ErrCorrupt), never a read outside the mapping.
//
// # Crashes
//
// Before it applies a plan, the owner writes the plan into the header (the
// intent), which counts while the sequence number is odd. Every store of a
// plan sets a word to a value, none adds to one, so a new owner that finds
// the number odd applies the intent again, whole: an owner killed
// in the middle of a transaction leaves a table that the next one repairs
// in time independent of the table's size. Blocks written before the
// number went odd are unreachable and still free. The header's position in
// the owner's journal (Position), set by the plan of every operation, is
// where the table's contents end in the journal.
//
// The table is not durable on its own: it lives in the page cache, and
// survives its processes, not the machine. Its header records the boot it
// was written in, and a table from another boot is rebuilt from the
// journal and snapshot, which are (see internal/journal). A new owner in
// the same boot opens the table as it is, and replays only the journal's
// records after its position.
//
// # Snapshots
//
// The owner writes a snapshot of the table while it goes on changing it, by
// freezing it (Freeze): copy-on-write, word by word. Until Thaw, a commit
// keeps the first value of each word it changes (its pre-image, at the
// word's offset in an anonymous mapping) and sets the word's bit, and the
// blocks it frees stay allocated; the snapshot's reader reads a word, then
// its bit, and takes the pre-image if the bit is set. Neither waits for
// the other.
//
// # Owners
//
// The header names the owner that writes the table (Claim): a view is
// opened for one owner, and its reads fail with ErrRetired once another
// claims the table or the owner retires it (Retire), so that no process
// reads a table that a new owner no longer writes. The header also holds
// the owner's clock as an offset from the system's monotonic clock, which
// every process reads alike (Monotonic): readers compare the deadlines of
// entries with the store's time without asking the owner.
//
// # Layout
//
// The file is a header (64 KiB: constants, the sequence number, the
// journal position, the root namespace, the allocator's free stacks, the
// intent, of up to 3,700 stores) and an arena of
// blocks that are 8-byte aligned, allocated in size classes (multiples of 8
// bytes up to 512, then four per power of two). An entry's block is its
// lengths, its version, its deadline if it has one, its key (padded to 8
// bytes) and its value. A namespace is an open-addressing hash table
// (linear probing, tombstones, a salted hash) of slots that each hold an
// entry's offset and the top 24 bits of its key's hash, which also choose
// the slot a key is looked for first: growing a namespace of up to 1<<24
// slots moves each slot by its tag, reading no key. The root namespace is in
// the header; a key of the root can hold a namespace of its own in its
// value (a map, whose entries live in it). Words are in the host's byte
// order: the file never leaves the host.
//
// Readers map the file's whole reservation (Reserve bytes of address space)
// once; the owner grows the file inside it, so readers never remap.
package table
