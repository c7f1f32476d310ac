// Package preforktest holds what the tests of the prefork demos share.
package preforktest

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/sharedstate/sharedstate/internal/prefork"
)

// TestMain is the TestMain of a demo's tests. The demo starts its workers
// by running its own executable again, which under go test is the test
// binary: started as a worker, it runs serve instead of the tests.
func TestMain(m *testing.M, serve func(context.Context, *slog.Logger) error) {
	if prefork.IsWorker() {
		os.Exit(prefork.RunWorker(serve))
	}
	os.Exit(m.Run())
}
