package sharedstate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sharedstate/sharedstate/internal/store"

	"github.com/sharedstate/sharedstate/transport"
)

// subscriptionBuffer is how many messages a subscription holds for a reader
// that is behind; later ones are dropped until it catches up.
const subscriptionBuffer = 256

// Publish sends msg to every process subscribed to channel, the publisher
// included, and returns how many processes that is.
//
// Delivery is at most once and best effort: a subscriber that does not keep
// up loses messages beyond its buffer, and messages published while the
// owner is being replaced may reach only some subscribers, or reach one
// twice if the publisher's retry crosses the takeover. Use it for signals
// such as "drop your cache", and keep what must not be lost in a Map.
func (s *State) Publish(ctx context.Context, channel string, msg []byte) (int, error) {
	if err := checkChannel(channel); err != nil {
		return 0, fmt.Errorf("sharedstate: publish: %w", err)
	}
	resp, err := s.do(ctx, transport.Request{Op: transport.OpPublish, Name: channel, Value: msg})
	if err != nil {
		return 0, fmt.Errorf("sharedstate: publish on %q: %w", channel, err)
	}
	return int(resp.Int), nil
}

// Subscribe returns the messages published on channel from now on, until ctx
// ends or the State closes, when the channel is closed. See Publish for what
// delivery guarantees.
func (s *State) Subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	if err := checkChannel(channel); err != nil {
		return nil, fmt.Errorf("sharedstate: subscribe: %w", err)
	}
	return s.subscribe(ctx, channel)
}

func checkChannel(channel string) error {
	switch {
	case channel == "":
		return fmt.Errorf("%w: empty channel name", ErrInvalidName)
	case strings.HasPrefix(channel, store.ReservedPrefix):
		return fmt.Errorf("%w: %q: channel names starting with NUL are reserved", ErrInvalidName, channel)
	}
	return nil
}

// subscribe is Subscribe without the check of the channel's name, for the
// reserved channels too.
func (s *State) subscribe(ctx context.Context, channel string) (<-chan []byte, error) {
	sub, ok := s.engine.(transport.Subscriber)
	if !ok {
		return nil, fmt.Errorf("sharedstate: subscribe to %q: %w: the engine carries no messages", channel, ErrUnsupported)
	}
	c := make(chan []byte, subscriptionBuffer)
	done, err := sub.Subscribe(ctx, channel, func(msg []byte) {
		select {
		case c <- msg:
		default: // the reader is behind: drop, as documented
		}
	})
	if err != nil {
		return nil, fmt.Errorf("sharedstate: subscribe to %q: %w", channel, err)
	}
	go func() {
		<-done // no more sends after it
		close(c)
	}()
	return c, nil
}

// subscriptions are a process's subscriptions to channels. They outlive the
// process's connection to any one owner: each new owner is told of them.
type subscriptions struct {
	mu        sync.Mutex
	byChannel map[string]map[*func([]byte)]struct{}
}

func (s *subscriptions) add(channel string, fn *func([]byte)) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byChannel == nil {
		s.byChannel = make(map[string]map[*func([]byte)]struct{})
	}
	fns := s.byChannel[channel]
	if fns == nil {
		fns = make(map[*func([]byte)]struct{})
		s.byChannel[channel] = fns
	}
	fns[fn] = struct{}{}
	return len(fns) == 1
}

func (s *subscriptions) remove(channel string, fn *func([]byte)) (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fns := s.byChannel[channel]
	delete(fns, fn)
	if len(fns) == 0 {
		delete(s.byChannel, channel)
		return true
	}
	return false
}

func (s *subscriptions) channels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.byChannel))
	for ch := range s.byChannel {
		out = append(out, ch)
	}
	return out
}

// deliver hands a message to this process's subscribers of channel.
func (s *subscriptions) deliver(channel string, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fn := range s.byChannel[channel] {
		(*fn)(msg)
	}
}

// Subscribe registers fn for the messages on channel until ctx ends, and
// returns a channel closed once fn will not be called again.
func (s *embedded) Subscribe(ctx context.Context, channel string, fn func([]byte)) (<-chan struct{}, error) {
	key := &fn
	if err := s.changeSubscription(ctx, channel, key, true); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
		case <-s.ctx.Done(): // closing: no owner to tell
			s.subs.remove(channel, key)
			return
		}
		// Best effort: a new owner learns only the channels still wanted.
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		defer cancel()
		s.changeSubscription(ctx, channel, key, false)
	}()
	return done, nil
}

// changeSubscription adds or removes a subscriber of this process, telling
// the owner when the first comes or the last goes. subMu orders these, and
// resubscribe, so that the owner's registry follows the process's.
func (s *embedded) changeSubscription(ctx context.Context, channel string, key *func([]byte), add bool) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	op := transport.OpSubscribe
	if add && !s.subs.add(channel, key) || !add && !s.subs.remove(channel, key) {
		return nil
	}
	if !add {
		op = transport.OpUnsubscribe
	}
	resp, err := s.Do(ctx, &transport.Request{Op: op, Name: channel})
	if err == nil {
		err = statusError(resp.Status, resp.Msg) // an observer with no owner: read-only
	}
	if err != nil && add {
		s.subs.remove(channel, key)
	}
	return err
}

// resubscribe tells a new owner (the current role) of this process's
// subscriptions.
func (s *embedded) resubscribe() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs.channels() {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		if _, err := s.Do(ctx, &transport.Request{Op: transport.OpSubscribe, Name: ch}); err != nil {
			s.cfg.logger.Warn("sharedstate: cannot resubscribe after a takeover", "state", s.name, "channel", ch, "err", err)
		}
		cancel()
	}
}
