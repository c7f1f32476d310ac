package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/prefork/preforktest"
)

func TestMain(m *testing.M) { preforktest.TestMain(m, serveWorker) }

func TestFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{workers: 4, requests: 10000, concurrency: 64, state: "counter-demo"}
	if cfg != want {
		t.Errorf("defaults = %+v, want %+v", cfg, want)
	}
	for _, args := range [][]string{
		{"-workers", "0"},
		{"-requests", "0"},
		{"-concurrency", "0"},
		{"-kill-owner", "-workers", "1"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

// runDemo runs the demo with args and returns its output.
func runDemo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// A bound for a hung run, not a timing assertion.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	err = run(ctx, cfg, &out)
	t.Logf("output:\n%s", out.String())
	return out.String(), err
}

var servedBy = regexp.MustCompile(`(?m)^  served by pid \d+ `)

func TestCounter(t *testing.T) {
	out, err := runDemo(t, "-workers", "3", "-requests", "2000", "-state", "counter-test")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{
		"succeeded (200): 2000\n",
		"final count: 2000 ",
		"workers stopped cleanly\n",
		"OK: count == requests\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// 64 connections between 3 workers: all on one is as likely as 63
	// tosses of a three-sided coin agreeing.
	if n := len(servedBy.FindAllString(out, -1)); n < 2 {
		t.Errorf("%d worker(s) served the requests, want the load spread over several", n)
	}
}

func TestKillOwner(t *testing.T) {
	// Requests the killed worker was serving may have been applied
	// without an answer, so the count may exceed the acknowledged ones;
	// it may never fall short of them.
	out, err := runDemo(t, "-workers", "3", "-requests", "2000", "-state", "counter-kill", "-kill-owner")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"killed the owner, pid ", "workers stopped cleanly\n", "OK: count == acknowledged increments"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
