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
		{"-requests", "0"},
		{"-ttl", "1ms"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

var answeredBy = regexp.MustCompile(`(?m)^  pid \d+ answered `)

func TestSessions(t *testing.T) {
	cfg, err := parseFlags([]string{"-workers", "3", "-requests", "30", "-ttl", "500ms"}, io.Discard)
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
	for _, want := range []string{
		"all saw ann, and counted 30 views\n",
		"logged out: GET /whoami answers 401\n",
		"expired: GET /whoami answers 401\n",
		"workers stopped cleanly\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// 30 connections between 3 workers: all on one is as likely as 29
	// tosses of a three-sided coin agreeing.
	if n := len(answeredBy.FindAllString(out.String(), -1)); n < 2 {
		t.Errorf("%d worker(s) answered, want the requests spread over several", n)
	}
}

func TestServe(t *testing.T) {
	cfg, err := parseFlags([]string{"-serve", "127.0.0.1:0", "-workers", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	preforktest.CheckServe(t, func(ctx context.Context, out io.Writer) error { return run(ctx, cfg, out) }, "/whoami", http.StatusUnauthorized)
}
