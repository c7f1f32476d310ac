package wire

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestListen(t *testing.T) {
	path := sockPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket with 0600", fi.Mode())
	}

	// Closing must leave the path alone: by then it may be a successor's.
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("after Close: %v; the socket file must stay", err)
	}

	// The file left behind is stale, as after a crash; Listen replaces it.
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatalf("Dial after replacing a stale socket: %v", err)
	}
	nc.Close()
}

func TestListenMissingDir(t *testing.T) {
	if ln, err := Listen(filepath.Join(t.TempDir(), "no", "s")); err == nil {
		ln.Close()
		t.Error("Listen in a missing directory succeeded")
	}
}

func TestDialNoOwner(t *testing.T) {
	if nc, err := Dial(t.Context(), sockPath(t)); err == nil {
		nc.Close()
		t.Error("Dial with nothing listening succeeded")
	}
}

func TestPeerCred(t *testing.T) {
	client, server := unixPair(t)
	want := Cred{PID: os.Getpid(), UID: os.Getuid()}
	for _, c := range []struct {
		name string
		cred func() (Cred, error)
	}{
		{"client", func() (Cred, error) { return PeerCred(client) }},
		{"server", func() (Cred, error) { return PeerCred(server) }},
	} {
		got, err := c.cred()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != want {
			t.Errorf("%s: PeerCred = %+v, want %+v", c.name, got, want)
		}
	}
}
