package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sharedstate/sharedstate"
)

// command is one of the inspector's commands.
type command struct {
	name    string
	args    string // synopsis of the arguments
	help    string
	minArgs int
	maxArgs int
	long    bool // runs until interrupted, so without -timeout
	files   bool // works on the states' files, without opening the state
	dirWide bool // works on the directory, without -state
	// check validates the arguments before the state is opened; nil if
	// the count is all there is to check.
	check func(c *cli, args []string) error
	run   func(c *cli, ctx context.Context, args []string) error
}

// synopsis is how the command is called.
func (cmd *command) synopsis() string {
	s := strings.TrimSpace(cmd.name + " " + cmd.args)
	if !cmd.dirWide {
		s += " -state NAME"
	}
	return s + " [flags]"
}

var (
	commands     = map[string]*command{}
	commandOrder []string
)

func init() {
	for _, cmd := range []*command{
		{name: "states", help: "list the states: owner pid or offline, keys, bytes on disk", dirWide: true, files: true, run: (*cli).states},
		{name: "rm", args: "STATE", help: "remove a state's files (refused while a process uses it)", minArgs: 1, maxArgs: 1, dirWide: true, files: true, run: (*cli).rm},
		{name: "ls", help: "list counters with values, maps with lengths, locks with their holders", run: (*cli).ls},
		{name: "get", args: "COUNTER | MAP [KEY]", help: "print a counter, a map's entries, or one entry as JSON (-raw: a byte string, as base64)", minArgs: 1, maxArgs: 2, run: (*cli).get},
		{name: "set", args: "COUNTER N | MAP KEY VALUE", help: "set a counter, or store a JSON value in a map (-raw: base64 of a byte string; -ttl to expire it)", minArgs: 2, maxArgs: 3, check: (*cli).checkSet, run: (*cli).set},
		{name: "add", args: "COUNTER DELTA | MAP KEY DELTA", help: "add DELTA to a counter or an integer entry and print the new value", minArgs: 2, maxArgs: 3, check: (*cli).checkAdd, run: (*cli).add},
		{name: "del", args: "COUNTER | MAP KEY", help: "delete a counter or a map entry", minArgs: 1, maxArgs: 2, run: (*cli).del},
		{name: "watch", args: "NAME [KEY]", help: "print changes to a map, one of its keys, or a counter, every -interval", minArgs: 1, maxArgs: 2, long: true, run: (*cli).watch},
		{name: "sub", args: "CHANNEL", help: "print the messages published on a channel", minArgs: 1, maxArgs: 1, long: true, run: (*cli).sub},
		{name: "pub", args: "CHANNEL MESSAGE", help: "publish a message on a channel", minArgs: 2, maxArgs: 2, run: (*cli).pub},
		{name: "stats", help: "the owner's statistics; with -interval, ops/s measured over it", run: (*cli).stats},
		{name: "dump", help: "everything in the state, as JSON", run: (*cli).dump},
		{name: "repair", help: "make a damaged state openable: keep what reads back whole, set the damaged journal aside (stop the app first)", files: true, run: (*cli).repair},
	} {
		commands[cmd.name] = cmd
		commandOrder = append(commandOrder, cmd.name)
	}
}

// errNoOwner is returned by the commands that need an owner to be running.
var errNoOwner = errors.New("no process owns the state, so nothing can change it")

// live reports whether an owner runs: if none does, the observer serves
// the state as its journal holds it.
func (c *cli) live(ctx context.Context) (sharedstate.Stats, bool, error) {
	s, err := c.st.Stats(ctx)
	return s, s.OwnerPID != 0, err
}

// noteOffline tells a human on stderr that the state comes from the
// journal, for the commands that read it.
func (c *cli) noteOffline(ctx context.Context) (live bool, err error) {
	if c.json {
		return true, nil
	}
	_, live, err = c.live(ctx)
	if err == nil && !live {
		fmt.Fprintf(c.stderr, "sharedstate: no process owns state %q: showing it as its journal holds it\n", c.state)
	}
	return live, err
}

