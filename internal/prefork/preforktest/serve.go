package preforktest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Output is what a demo printed so far; it is safe for a writer and a
// reader at once.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Await waits until the output matches re, and returns the first match's
// submatches.
func (o *Output) Await(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a bound for a hung demo, not a timing assertion
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(o.String()); m != nil {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the demo did not print %v within a minute; output:\n%s", re, o.String())
	return nil
}

var serving = regexp.MustCompile(`workers \(pids ([\d ]+)\) serving http://(\S+)\n`)

// Serve runs a demo's -serve mode, run, with sharedstate's default
// directory in a temporary one, and returns once the demo serves: its
// address, its workers' pids, its output, and a function that stops it as
// Ctrl-C does and returns run's error.
func Serve(t *testing.T, run func(ctx context.Context, out io.Writer) error) (addr string, pids []string, out *Output, stop func() error) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	out = new(Output)
	done := make(chan error, 1)
	go func() { done <- run(ctx, out) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	for {
		if m := serving.FindStringSubmatch(out.String()); m != nil {
			return m[2], strings.Fields(m[1]), out, stop
		}
		select {
		case err := <-done:
			done <- err // for stop
			t.Fatalf("the demo ended before serving: %v; output:\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Get makes a GET request over a new connection and returns the status
// and the body.
func Get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// CheckServe checks a demo's -serve mode, run: it serves, answers GET path
// with status want, and ends without error when interrupted.
func CheckServe(t *testing.T, run func(ctx context.Context, out io.Writer) error, path string, want int) {
	t.Helper()
	addr, _, out, stop := Serve(t, run)
	if code, body := Get(t, "http://"+addr+path); code != want {
		t.Errorf("GET %s: %d %s; want %d", path, code, body, want)
	}
	if err := stop(); err != nil {
		t.Errorf("run after Ctrl-C: %v; output:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "workers stopped; the state stays") {
		t.Errorf("output after Ctrl-C:\n%s", out.String())
	}
}
