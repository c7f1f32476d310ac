package sharedstate

import (
	"encoding/binary"

	"github.com/sharedstate/sharedstate/internal/wire"
)

// process identifies a client's process beyond its id, which the system
// reuses: where the system tells (Linux), by its start time too. The owner
// keeps a client's locks and saved answers while its process lives, and
// drops them once it has exited (see processOf and process.exited, one
// file per system).
type process struct {
	pid   int
	start uint64 // clock ticks after boot; 0 if unknown
}

// append appends p to a record, for readProcess.
func (p process) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(p.pid))
	return binary.AppendUvarint(b, p.start)
}

func readProcess(d *wire.Decoder) process {
	return process{pid: int(d.Uvarint()), start: d.Uvarint()}
}
