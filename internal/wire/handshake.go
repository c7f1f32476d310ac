package wire

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// handshakeMaxFrame caps frames during the handshake, before the peer is known.
const handshakeMaxFrame = 1 << 10

// Config is one side's part in a handshake.
type Config struct {
	// UID is the only user id accepted at the other end of the socket.
	UID int
	// PID is this process's id, told to the peer for its logs.
	PID int
	// ID is this process's client id: a client joins with it, and an owner
	// tells it in its Hello.
	ID uint64
	// Secret, when set, must be known to both sides: the client proves it
	// with an HMAC of a fresh challenge.
	Secret []byte
	// MaxFrame caps the frames this side reads once the connection is
	// established. Each side tells the other its cap, and sends no frame
	// over the lower of the two.
	MaxFrame int
	// Timeout bounds a handshake that ctx does not bound; 0 means
	// DefaultHandshakeTimeout.
	Timeout time.Duration
	// Attach, for an owner, is a file handed to the client with the
	// Welcome (SCM_RIGHTS): its mailbox. The client finds it with
	// Conn.Attached; one that does not look for it never has it.
	Attach *os.File
}

// DefaultHandshakeTimeout bounds a handshake when Config.Timeout is 0.
const DefaultHandshakeTimeout = 5 * time.Second

func (c Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultHandshakeTimeout
	}
	return c.Timeout
}

// Accept runs the owner's side of the handshake on a freshly accepted
// connection. On success it returns the established Conn and the client's Join.
// On failure the error is a *Refuse saying why, which was also sent to the
// peer when possible, and nc is closed.
func Accept(nc *net.UnixConn, cfg Config) (*Conn, *Join, error) {
	conn, join, err := accept(nc, cfg)
	if err != nil {
		var r *Refuse
		if errors.As(err, &r) {
			nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			nc.Write(r.AppendFrame(nil))
		}
		nc.Close()
		return nil, nil, err
	}
	return conn, join, nil
}

func accept(nc *net.UnixConn, cfg Config) (*Conn, *Join, error) {
	cred, err := PeerCred(nc)
	if err != nil {
		return nil, nil, err
	}
	if cred.UID != cfg.UID {
		return nil, nil, &Refuse{Status: transport.StatusUnauthorized,
			Msg: fmt.Sprintf("pid %d runs as uid %d; only uid %d may connect", cred.PID, cred.UID, cfg.UID)}
	}
	hello := Hello{Version: Version, PID: int64(cfg.PID), MaxFrame: uint64(cfg.MaxFrame), Owner: cfg.ID}
	if len(cfg.Secret) > 0 {
		hello.Nonce = make([]byte, 32)
		rand.Read(hello.Nonce)
	}
	nc.SetDeadline(time.Now().Add(cfg.timeout()))
	if _, err := nc.Write(hello.AppendFrame(nil)); err != nil {
		return nil, nil, err
	}
	fr := NewFrameReader(nc, handshakeMaxFrame)
	body, err := fr.Next()
	if err != nil {
		return nil, nil, fmt.Errorf("reading join from pid %d: %w", cred.PID, err)
	}
	var join Join
	if err := join.Decode(body); err != nil {
		// Another version may lay Join out differently, but always puts
		// its version first.
		v, n := binary.Uvarint(body[1:])
		if n <= 0 || v == Version || KindOf(body) != KindJoin {
			return nil, nil, fmt.Errorf("join from pid %d: %w", cred.PID, err)
		}
		join.Version = v
	}
	if join.Version != Version {
		return nil, nil, &Refuse{Status: transport.StatusVersionMismatch,
			Msg: fmt.Sprintf("pid %d speaks protocol version %d; the owner (pid %d) speaks %d", cred.PID, join.Version, cfg.PID, Version)}
	}
	if len(cfg.Secret) > 0 && !hmac.Equal(join.MAC, mac(cfg.Secret, hello.Nonce, join.ClientID)) {
		return nil, nil, &Refuse{Status: transport.StatusUnauthorized,
			Msg: fmt.Sprintf("pid %d did not prove the shared secret", cred.PID)}
	}
	if join.MaxFrame < handshakeMaxFrame {
		return nil, nil, &Refuse{Status: transport.StatusBadRequest,
			Msg: fmt.Sprintf("pid %d reads frames of at most %d bytes; %d is the least allowed", cred.PID, join.MaxFrame, handshakeMaxFrame)}
	}
	join.PID = int64(cred.PID) // the kernel's word, not the peer's
	welcome := (&Welcome{}).AppendFrame(nil)
	if cfg.Attach != nil {
		err = writeWithFile(nc, welcome, cfg.Attach)
	} else {
		_, err = nc.Write(welcome)
	}
	if err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	fr.max = cfg.MaxFrame
	return newConn(nc, fr, sendCap(cfg.MaxFrame, join.MaxFrame)), &join, nil
}

