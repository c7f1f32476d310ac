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

var servedBy = regexp.MustCompile(`(?m)^  pid \d+ served `)

func TestPrefork(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // a bound for a hung run
	defer cancel()
	var out strings.Builder
	err := run(ctx, 3, 30, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{"visits: 30 in all, 30 of them yours\n", "workers stopped cleanly\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// 30 connections between 3 workers: all on one is as likely as 29
	// tosses of a three-sided coin agreeing.
	if n := len(servedBy.FindAllString(out.String(), -1)); n < 2 {
		t.Errorf("%d worker(s) served the visits, want them spread over several", n)
	}
}

func TestServe(t *testing.T) {
	preforktest.CheckServe(t, func(ctx context.Context, out io.Writer) error { return serveUntilDone(ctx, 2, "127.0.0.1:0", out) }, "/", http.StatusOK)
}
