// This file stands in for scs's memstore package while scs's own tests run
// (TestUpstream runs them with go test -overlay): the default store of
// scs.New becomes a scsstore.Store, reached through a proxy of the state
// that the process running TestUpstream owns. Each store gets a map of its
// own, as each memstore has its own sessions. It is written in the Go of
// scs's go.mod (1.12): no generics.
package memstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/scsstore"
)

type MemStore = scsstore.Store

var (
	opened sync.Once
	proxy  *sharedstate.State
	stores atomic.Int64
)

func New() *MemStore {
	opened.Do(openProxy)
	return scsstore.New(proxy, fmt.Sprintf("sessions-%d", stores.Add(1)))
}

func NewWithCleanupInterval(time.Duration) *MemStore { return New() }

func openProxy() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, os.Getenv("SCSSTORE_STATE"),
		sharedstate.WithDir(os.Getenv("SCSSTORE_DIR")),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	if st.IsOwner() {
		panic("scs's tests own the state: they must reach it through a proxy")
	}
	proxy = st
}
