//go:build unix

package redisstate

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sharedstate/sharedstate/internal/redisrun"
)

// server is a redis-server that a test runs on a Unix socket in a temporary
// directory (or on a loopback port: a Cluster's node), without persistence
// unless args ask for it.
type server struct {
	t    testing.TB
	path string // of redis-server
	dir  string
	port int // 0: on a Unix socket in dir
	args []string
	run  *redisrun.Server // while it runs
}

// startServer starts a redis-server, stopped when the test ends. Without
// redis-server the test is skipped, or fails in CI (env CI set), where
// scripts/redis.sh has installed it.
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	s := newServer(t, 0, args)
	s.start()
	return s
}

// newServer prepares a server on port (0: on a Unix socket), stopped and
// removed when the test ends.
func newServer(t testing.TB, port int, args []string) *server {
	t.Helper()
	path := lookPath(t, "redis-server")
	// Not t.TempDir: its path can be too long for a Unix socket.
	dir, err := os.MkdirTemp("", "redisstate")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, path: path, dir: dir, port: port, args: args}
	t.Cleanup(func() {
		s.kill()
		os.RemoveAll(dir)
	})
	return s
}

// lookPath finds a Redis program. Without it the test is skipped, or fails
// in CI (env CI set), where scripts/redis.sh has installed it.
func lookPath(t testing.TB, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed: scripts/test.sh installs it with scripts/redis.sh", program)
		}
		t.Skipf("%s is not installed (bash scripts/redis.sh installs it)", program)
	}
	return path
}

// start starts the server (again, after kill: on the same files) and waits
// until it answers.
func (s *server) start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	run, err := redisrun.Start(ctx, s.dir, s.port, s.args...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.run = run
}

// kill stops the server at once, as a crash would.
func (s *server) kill() {
	if s.run != nil {
		s.run.Kill()
		s.run = nil
	}
}

func (s *server) network() string {
	network, _ := redisrun.Listen(s.dir, s.port)
	return network
}

func (s *server) addr() string {
	_, addr := redisrun.Listen(s.dir, s.port)
	return addr
}

func (s *server) options() *redis.Options {
	return &redis.Options{Network: s.network(), Addr: s.addr()}
}

// client returns a plain client, to look at the keys.
func (s *server) client() *redis.Client {
	c := redis.NewClient(s.options())
	s.t.Cleanup(func() { c.Close() })
	return c
}

// lossyProxy forwards connections to a server, and can lose one reply: the
// proxy closes the connection that carried the next script call, once
// Redis has answered it and before the answer reaches the client, as a
// network failure might.
type lossyProxy struct {
	sock string
	arm  atomic.Bool
}

func startLossyProxy(t testing.TB, srv *server) *lossyProxy {
	t.Helper()
	p := &lossyProxy{sock: filepath.Join(srv.dir, "proxy.sock")}
	l, err := net.Listen("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, srv.addr())
			}()
		}
	}()
	return p
}

func (p *lossyProxy) serve(c net.Conn, to string) {
	defer c.Close()
	r, err := net.Dial("unix", to)
	if err != nil {
		return
	}
	defer r.Close()
	var doomed atomic.Bool // a reply on this connection is to be lost
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				r.Close()
				return
			}
			if bytes.Contains(bytes.ToLower(buf[:n]), []byte("eval")) && p.arm.CompareAndSwap(true, false) {
				doomed.Store(true)
			}
			if _, err := r.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if err != nil || doomed.Load() {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}
