//go:build unix

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/prefork"
)

// argsEnv carries the demo's arguments when this test binary runs as the
// demo: as its master, started by TestPrefork, or as a child, started by
// Fiber with the master's arguments and environment.
const argsEnv = "FIBER_PREFORK_TEST_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(argsEnv); ok {
		os.Exit(realMain(strings.Fields(args), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-workers", "0"},
		{"-limit", "0"},
		{"-window", "10ms"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

var pidRE = regexp.MustCompile(`pid (\d+)`)

// get sends a GET over a new connection, so that the kernel picks a child
// afresh, and returns the status, the pid in the body, and the body.
func get(t *testing.T, client *http.Client, url, cookie string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET %s: 429 without Retry-After", url)
	}
	var pid string
	if m := pidRE.FindSubmatch(body); m != nil {
		pid = string(m[1])
	}
	return resp.StatusCode, pid, string(body)
}

func TestPrefork(t *testing.T) {
	const workers, limit = 3, 5
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// Hold the port in an SO_REUSEPORT group until the children have
	// joined it, so that nothing else takes it; then leave, so that no
	// connection is queued where nobody accepts.
	reserved, err := prefork.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reserved.Close()
	addr := reserved.Addr().String()

	master := exec.CommandContext(ctx, os.Args[0])
	master.Env = append(os.Environ(), argsEnv+"=-addr "+addr+" -workers 3 -limit 5 -window 1m -state fiber-prefork-test -dir "+t.TempDir())
	master.Stderr = os.Stderr
	d, err := startDemo(t, master)
	if err != nil {
		t.Fatal(err)
	}
	for range workers {
		select {
		case <-d.ready:
		case <-d.done:
			t.Fatal("the demo exited before its children were ready")
		case <-ctx.Done():
			t.Fatal("timed out waiting for the children")
		}
	}
	reserved.Close()

	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

	// The limit: exactly 5 of 12 requests, whichever child each reaches.
	var ok, limited int
	for range 12 {
		switch code, _, body := get(t, client, base+"/", ""); code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("GET /: %d %s", code, body)
		}
	}
	if ok != limit || limited != 12-limit {
		t.Errorf("%d allowed and %d limited, want %d and %d: the children do not share the limit", ok, limited, limit, 12-limit)
	}
	if _, _, hits := get(t, client, base+"/hits", ""); hits != "5" {
		t.Errorf("GET /hits = %q, want 5", hits)
	}

	// The session: logged in on one child, known to all.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login?user=ann", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "session_id" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("login set no session cookie: %v", resp.Header)
	}
	pids := map[string]bool{}
	for range 30 {
		code, pid, body := get(t, client, base+"/whoami", cookie)
		if code != http.StatusOK || !strings.HasPrefix(body, "ann ") {
			t.Errorf("GET /whoami on pid %s: %d %q, want ann", pid, code, body)
		}
		pids[pid] = true
	}
	// 30 connections between 3 children: all on one is as likely as 29
	// tosses of a three-sided coin agreeing.
	if len(pids) < 2 {
		t.Errorf("only pids %v answered, want the load spread over several children", pids)
	}

	// The master asks its children to shut down, and exits cleanly once
	// one has.
	if err := master.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := master.Wait(); err != nil {
		t.Errorf("master: %v", err)
	}
}

// demo is the demo running as a subprocess.
type demo struct {
	ready chan int      // receives the pid of each child once it serves
	done  chan struct{} // closed once the output has ended
	out   strings.Builder
}

// startDemo starts cmd, the demo's master, reads its output, and makes sure
// at cleanup that it and its children are gone and logs the output.
func startDemo(t *testing.T, cmd *exec.Cmd) (*demo, error) {
	// The master's children write to its standard output too.
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &demo{ready: make(chan int, 100), done: make(chan struct{})}
	var (
		mu       sync.Mutex
		children []int
	)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.out.WriteString(sc.Text() + "\n")
			var pid int
			if _, err := fmt.Sscanf(sc.Text(), "child pid %d:", &pid); err == nil {
				mu.Lock()
				children = append(children, pid)
				mu.Unlock()
				d.ready <- pid
			}
		}
	}()
	t.Cleanup(func() {
		// If the test failed before stopping the demo, killing the
		// master is not enough: a Fiber child notices its master's
		// death only by polling, and holds the output open until then.
		if cmd.ProcessState == nil { // not stopped and waited for
			cmd.Process.Kill()
			mu.Lock()
			for _, pid := range children {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			mu.Unlock()
		}
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			t.Errorf("the demo's output has not ended 5 s after killing it")
			return // the reader may still write d.out
		}
		t.Logf("demo output:\n%s", d.out.String())
	})
	return d, nil
}