// has reports whether an object of the given kind is called name.
func (c *cli) has(ctx context.Context, kind sharedstate.Kind, name string) (bool, error) {
	found := false
	err := c.st.Names(ctx, kind, func(n string, _ int64) bool {
		found = n == name
		return n < name
	})
	return found, err
}

// states lists the states of the directory, with what each holds.
func (c *cli) states(ctx context.Context, _ []string) error {
	states, err := sharedstate.States(c.options()...)
	if err != nil {
		return err
	}
	out := make([]stateJSON, 0, len(states))
	for _, s := range states {
		it := stateJSON{Name: s.Name, Bytes: s.Bytes, Files: s.Files}
		if s.Bytes > 0 || s.Locked() {
			stats, err := c.peek(ctx, s.Name)
			if err != nil {
				it.Error = strings.TrimPrefix(err.Error(), "sharedstate: ")
			} else {
				it.fill(stats)
			}
		}
		out = append(out, it)
	}
	return c.printStates(out)
}

// peek returns the statistics of the state called name, opened as an
// observer for the time it takes.
func (c *cli) peek(ctx context.Context, name string) (sharedstate.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	st, err := sharedstate.Open(ctx, name, append(c.options(), sharedstate.WithObserver())...)
	if err != nil {
		return sharedstate.Stats{}, err
	}
	defer st.Close()
	return st.Stats(ctx)
}

// rm removes a state's files.
func (c *cli) rm(ctx context.Context, args []string) error {
	name := args[0]
	var files []string
	states, err := sharedstate.States(c.options()...)
	if err != nil {
		return err
	}
	if i := slices.IndexFunc(states, func(s sharedstate.StateInfo) bool { return s.Name == name }); i >= 0 {
		files = states[i].Files
	}
	if err := sharedstate.Remove(ctx, name, c.options()...); err != nil {
		return err
	}
	if c.json {
		return c.printJSON(removedJSON{Removed: name, Files: files})
	}
	return c.println(fmt.Sprintf("removed state %q: %s", name, strings.Join(files, " ")))
}

// ls lists every named object.
func (c *cli) ls(ctx context.Context, _ []string) error {
	live, err := c.noteOffline(ctx)
	if err != nil {
		return err
	}
	var items []lsItem
	for _, kind := range []sharedstate.Kind{sharedstate.KindCounter, sharedstate.KindMap} {
		err := c.st.Names(ctx, kind, func(name string, size int64) bool {
			items = append(items, newLsItem(kind, name, size))
			return true
		})
		if err != nil {
			return err
		}
	}
	err = c.st.Locks(ctx, func(l sharedstate.LockInfo) bool {
		items = append(items, newLockItem(l))
		return true
	})
	if err != nil {
		return err
	}
	return c.printLs(items, live)
}

// kindOf tells whether name is a counter, a map, both or neither.
func (c *cli) kindOf(ctx context.Context, name string) (isCounter, isMap bool, err error) {
	if isCounter, err = c.has(ctx, sharedstate.KindCounter, name); err == nil {
		isMap, err = c.has(ctx, sharedstate.KindMap, name)
	}
	return isCounter, isMap, err
}

// errNoSuch reports a name that is neither a counter nor a map.
func (c *cli) errNoSuch(what, name string) error {
	return fmt.Errorf("state %q has no %s called %q (see ls)", c.state, what, name)
}

