package redisrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is a redis-server process.
type Server struct {
	dir    string
	port   int // 0: listening on a Unix socket in dir
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts redis-server in dir, on the loopback port (or, with port 0,
// only on a Unix socket in dir), without persistence unless args ask for it
// (later arguments win), and waits until it answers PING, or ctx ends. Its
// log is dir's redis.log.
func Start(ctx context.Context, dir string, port int, args ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not installed; on Debian or Ubuntu: apt-get install redis-server")
	}
	s := &Server{dir: dir, port: port, exited: make(chan struct{})}
	listen := []string{"--port", "0", "--unixsocket", s.Addr(), "--unixsocketperm", "700"}
	if port != 0 {
		listen = []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1"}
	}
	all := append(append(listen,
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", s.Log(),
	), args...)
	s.cmd = exec.Command(bin, all...)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	for !s.answers() {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("redis-server exited at start; its log:\n%s", s.logTail())
		case <-ctx.Done():
			s.Kill()
			return nil, fmt.Errorf("redis-server does not answer on %s (%w); its log:\n%s", s.Addr(), ctx.Err(), s.logTail())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return s, nil
}

// Listen returns where a server that Start runs in dir on port listens:
// network "tcp" or "unix" (as go-redis's Options.Network takes it), and
// addr, host:port or the Unix socket's path.
func Listen(dir string, port int) (network, addr string) {
	if port != 0 {
		return "tcp", "127.0.0.1:" + strconv.Itoa(port)
	}
	return "unix", filepath.Join(dir, "redis.sock")
}

// Network is "tcp" or "unix".
func (s *Server) Network() string {
	network, _ := Listen(s.dir, s.port)
	return network
}

// Addr is host:port, or the Unix socket's path.
func (s *Server) Addr() string {
	_, addr := Listen(s.dir, s.port)
	return addr
}

// Log is the path of the server's log file.
func (s *Server) Log() string { return filepath.Join(s.dir, "redis.log") }

// Kill ends the server at once, as a crash would.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Stop ends the server with SIGTERM (which, without persistence, saves
// nothing), or kills it if it takes more than 5 seconds.
func (s *Server) Stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.Kill()
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.Log())
	return string(b[max(len(b)-4096, 0):])
}

// answers reports whether the server answers PING (and not, say, LOADING).
func (s *Server) answers() bool {
	reply, err := s.do("PING")
	return err == nil && reply == "PONG"
}

// AwaitReplica waits until the server, a replica, has synced with its
// primary (INFO's master_link_status:up), or ctx ends.
func (s *Server) AwaitReplica(ctx context.Context) error {
	for {
		info, err := s.do("INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the replica on %s has not synced with its primary: %w", s.Addr(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// do sends one command and returns its reply: a simple or a bulk string.
func (s *Server) do(args ...string) (string, error) {
	c, err := net.DialTimeout(s.Network(), s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	req := "*" + strconv.Itoa(len(args)) + "\r\n"
	for _, a := range args {
		req += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("redisrun: bad reply %q", line)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(r, body); err != nil {
			return "", err
		}
		return string(body[:n]), nil
	}
	return "", fmt.Errorf("redisrun: %s", line)
}
