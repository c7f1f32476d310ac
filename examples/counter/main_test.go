package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
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

// TestServe: with -serve the workers serve until interrupted, with the
// state in the default directory; a worker killed with SIGKILL is replaced,
// and the count carries on exactly.
func TestServe(t *testing.T) {
	cfg, err := parseFlags([]string{"-serve", "127.0.0.1:0", "-workers", "3", "-state", "serve-test"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr, pids, out, stop := preforktest.Serve(t, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) })
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	increment := func(n int) {
		t.Helper()
		for range n {
			if err := call(t.Context(), client, http.MethodPost, "http://"+addr+"/increment", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	increment(50)
	pid, _ := strconv.Atoi(pids[0])
	if p, err := os.FindProcess(pid); err != nil || p.Kill() != nil { // SIGKILL
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	out.Await(t, regexp.MustCompile(`worker pid `+pids[0]+` exited \(signal: killed\); pid \d+ serves in its place`))
	increment(50)
	var report countReply
	if err := call(t.Context(), client, http.MethodGet, "http://"+addr+"/report", &report); err != nil {
		t.Fatal(err)
	}
	if report.Count != 100 {
		t.Errorf("count %d after 100 increments and a worker killed", report.Count)
	}
	if err := stop(); err != nil {
		t.Errorf("run after Ctrl-C: %v; output:\n%s", err, out.String())
	}
	// The state stays, in the default directory, for the next run.
	states, err := sharedstate.States()
	if err != nil || len(states) != 1 || states[0].Name != "serve-test" {
		t.Errorf("States in the default directory = %+v, %v; want the demo's", states, err)
	}
	for _, want := range []string{"sharedstate watch count -state serve-test", "kill -9 " + pids[0], "Ctrl-C to stop"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