// get prints a counter, a whole map, or one entry.
func (c *cli) get(ctx context.Context, args []string) error {
	name := args[0]
	if len(args) == 2 {
		key := args[1]
		e, ok, err := c.load(ctx, name, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("map %q has no key %q", name, key)
		}
		if c.raw {
			b, isBytes := e.value.([]byte)
			if !isBytes {
				return fmt.Errorf("%s holds %s, not a byte string: drop -raw", entryName(name, key), article(valueKind(e.value)))
			}
			return c.println(base64.StdEncoding.EncodeToString(b))
		}
		if c.json {
			return c.printJSON(entryJSON{Map: name, Key: key, Value: jsonable(e.value), TTL: ttlText(e.ttl)})
		}
		if e.ttl > 0 {
			fmt.Fprintf(c.stderr, "sharedstate: expires in %s\n", ttlText(e.ttl))
		}
		return c.println(jsonText(e.value))
	}
	if c.raw {
		return usagef("-raw applies to one map entry: give MAP KEY")
	}
	// One name: a counter, unless there is no counter but a map so called.
	isCounter, isMap, err := c.kindOf(ctx, name)
	switch {
	case err != nil:
		return err
	case isCounter:
	case isMap:
		entries, err := c.entries(ctx, name)
		if err != nil {
			return err
		}
		return c.printEntries(entries)
	default:
		return c.errNoSuch("counter or map", name)
	}
	v, err := c.st.Counter(name).Load(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(counterJSON{Counter: name, Value: v})
	}
	return c.println(strconv.FormatInt(v, 10))
}

// entry is one map entry, decoded.
type entry struct {
	key   string
	value any
	ttl   time.Duration // left; 0: none
}

func (c *cli) checkSet(args []string) error {
	if len(args) == 2 {
		if c.ttl != 0 || c.raw {
			return usagef("-ttl and -raw apply to map entries, not counters")
		}
		if _, err := strconv.ParseInt(args[1], 10, 64); err != nil {
			return usagef("%q is not an integer; to store a map entry, give MAP KEY VALUE", args[1])
		}
		return nil
	}
	_, err := c.parseValue(args[2])
	return err
}

// parseValue parses the value of set: JSON, or with -raw base64.
func (c *cli) parseValue(s string) (any, error) {
	if !c.raw {
		return parseJSONValue(s)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, usagef("-raw: %q is not base64 (%v)", s, err)
		}
	}
	return b, nil
}

// set sets a counter or stores a map entry.
func (c *cli) set(ctx context.Context, args []string) error {
	if len(args) == 2 {
		n, _ := strconv.ParseInt(args[1], 10, 64)
		if err := c.st.Counter(args[0]).Store(ctx, n); err != nil {
			return err
		}
		return c.ok(okJSON{OK: true})
	}
	name, key := args[0], args[1]
	v, _ := c.parseValue(args[2])
	if !c.force {
		if err := c.checkType(ctx, name, key, v); err != nil {
			return err
		}
	}
	var opts []sharedstate.WriteOption
	if c.ttl > 0 {
		opts = append(opts, sharedstate.WithTTL(c.ttl))
	}
	if err := sharedstate.NewMap[any](c.st, name).Store(ctx, key, v, opts...); err != nil {
		return err
	}
	return c.ok(okJSON{OK: true})
}

// checkType refuses a value for key of another type than the one there,
// or if there is none, than the map's first entry: a program reading the
// map into a Map[T] could not decode both.
func (c *cli) checkType(ctx context.Context, name, key string, v any) error {
	old, ok, err := c.load(ctx, name, key)
	if err != nil {
		return err
	}
	if !ok {
		err := sharedstate.NewMap[rawValue](c.st, name).Range(ctx, func(k string, raw rawValue) bool {
			old, ok = entry{key: k, value: decodeRaw(raw)}, true
			return false
		})
		if err != nil || !ok {
			return err
		}
	}
	was, is := valueKind(old.value), valueKind(v)
	if was == is || is == "null" || was == "null" || was == "float" && is == "integer" {
		return nil
	}
	what := "holds"
	if old.key != key {
		what = "has no entry yet; its entry " + strconv.Quote(old.key) + " holds"
	}
	return fmt.Errorf("map %q %s %s, and the value given is %s: a program reading the map as a Map[T] could not decode both. Add -force to store it anyway",
		name, what, article(was), article(is))
}

