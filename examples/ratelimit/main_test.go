package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/prefork/preforktest"
)

func TestMain(m *testing.M) { preforktest.TestMain(m, serveWorker) }

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-workers", "0"},
		{"-limit", "0"},
		{"-window", "0s"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

var servedBy = regexp.MustCompile(`(?m)^  pid \d+: `)

func TestRateLimit(t *testing.T) {
	cfg, err := parseFlags([]string{"-workers", "3", "-limit", "40", "-window", "1h", "-requests", "300"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a bound for a hung run
	defer cancel()
	var out strings.Builder
	err = run(ctx, cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"GET /sliding × 300: 40 allowed, 260 refused", "workers stopped cleanly\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// 32 connections between 3 workers: if all of them landed on one,
	// the test would show nothing about sharing.
	if n := len(servedBy.FindAllString(out.String(), -1)); n < 4 {
		t.Errorf("%d worker lines for 2 endpoints, want the load spread over several workers", n)
	}
}

func TestServe(t *testing.T) {
	cfg, err := parseFlags([]string{"-serve", "127.0.0.1:0", "-workers", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	preforktest.CheckServe(t, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) }, "/fixed", http.StatusOK)
}
