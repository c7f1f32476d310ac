package store

import (
	"encoding/binary"

	"github.com/sharedstate/sharedstate/internal/wire"
)

// Process identifies a client's Process beyond its id, which the system
// reuses: where the system tells (Linux), by its start time too. The owner
// keeps a client's locks and saved answers while its Process lives, and
// drops them once it has exited (see ProcessOf and Process.Exited, one
// file per system).
type Process struct {
	pid   int
	start uint64 // clock ticks after boot; 0 if unknown
}

// append appends p to a record, for readProcess.
func (p Process) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(p.pid))
	return binary.AppendUvarint(b, p.start)
}

func readProcess(d *wire.Decoder) Process {
	return Process{pid: int(d.Uvarint()), start: d.Uvarint()}
}
