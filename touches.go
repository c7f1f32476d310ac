package sharedstate

import (
	"context"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// A proxy reads a bounded map's entries from the owner's table, so the
// owner never sees those reads, while its evictions must spare what is
// read. The proxy tells the owner which keys it read (OpTouch) from a
// goroutine of its own, so that no caller waits for it: the reads made
// while one batch is on its way go in the next, as a socket's writer
// gathers frames, so a busy proxy sends few batches and a quiet one tells
// the owner within a round trip. Reads are hints to an approximate LRU: a
// batch that cannot be sent is dropped, as are the reads made while too
// many wait.
const touchLimit = 4096 // keys waiting for the batch on its way

// touches holds the keys read from the table since the last batch.
type touches struct {
	mu       sync.Mutex
	keys     map[string][]byte // map name → OpTouch's Value
	n        int
	sending  bool // a goroutine sends batches until none is left
	closed   bool
	inFlight sync.WaitGroup
}

// touched notes a read of key in a bounded map, served from the table.
func (s *embedded) touched(mapName, key string) {
	t := &s.touches
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.n >= touchLimit {
		return
	}
	if t.keys == nil {
		t.keys = make(map[string][]byte)
	}
	t.keys[mapName] = transport.AppendTouched(t.keys[mapName], key)
	t.n++
	if !t.sending {
		t.sending = true
		t.inFlight.Add(1)
		go s.sendTouches()
	}
}

// sendTouches tells the owner of the reads noted, batch after batch, until
// none is left.
func (s *embedded) sendTouches() {
	t := &s.touches
	defer t.inFlight.Done()
	for {
		t.mu.Lock()
		batch := t.keys
		t.keys, t.n = nil, 0
		t.sending = len(batch) > 0
		t.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		for name, keys := range batch {
			if _, err := s.Do(ctx, &transport.Request{Op: transport.OpTouch, Name: name, Value: keys}); err != nil {
				break // the owner is away or the state closing: the reads are only hints
			}
		}
		cancel()
	}
}

// closeTouches waits for the batch on its way, and takes no more.
func (s *embedded) closeTouches() {
	s.touches.mu.Lock()
	s.touches.closed = true
	s.touches.mu.Unlock()
	s.touches.inFlight.Wait()
}
