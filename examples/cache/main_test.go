package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/prefork/preforktest"
)

func TestMain(m *testing.M) { preforktest.TestMain(m, serveWorker) }

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-workers", "0"},
		{"-max", "0"},
		{"-stampede", "0"},
		{"-upstream", "-1s"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

func TestCache(t *testing.T) {
	cfg, err := parseFlags([]string{"-workers", "3", "-max", "100", "-stampede", "300", "-requests", "3000", "-upstream", "50ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a bound for a hung run
	defer cancel()
	var out strings.Builder
	err = run(ctx, cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{
		"stampede: 300 concurrent requests for one cold item: 299 hits, 1 misses, 1 upstream calls",
		"OK: the cache holds 100 items, within its bound of 100",
		"workers stopped cleanly\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestServe(t *testing.T) {
	cfg, err := parseFlags([]string{"-serve", "127.0.0.1:0", "-workers", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	preforktest.CheckServe(t, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) }, "/item/1", http.StatusOK)
}
