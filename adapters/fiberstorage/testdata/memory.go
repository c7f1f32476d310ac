// This file stands in for the memory storage of Fiber's
// internal/storage/memory while Fiber's middleware tests run (TestUpstream
// runs them with sharedstatetest.RunUpstream): memory.New, the storage of
// the session and idempotency middleware when none is configured and the one
// Fiber's limiter and cache tests configure, returns a fiberstorage.Storage,
// reached through a proxy of the state that the process running
// TestUpstream owns. Each storage gets a map of its own, as each memory
// storage has its own entries.
package memory

import (
	"fmt"
	"sync/atomic"

	"github.com/sharedstate/sharedstate/adapters/fiberstorage"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

type Storage = fiberstorage.Storage

var storages atomic.Int64

func New(...Config) *Storage {
	return fiberstorage.New(sharedstatetest.UpstreamProxy(), fmt.Sprintf("storage-%d", storages.Add(1)))
}
