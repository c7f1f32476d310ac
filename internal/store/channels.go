package store

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// ReservedPrefix starts the channels sharedstate uses itself (Map.Watch):
// no client publishes on them.
const ReservedPrefix = "\x00"

// WatchPrefix starts the channels that carry the changes of a map.
const WatchPrefix = ReservedPrefix + "watch/"

// channels is the owner's registry of which sessions subscribe to what.
type Channels struct {
	mu   sync.Mutex
	subs map[string]map[*Session]func(*wire.Event)
	// watched counts subscriptions to watch channels, so that a write to a
	// map nobody watches costs one atomic load.
	watched atomic.Int64
}

// Change is what became of an entry, the first byte of a watch message.
type Change byte

const (
	Written Change = iota
	Deleted        // deleted, expired or cleared
	Evicted        // taken out of a bounded map to make room
)

// publishChange tells the watchers of a map that an entry changed: the
// Change, then the key.
func (c *Channels) PublishChange(mapName, key string, change Change) {
	if c.watched.Load() == 0 {
		return
	}
	data := append(make([]byte, 0, 1+len(key)), byte(change))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publish(WatchPrefix+mapName, append(data, key...))
}

// publish pushes data to the subscribers of channel, and returns how many
// there are; c.mu is held.
func (c *Channels) publish(channel string, data []byte) int {
	ev := &wire.Event{Channel: channel, Data: data}
	for _, push := range c.subs[channel] {
		push(ev)
	}
	return len(c.subs[channel])
}

// serve performs a Publish, Subscribe or Unsubscribe for sess, whose
// messages push sends.
func (c *Channels) Serve(sess *Session, req *transport.Request, push func(*wire.Event)) transport.Response {
	resp := transport.Response{ID: req.ID}
	switch {
	case req.Name == "":
		resp.Status, resp.Msg = transport.StatusBadRequest, "empty channel name"
		return resp
	case req.Op == transport.OpPublish && strings.HasPrefix(req.Name, ReservedPrefix):
		resp.Status, resp.Msg = transport.StatusBadRequest, "channel names starting with NUL are reserved"
		return resp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Op {
	case transport.OpSubscribe:
		if c.subs == nil {
			c.subs = make(map[string]map[*Session]func(*wire.Event))
		}
		if c.subs[req.Name] == nil {
			c.subs[req.Name] = make(map[*Session]func(*wire.Event))
		}
		if _, ok := c.subs[req.Name][sess]; !ok && strings.HasPrefix(req.Name, WatchPrefix) {
			c.watched.Add(1)
		}
		c.subs[req.Name][sess] = push
	case transport.OpUnsubscribe:
		c.remove(req.Name, sess)
	case transport.OpPublish:
		resp.Int = int64(c.publish(req.Name, req.Value))
	}
	return resp
}

// drop forgets a Session's subscriptions.
func (c *Channels) Drop(sess *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.subs {
		c.remove(ch, sess)
	}
}

// remove forgets a Session's subscription to a channel; c.mu is held.
func (c *Channels) remove(channel string, sess *Session) {
	subs := c.subs[channel]
	if _, ok := subs[sess]; !ok {
		return
	}
	delete(subs, sess)
	if len(subs) == 0 {
		delete(c.subs, channel)
	}
	if strings.HasPrefix(channel, WatchPrefix) {
		c.watched.Add(-1)
	}
}

func IsMessageOp(op transport.Op) bool {
	return op == transport.OpPublish || op == transport.OpSubscribe || op == transport.OpUnsubscribe
}
