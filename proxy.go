package sharedstate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/sharedstate/sharedstate/internal/mailbox"
	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// proxy is a process's connection to the owner. Any number of goroutines
// share it: each request carries an id, and the reader hands each answer to
// the goroutine waiting for it.
type proxy struct {
	st       *embedded
	conn     *wire.Conn
	ownerPID int64
	owner    uint64 // the owner's client id

	// table is the owner's table, if this process could map it: reads
	// that it answers need no round trip (store.ReadTable). It stays
	// mapped until close; retired is set once the owner no longer writes
	// it.
	tableMu   sync.RWMutex
	table     *table.View
	tableFile *table.File
	retired   atomic.Bool

	// box is the connection's mailbox, nil without one; boxMu is held by
	// the one exchange using it, and by close to unmap it. out holds the
	// calls waiting for it.
	boxMu sync.Mutex
	box   *mailbox.Box
	out   outbox

	mu      sync.Mutex
	pending map[uint64]chan transport.Response
	leaving bool          // the owner said it is closing: send nothing more
	lostC   chan struct{} // closed when the connection fails or the owner has left
	done    chan struct{} // closed when the reader has stopped
}

// dialProxy connects to the owner's socket and joins the state.
func dialProxy(ctx context.Context, st *embedded) (*proxy, error) {
	nc, err := wire.Dial(ctx, st.sockPath)
	if err != nil {
		return nil, err
	}
	conn, hello, err := wire.Connect(ctx, nc, st.transportConfig())
	if err != nil {
		return nil, transportError(err)
	}
	p := &proxy{
		st:       st,
		conn:     conn,
		ownerPID: hello.PID,
		owner:    hello.Owner,
		pending:  make(map[uint64]chan transport.Response),
		lostC:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	// Without the table (a file system that cannot map it, another
	// owner's file in its place), every call goes to the owner.
	p.tableFile, p.table, _ = table.OpenView(st.dir, store.TableName(st.name), hello.Owner)
	if f := conn.Attached(); f != nil {
		if p.box, err = mailbox.Attach(f); err != nil {
			st.cfg.logger.Warn("sharedstate: the owner's mailbox is unusable; calls use the socket alone", "state", st.name, "owner", hello.PID, "err", err)
		}
		f.Close()
	}
	go p.readLoop(st)
	if p.box != nil {
		p.out.more, p.out.done = make(chan struct{}, 1), make(chan struct{})
		go p.carryLoop()
	}
	return p, nil
}

func (p *proxy) lost() <-chan struct{} { return p.lostC }

func (p *proxy) close() {
	p.conn.Close()
	<-p.done
	if p.out.done != nil {
		<-p.out.done
	}
	p.boxMu.Lock()
	if p.box != nil {
		p.box.Close()
		p.box = nil
	}
	p.boxMu.Unlock()
	p.tableMu.Lock()
	defer p.tableMu.Unlock()
	if p.tableFile != nil {
		p.tableFile.Close()
		p.table, p.tableFile = nil, nil
	}
}

// readTable answers req from the owner's table, if it can.
func (p *proxy) readTable(req *transport.Request) (transport.Response, bool) {
	if p.retired.Load() {
		return transport.Response{}, false
	}
	select {
	case <-p.lostC:
		return transport.Response{}, false // a new owner may write elsewhere already
	default:
	}
	p.tableMu.RLock()
	defer p.tableMu.RUnlock()
	if p.table == nil {
		return transport.Response{}, false
	}
	resp, ok, err := store.ReadTable(p.table, req)
	if errors.Is(err, table.ErrRetired) {
		p.retired.Store(true)
	}
	if ok && resp.Found && (req.MaxEntries != 0 || req.MaxBytes != 0) {
		p.st.touched(req.Name, req.Key) // a read the owner's evictions must know of
	}
	return resp, ok
}

func (p *proxy) readLoop(st *embedded) {
	defer close(p.done)
	defer close(p.lostC)
	var resp transport.Response
	var ev wire.Event
	for {
		body, err := p.conn.Recv()
		if err == nil && wire.KindOf(body) == wire.KindEvent {
			if err = ev.Decode(body); err == nil {
				st.subs.deliver(ev.Channel, ev.Data)
				continue
			}
		}
		if err == nil && wire.KindOf(body) != wire.KindResponse {
			err = fmt.Errorf("%w: unexpected message kind %d", wire.ErrMalformed, wire.KindOf(body))
		}
		if err == nil {
			err = (*wire.Response)(&resp).Decode(body)
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				st.cfg.logger.Debug("sharedstate: connection to owner ended", "state", st.name, "owner", p.ownerPID, "err", err)
			}
			p.conn.Close()
			return
		}
		ch, done := p.settle(resp.ID, resp.ID == 0 && resp.Status == transport.StatusShuttingDown)
		if ch != nil {
			ch <- resp // buffered: never blocks
		}
		if done {
			return
		}
	}
}

// answerChans are the channels a call waits on for its answer, reused
// once the call has taken the answer from one, or has taken one back from
// its pending requests unanswered: a channel any other goroutine may still
// send on is left to the collector.
var answerChans = sync.Pool{New: func() any { return make(chan transport.Response, 1) }}

func (p *proxy) do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	if resp, ok := p.readTable(req); ok {
		return resp, nil
	}
	ch := answerChans.Get().(chan transport.Response)
	p.mu.Lock()
	if p.leaving {
		p.mu.Unlock()
		answerChans.Put(ch)
		return transport.Response{}, errNotSent
	}
	p.pending[req.ID] = ch
	p.mu.Unlock()
	req.Ack = p.st.acks.low()
	resp, sent, answered := p.mailboxed(req)
	if answered {
		if settled, _ := p.settle(req.ID, false); settled == ch {
			answerChans.Put(ch) // nobody else took it, so nobody sends on it
		}
		return resp, nil
	}
	if sent {
		return p.await(ctx, req.ID, ch)
	}
	if err := p.conn.Send((*wire.Request)(req)); err != nil {
		p.forget(req.ID)
		if errors.Is(err, wire.ErrFrameTooLarge) {
			return transport.Response{}, fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		return transport.Response{}, errNotSent
	}
	return p.await(ctx, req.ID, ch)
}

// await waits for the answer to request id on the socket.
func (p *proxy) await(ctx context.Context, id uint64, ch chan transport.Response) (transport.Response, error) {
	select {
	case resp := <-ch:
		answerChans.Put(ch) // its one answer came: empty, and nobody holds it
		return resp, nil
	case <-p.lostC:
		p.forget(id)
		return transport.Response{}, errOwnerLost
	case <-ctx.Done():
		p.forget(id)
		return transport.Response{}, ctx.Err()
	}
}

// settle removes request id from those pending, and returns the channel
// its caller waits on; leaving says the owner announced it is closing. It
// reports whether the connection is done with: the owner is leaving and
// every request was answered, so this side closes it and the owner may go.
func (p *proxy) settle(id uint64, leaving bool) (chan transport.Response, bool) {
	p.mu.Lock()
	p.leaving = p.leaving || leaving
	ch := p.pending[id]
	delete(p.pending, id)
	done := p.leaving && len(p.pending) == 0
	p.mu.Unlock()
	if done {
		p.conn.Close()
	}
	return ch, done
}

// leave tells the owner that this State is closing, so that it releases
// the State's locks at once instead of keeping them for a reconnection.
func (p *proxy) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	p.do(ctx, &transport.Request{ID: p.st.acks.next(), Op: transport.OpLeave})
}

func (p *proxy) forget(id uint64) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}