func (c *cli) checkAdd(args []string) error {
	if _, err := strconv.ParseInt(args[len(args)-1], 10, 64); err != nil {
		return usagef("%q is not an integer", args[len(args)-1])
	}
	if c.ttl != 0 || c.raw {
		return usagef("add changes what exists, keeping its expiry: -ttl and -raw do not apply")
	}
	return nil
}

// add adds to a counter or an integer entry, either of which must exist.
func (c *cli) add(ctx context.Context, args []string) error {
	delta, _ := strconv.ParseInt(args[len(args)-1], 10, 64)
	name := args[0]
	if len(args) == 3 {
		key := args[1]
		e, ok, err := c.load(ctx, name, key)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("map %q has no key %q; set it first: sharedstate set %s %s 0 -state %s", name, key, name, key, c.state)
		case valueKind(e.value) != "integer":
			return fmt.Errorf("%s holds %s, not an integer", entryName(name, key), article(valueKind(e.value)))
		}
		v, err := sharedstate.NewMap[any](c.st, name).Add(ctx, key, delta)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(entryJSON{Map: name, Key: key, Value: v})
		}
		return c.println(strconv.FormatInt(v, 10))
	}
	isCounter, isMap, err := c.kindOf(ctx, name)
	switch {
	case err != nil:
		return err
	case !isCounter && isMap:
		return usagef("%q is a map: give MAP KEY DELTA", name)
	case !isCounter:
		return fmt.Errorf("%w; set it first: sharedstate set %s 0 -state %s", c.errNoSuch("counter", name), name, c.state)
	}
	v, err := c.st.Counter(name).Add(ctx, delta)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(counterJSON{Counter: name, Value: v})
	}
	return c.println(strconv.FormatInt(v, 10))
}

// del deletes a counter or a map entry.
func (c *cli) del(ctx context.Context, args []string) error {
	name := args[0]
	if len(args) == 1 {
		existed, err := c.st.Counter(name).Delete(ctx)
		if err != nil || existed {
			return cmp.Or(err, c.deleted())
		}
		if isMap, err := c.has(ctx, sharedstate.KindMap, name); err != nil || isMap {
			return cmp.Or(err, usagef("%q is a map: give MAP KEY", name))
		}
		return c.errNoSuch("counter", name)
	}
	// Raw values, as the old value is not shown: no decoding to fail.
	_, loaded, err := sharedstate.NewMap[rawValue](c.st, name).LoadAndDelete(ctx, args[1])
	if err != nil {
		return err
	}
	if !loaded {
		return fmt.Errorf("map %q has no key %q", name, args[1])
	}
	return c.deleted()
}

func (c *cli) deleted() error {
	if c.json {
		return c.printJSON(deletedJSON{Deleted: true})
	}
	return c.println("OK")
}

// pub publishes a message.
func (c *cli) pub(ctx context.Context, args []string) error {
	n, err := c.st.Publish(ctx, args[0], []byte(args[1]))
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(publishedJSON{Receivers: n})
	}
	return c.println(fmt.Sprintf("published to %d subscriber%s", n, plural(n)))
}

