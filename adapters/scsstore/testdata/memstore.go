// This file stands in for scs's memstore package while scs's own tests run
// (TestUpstream runs them with sharedstatetest.RunUpstream): the default
// store of scs.New becomes a scsstore.Store, reached through a proxy of the
// state that the process running TestUpstream owns. Each store gets a map
// of its own, as each memstore has its own sessions. It is written in the Go
// of scs's go.mod (1.12): no generics.
package memstore

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate/adapters/scsstore"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

type MemStore = scsstore.Store

var stores atomic.Int64

func New() *MemStore {
	return scsstore.New(sharedstatetest.UpstreamProxy(), fmt.Sprintf("sessions-%d", stores.Add(1)))
}

func NewWithCleanupInterval(time.Duration) *MemStore { return New() }