// sendCap is the largest frame a side may send: no more than either side
// reads.
func sendCap(own int, peer uint64) int {
	return int(min(uint64(own), peer))
}

// Connect runs the client's side of the handshake on nc, joining as cfg.ID.
// On success it returns the established Conn and the owner's Hello; on
// failure nc is closed and the error is a *Refuse when either side refused.
func Connect(ctx context.Context, nc *net.UnixConn, cfg Config) (*Conn, *Hello, error) {
	conn, hello, err := connect(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return conn, hello, nil
}

func connect(ctx context.Context, nc *net.UnixConn, cfg Config) (_ *Conn, _ *Hello, err error) {
	cred, err := PeerCred(nc)
	if err != nil {
		return nil, nil, err
	}
	if cred.UID != cfg.UID {
		return nil, nil, &Refuse{Status: transport.StatusUnauthorized,
			Msg: fmt.Sprintf("the socket is served by pid %d as uid %d, not uid %d", cred.PID, cred.UID, cfg.UID)}
	}
	deadline := time.Now().Add(cfg.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()

	hr := newHandshakeReader(nc)
	defer func() {
		if f := hr.done(); f != nil && err != nil {
			f.Close()
		}
	}()
	fr := NewFrameReader(hr, handshakeMaxFrame)
	body, err := fr.Next()
	if err != nil {
		return nil, nil, fmt.Errorf("reading hello: %w", err)
	}
	if KindOf(body) == KindRefuse {
		return nil, nil, decodeRefuse(body)
	}
	var hello Hello
	if err := hello.Decode(body); err != nil {
		// A future version may lay Hello out differently, but always
		// puts its version first.
		if v, n := binary.Uvarint(body[1:]); n > 0 && v != Version {
			hello.Version = v
		} else {
			return nil, nil, fmt.Errorf("hello: %w", err)
		}
	}
	join := Join{Version: Version, ClientID: cfg.ID, PID: int64(cfg.PID), MaxFrame: uint64(cfg.MaxFrame)}
	if len(cfg.Secret) > 0 {
		join.MAC = mac(cfg.Secret, hello.Nonce, cfg.ID)
	}
	// The Join only lets an owner of another version log the mismatch: the
	// Hello already proved it, and an owner that closed without reading the
	// Join must not make it look like a transient failure.
	_, werr := nc.Write(join.AppendFrame(nil))
	if hello.Version != Version {
		return nil, nil, &Refuse{Status: transport.StatusVersionMismatch,
			Msg: fmt.Sprintf("the owner (pid %d) speaks protocol version %d; this process speaks %d", cred.PID, hello.Version, Version)}
	}
	if werr != nil {
		return nil, nil, werr
	}
	if body, err = fr.Next(); err != nil {
		return nil, nil, fmt.Errorf("reading welcome: %w", err)
	}
	if KindOf(body) == KindRefuse {
		return nil, nil, decodeRefuse(body)
	}
	if err := (&Welcome{}).Decode(body); err != nil {
		return nil, nil, err
	}
	if hello.MaxFrame < handshakeMaxFrame {
		return nil, nil, fmt.Errorf("%w: the owner reads frames of at most %d bytes", ErrMalformed, hello.MaxFrame)
	}
	hello.PID = int64(cred.PID)
	nc.SetDeadline(time.Time{})
	fr.max = cfg.MaxFrame
	conn := newConn(nc, fr, sendCap(cfg.MaxFrame, hello.MaxFrame))
	conn.attached = hr.done()
	return conn, &hello, nil
}

func decodeRefuse(body []byte) error {
	var r Refuse
	if err := r.Decode(body); err != nil {
		return err
	}
	return &r
}

func mac(secret, nonce []byte, clientID uint64) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write(nonce)
	h.Write(binary.BigEndian.AppendUint64(nil, clientID))
	return h.Sum(nil)
}
