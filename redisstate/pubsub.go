package redisstate

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/sharedstate/sharedstate"
)

// Pub/sub is Redis's: a channel of the state is a Redis channel under its
// prefix, Publish is PUBLISH (so it reports how many engines listen: each
// listens on one connection), and each engine has one connection that
// listens to every channel it subscribes to, and to the lock releases of
// the state. go-redis remakes that connection and subscribes again after
// Redis restarts; messages published meanwhile are lost, as Publish allows.

// Subscribe calls fn with each message published on channel from now on,
// until ctx ends or the engine closes, and returns a channel closed after
// the last call. It returns once Redis has confirmed the subscription.
func (e *engine) Subscribe(ctx context.Context, channel string, fn func(msg []byte)) (<-chan struct{}, error) {
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return nil, sharedstate.ErrClosed
	}
	e.calls.Add(1)
	e.mu.RUnlock()
	defer e.calls.Done()

	rc := e.keys.channel(channel)
	sub := &subscription{fn: fn, done: make(chan struct{})}
	if err := e.listen(ctx, rc, sub); err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { e.unsubscribe(rc, sub) })
	return sub.done, nil
}

// listen adds sub (if not nil) to the functions called for the messages on
// the Redis channel, subscribing to it if it is the first, and waits until
// Redis has confirmed the subscription.
func (e *engine) listen(ctx context.Context, channel string, sub *subscription) error {
	e.subs.changing.Lock()
	l, first := e.subs.add(channel, sub)
	if first {
		// If this fails, go-redis subscribes again on the connection it
		// makes next, and the confirmation comes then.
		e.psSubscribe(ctx, channel)
	}
	e.subs.changing.Unlock()
	select {
	case <-l.ready:
		return nil
	case <-e.ctx.Done():
		return sharedstate.ErrClosed
	case <-ctx.Done():
		if sub != nil {
			e.unsubscribe(channel, sub)
		}
		return fmt.Errorf("%w: no confirmation of the subscription: %w", sharedstate.ErrUnavailable, ctx.Err())
	}
}

// unsubscribe ends sub, and the subscription to the Redis channel with the
// last one.
func (e *engine) unsubscribe(channel string, sub *subscription) {
	e.subs.changing.Lock()
	defer e.subs.changing.Unlock()
	if e.subs.remove(channel, sub) {
		ctx, cancel := context.WithTimeout(e.ctx, cleanupTimeout)
		defer cancel()
		e.psUnsubscribe(ctx, channel)
	}
}

// dispatch hands out the messages of the engine's pub/sub connection until
// it closes.
func (e *engine) dispatch(msgs <-chan any) {
	unlocked := e.keys.unlocked()
	for m := range msgs {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
				e.subs.confirm(m.Channel)
			}
		case *redis.Message:
			if m.Channel == unlocked {
				e.wakeups.wake(m.Payload)
			} else {
				e.subs.deliver(m.Channel, []byte(m.Payload))
			}
		}
	}
}

// subscriptions are the Redis channels an engine listens to.
type subscriptions struct {
	// changing is held across a change and the command that makes it
	// (SUBSCRIBE, UNSUBSCRIBE), so that Redis gets them in the same order.
	changing sync.Mutex
	mu       sync.Mutex // guards m
	m        map[string]*listening
}

// listening is one Redis channel listened to.
type listening struct {
	subs      map[*subscription]struct{}
	ready     chan struct{} // closed once Redis confirms the subscription
	confirmed bool
}

// subscription is one call of Subscribe.
type subscription struct {
	fn   func([]byte)
	done chan struct{} // closed after the last call of fn
}

// add adds sub (if not nil) to channel, and reports whether the channel
// is new.
func (s *subscriptions) add(channel string, sub *subscription) (*listening, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*listening)
	}
	l := s.m[channel]
	first := l == nil
	if first {
		l = &listening{subs: make(map[*subscription]struct{}), ready: make(chan struct{})}
		s.m[channel] = l
	}
	if sub != nil {
		l.subs[sub] = struct{}{}
	}
	return l, first
}

// remove ends sub if it has not ended yet, and reports whether it was the
// channel's last.
func (s *subscriptions) remove(channel string, sub *subscription) (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.m[channel]
	if l == nil {
		return false
	}
	if _, ok := l.subs[sub]; !ok {
		return false
	}
	delete(l.subs, sub)
	close(sub.done)
	if len(l.subs) > 0 {
		return false
	}
	delete(s.m, channel)
	return true
}

func (s *subscriptions) confirm(channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.m[channel]; l != nil && !l.confirmed {
		l.confirmed = true
		close(l.ready)
	}
}

// deliver calls the functions subscribed to channel with msg.
func (s *subscriptions) deliver(channel string, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.m[channel]; l != nil {
		for sub := range l.subs {
			sub.fn(msg)
		}
	}
}

// closeAll ends every subscription, once no message can come.
func (s *subscriptions) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.m {
		for sub := range l.subs {
			close(sub.done)
		}
	}
	clear(s.m)
}

// psSubscribe and psUnsubscribe change the engine's subscriptions: sharded
// ones on a Cluster, where a state's channels live on its slot's node.
func (e *engine) psSubscribe(ctx context.Context, channel string) error {
	if e.sharded {
		return e.ps.SSubscribe(ctx, channel)
	}
	return e.ps.Subscribe(ctx, channel)
}

func (e *engine) psUnsubscribe(ctx context.Context, channel string) error {
	if e.sharded {
		return e.ps.SUnsubscribe(ctx, channel)
	}
	return e.ps.Unsubscribe(ctx, channel)
}