// sub prints the messages published on a channel until ctx ends.
func (c *cli) sub(ctx context.Context, args []string) error {
	channel := args[0]
	if err := c.requireOwner(ctx); err != nil {
		return err
	}
	msgs, err := c.st.Subscribe(ctx, channel)
	if err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(c.stderr, "sharedstate: subscribed to %q; Ctrl-C to stop\n", channel)
	}
	// Check now and then that an owner still runs: if the last one exits,
	// the observer falls back on the journal and no message would come.
	tick := time.NewTicker(max(c.interval, time.Second))
	defer tick.Stop()
	for {
		select {
		case msg, ok := <-msgs:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errors.New("the subscription ended")
			}
			if err := c.printMessage(channel, msg); err != nil {
				return err
			}
		case <-tick.C:
			if err := c.stillOwned(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// requireOwner fails unless an owner runs.
func (c *cli) requireOwner(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, live, err := c.live(ctx)
	if err != nil {
		return err
	}
	if !live {
		return fmt.Errorf("%w: state %q is as its journal holds it; start the app, then retry", errNoOwner, c.state)
	}
	return nil
}

// stillOwned fails if the state has no owner any more, and logs a poll
// that failed otherwise.
func (c *cli) stillOwned(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, live, err := c.live(pctx)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		c.log.Warn("sharedstate: cannot reach the owner", "state", c.state, "err", err)
	case !live:
		return fmt.Errorf("the owner exited and no process took over: %w", errNoOwner)
	}
	return nil
}

// watchState is what watch saw at one poll.
type watchState struct {
	counter int64
	entries map[string]entry  // decoded
	text    map[string]string // their JSON, to compare
}

// watch prints changes to a map, a key of it, or a counter, polling every
// -interval until ctx ends.
func (c *cli) watch(ctx context.Context, args []string) error {
	name := args[0]
	if err := c.requireOwner(ctx); err != nil {
		return err
	}
	key, oneKey := "", len(args) == 2
	if oneKey {
		key = args[1]
	}
	watchCounter, watchMap := false, true
	if !oneKey {
		// A counter if there is one; the map if there is one, or if there
		// is neither (a map that does not exist yet is empty).
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		isCounter, err := c.has(pctx, sharedstate.KindCounter, name)
		var isMap bool
		if err == nil {
			isMap, err = c.has(pctx, sharedstate.KindMap, name)
		}
		cancel()
		if err != nil {
			return err
		}
		watchCounter, watchMap = isCounter, isMap || !isCounter
	}
	poll := func() (watchState, error) {
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		s := watchState{entries: map[string]entry{}, text: map[string]string{}}
		if watchCounter {
			v, err := c.st.Counter(name).Load(pctx)
			if err != nil {
				return s, err
			}
			s.counter = v
		}
		if !watchMap {
			return s, nil
		}
		if oneKey {
			e, ok, err := c.load(pctx, name, key)
			if ok && err == nil {
				s.entries[key], s.text[key] = e, jsonText(e.value)
			}
			return s, err
		}
		entries, err := c.entries(pctx, name)
		for _, e := range entries {
			s.entries[e.key], s.text[e.key] = e, jsonText(e.value)
		}
		return s, err
	}

	prev, err := poll()
	if err != nil {
		return err
	}
	if !c.json {
		what := fmt.Sprintf("map %q (%d entries)", name, len(prev.entries))
		switch {
		case oneKey:
			what = fmt.Sprintf("key %q of map %q", key, name)
		case watchCounter && watchMap:
			what = fmt.Sprintf("counter %q (%d) and map %q (%d entries)", name, prev.counter, name, len(prev.entries))
		case watchCounter:
			what = fmt.Sprintf("counter %q (%d)", name, prev.counter)
		}
		fmt.Fprintf(c.stderr, "sharedstate: watching %s every %v; Ctrl-C to stop\n", what, c.interval)
	}
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		cur, err := poll()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log.Warn("sharedstate: watch: poll failed", "state", c.state, "err", err)
			continue
		}
		now := time.Now()
		var events []watchEvent
		if watchCounter && cur.counter != prev.counter {
			events = append(events, watchEvent{Time: now, Event: "changed", Counter: name,
				Value: cur.counter, Old: prev.counter, counterDelta: cur.counter - prev.counter})
		}
		for _, k := range slices.Sorted(maps.Keys(cur.text)) {
			old, had := prev.text[k]
			switch {
			case !had:
				events = append(events, watchEvent{Time: now, Event: "added", Map: name, Key: k, Value: jsonable(cur.entries[k].value), TTL: ttlText(cur.entries[k].ttl)})
			case old != cur.text[k]:
				events = append(events, watchEvent{Time: now, Event: "changed", Map: name, Key: k, Value: jsonable(cur.entries[k].value), Old: jsonable(prev.entries[k].value), TTL: ttlText(cur.entries[k].ttl)})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(prev.text)) {
			if _, has := cur.text[k]; !has {
				events = append(events, watchEvent{Time: now, Event: "removed", Map: name, Key: k, Old: jsonable(prev.entries[k].value)})
			}
		}
		for _, ev := range events {
			if err := c.printEvent(ev); err != nil {
				return err
			}
		}
		prev = cur
		if err := c.stillOwned(ctx); err != nil {
			return err
		}
	}
}

