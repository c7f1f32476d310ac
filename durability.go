package sharedstate

import "fmt"

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
