//go:build !amd64

package table

import "sync/atomic"

var fenceWord atomic.Uint64

// fence orders a read's loads before the sequence number's second load: an
// atomic read-modify-write is a full barrier where loads may pass an
// acquiring load (ARM's LDAR), as Linux's smp_rmb in read_seqcount_retry.
func fence() { fenceWord.Add(0) }
