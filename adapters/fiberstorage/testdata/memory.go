// This file stands in for the memory storage of Fiber's
// internal/storage/memory while Fiber's middleware tests run (TestUpstream):
// memory.New, the storage of the session and idempotency middleware when
// none is configured and the one Fiber's limiter and cache tests configure,
// returns a fiberstorage.Storage, reached through a proxy of the state that
// the process running TestUpstream owns. Each storage gets a map of its
// own, as each memory storage has its own entries.
package memory

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/fiberstorage"
)

type Storage = fiberstorage.Storage

var (
	proxy    = sync.OnceValue(openProxy)
	storages atomic.Int64
)

func New(config ...Config) *Storage {
	return fiberstorage.New(proxy(), fmt.Sprintf("storage-%d", storages.Add(1)))
}

func openProxy() *sharedstate.State {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, os.Getenv("FIBERSTORAGE_STATE"),
		sharedstate.WithDir(os.Getenv("FIBERSTORAGE_DIR")),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	if st.IsOwner() {
		panic("Fiber's tests own the state: they must reach it through a proxy")
	}
	return st
}