// stats prints the owner's statistics, and with -interval the ops/s over
// it, from a second sample.
func (c *cli) stats(ctx context.Context, _ []string) error {
	s1, err := c.st.Stats(ctx)
	if err != nil {
		return err
	}
	t1 := time.Now()
	out := statsJSON{State: c.state, Live: s1.OwnerPID != 0}
	s := s1
	if out.Live && c.sample {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.interval):
		}
		s2, err := c.st.Stats(ctx)
		if err != nil {
			return err
		}
		// Ops count from when the owner became the owner: a rate across a
		// takeover means nothing.
		if s2.OwnerPID == s1.OwnerPID && s2.OwnerSince.Equal(s1.OwnerSince) && s2.Ops >= s1.Ops {
			rate := math.Round(float64(s2.Ops-s1.Ops)/time.Since(t1).Seconds()*10) / 10
			out.OpsPerSec = &rate
		}
		s = s2
		out.Live = s.OwnerPID != 0
	}
	out.fill(s)
	return c.printStats(out)
}

// dump prints everything in the state as JSON.
func (c *cli) dump(ctx context.Context, _ []string) error {
	_, live, err := c.live(ctx)
	if err != nil {
		return err
	}
	d := dumpJSON{
		State:    c.state,
		Source:   "journal",
		Counters: map[string]int64{},
		Maps:     map[string]map[string]any{},
		Locks:    map[string]lockJSON{},
	}
	if live {
		d.Source = "owner"
	}
	if err := c.st.Names(ctx, sharedstate.KindCounter, func(name string, v int64) bool {
		d.Counters[name] = v
		return true
	}); err != nil {
		return err
	}
	var mapNames []string
	if err := c.st.Names(ctx, sharedstate.KindMap, func(name string, _ int64) bool {
		mapNames = append(mapNames, name)
		return true
	}); err != nil {
		return err
	}
	for _, name := range mapNames {
		entries, err := c.entries(ctx, name)
		if err != nil {
			return err
		}
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			m[e.key] = jsonable(e.value)
			if e.ttl > 0 {
				if d.TTLs == nil {
					d.TTLs = map[string]map[string]string{}
				}
				if d.TTLs[name] == nil {
					d.TTLs[name] = map[string]string{}
				}
				d.TTLs[name][e.key] = ttlText(e.ttl)
			}
		}
		d.Maps[name] = m
	}
	if err := c.st.Locks(ctx, func(l sharedstate.LockInfo) bool {
		d.Locks[l.Name] = *newLockJSON(l)
		return true
	}); err != nil {
		return err
	}
	return c.printJSON(d)
}

// printMessage prints one message received by sub.
func (c *cli) printMessage(channel string, msg []byte) error {
	if c.json {
		m := messageJSON{Time: time.Now(), Channel: channel}
		if utf8.Valid(msg) {
			s := string(msg)
			m.Message = &s
		} else {
			m.MessageBase64 = msg
		}
		return c.printLine(m)
	}
	return c.println(printable(msg))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// repair runs sharedstate.Repair on the state's files.
func (c *cli) repair(ctx context.Context, args []string) error {
	report, err := sharedstate.Repair(ctx, c.state, c.options()...)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(report)
	}
	if report.Problem == "" {
		return c.println(fmt.Sprintf("state %q: nothing to repair", c.state))
	}
	msg := fmt.Sprintf("state %q: %s\nkept the snapshot and %d journal record%s", c.state, report.Problem, report.Records, plural(report.Records))
	for _, f := range report.SetAside {
		msg += "\nset aside " + f
	}
	return c.println(msg)
}
