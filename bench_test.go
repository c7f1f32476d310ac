//go:build unix

package sharedstate_test

import (
	"context"
	"testing"

	"github.com/sharedstate/sharedstate"
)

// Go benchmarks of single operations; the comparison with Redis and the
// other peers lives in the bench module.

func BenchmarkOwnerAdd(b *testing.B) {
	st := open(b, b.TempDir(), "app")
	c := st.Counter("c")
	ctx := context.Background()
	for b.Loop() {
		c.Add(ctx, 1)
	}
}

func BenchmarkOwnerLoad(b *testing.B) {
	st := open(b, b.TempDir(), "app")
	m := sharedstate.NewMap[int64](st, "m")
	ctx := context.Background()
	m.Store(ctx, "k", 1)
	for b.Loop() {
		m.Load(ctx, "k")
	}
}

func BenchmarkProxyAdd(b *testing.B) {
	dir := b.TempDir()
	open(b, dir, "app")
	c := open(b, dir, "app").Counter("c")
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Add(ctx, 1)
		}
	})
}

func BenchmarkOwnerCounterLoad(b *testing.B) {
	st := open(b, b.TempDir(), "app")
	c := st.Counter("c")
	ctx := context.Background()
	for b.Loop() {
		c.Load(ctx)
	}
}

func BenchmarkProxyAddSerial(b *testing.B) {
	dir := b.TempDir()
	open(b, dir, "app")
	c := open(b, dir, "app").Counter("c")
	ctx := context.Background()
	for b.Loop() {
		c.Add(ctx, 1)
	}
}

// BenchmarkProxyMapLoad reads a 64-byte value from the owner's table, as a
// proxy's Map.Load does.
func BenchmarkProxyMapLoad(b *testing.B) {
	dir := b.TempDir()
	open(b, dir, "app")
	m := sharedstate.NewMap[[]byte](open(b, dir, "app"), "m")
	ctx := context.Background()
	m.Store(ctx, "key:000000000042", make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		m.Load(ctx, "key:000000000042")
	}
}
