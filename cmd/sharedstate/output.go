package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sharedstate/sharedstate"
)

// JSON documents printed with -json.
type (
	stateJSON struct {
		Name     string   `json:"name"`
		Live     bool     `json:"live"`                // an owner runs
		OwnerPID int      `json:"owner_pid,omitempty"` // its pid
		Keys     *int     `json:"keys,omitempty"`      // counters and map entries
		Counters *int     `json:"counters,omitempty"`
		Maps     *int     `json:"maps,omitempty"`
		Entries  *int     `json:"entries,omitempty"`
		Locks    *int     `json:"locks,omitempty"`
		Bytes    int64    `json:"bytes"` // its journal and snapshot, on disk
		Files    []string `json:"files"`
		Error    string   `json:"error,omitempty"` // why it could not be read
	}
	removedJSON struct {
		Removed string   `json:"removed"`
		Files   []string `json:"files"`
	}
	lsItem struct {
		Kind  string `json:"kind"` // counter, map or lock
		Name  string `json:"name"`
		Value *int64 `json:"value,omitempty"` // a counter's value
		Len   *int64 `json:"len,omitempty"`   // a map's number of entries
		*lockJSON
	}
	lockJSON struct {
		Held  bool       `json:"held"`
		PID   int        `json:"pid,omitempty"`   // the holder's
		Token uint64     `json:"token,omitempty"` // the latest fencing token
		Since *time.Time `json:"since,omitempty"` // when the holder got it
	}
	entryJSON struct {
		Map   string `json:"map"`
		Key   string `json:"key"`
		Value any    `json:"value"`
		TTL   string `json:"ttl,omitempty"` // the time left, as Go writes a duration
	}
	counterJSON struct {
		Counter string `json:"counter"`
		Value   int64  `json:"value"`
	}
	okJSON struct {
		OK bool `json:"ok"`
	}
	deletedJSON struct {
		Deleted bool `json:"deleted"`
	}
	publishedJSON struct {
		Receivers int `json:"receivers"` // processes subscribed to the channel
	}
	messageJSON struct {
		Time          time.Time `json:"time"`
		Channel       string    `json:"channel"`
		Message       *string   `json:"message,omitempty"`        // if valid UTF-8
		MessageBase64 []byte    `json:"message_base64,omitempty"` // if not
	}
	statsJSON struct {
		State         string     `json:"state"`
		Live          bool       `json:"live"` // false: no owner runs; read from the journal
		OwnerPID      int        `json:"owner_pid,omitempty"`
		OwnerSince    *time.Time `json:"owner_since,omitempty"`
		UptimeSeconds *float64   `json:"uptime_seconds,omitempty"`
		Clients       *int       `json:"clients,omitempty"`
		Durability    string     `json:"durability,omitempty"`
		Counters      int        `json:"counters"`
		Maps          int        `json:"maps"`
		Entries       int        `json:"entries"`
		Bytes         int64      `json:"bytes"`
		Locks         int        `json:"locks"`
		Ops           *uint64    `json:"ops,omitempty"`         // since the owner became the owner
		OpsPerSec     *float64   `json:"ops_per_sec,omitempty"` // unknown offline or across a takeover
		Terms         uint64     `json:"terms"`
		Takeovers     uint64     `json:"takeovers"` // terms - 1: takeovers and restarts
		JournalBytes  *int64     `json:"journal_bytes,omitempty"`
		Evictions     *uint64    `json:"evictions,omitempty"` // by bounded maps, since the owner became the owner
	}
	dumpJSON struct {
		State    string                    `json:"state"`
		Source   string                    `json:"source"` // "owner" or "journal"
		Counters map[string]int64          `json:"counters"`
		Maps     map[string]map[string]any `json:"maps"`
		// TTLs holds the time left of the entries that expire, by map
		// and key.
		TTLs  map[string]map[string]string `json:"ttls,omitempty"`
		Locks map[string]lockJSON          `json:"locks"`
	}
)

func newLsItem(kind sharedstate.Kind, name string, size int64) lsItem {
	it := lsItem{Name: name}
	switch kind {
	case sharedstate.KindCounter:
		it.Kind, it.Value = "counter", &size
	case sharedstate.KindMap:
		it.Kind, it.Len = "map", &size
	}
	return it
}

func newLockItem(l sharedstate.LockInfo) lsItem {
	return lsItem{Kind: "lock", Name: l.Name, lockJSON: newLockJSON(l)}
}

func newLockJSON(l sharedstate.LockInfo) *lockJSON {
	j := &lockJSON{Held: l.Held, PID: l.PID, Token: l.Token}
	if l.Held {
		j.Since = &l.Since
	}
	return j
}

func (s *stateJSON) fill(st sharedstate.Stats) {
	keys := st.Counters + st.Entries
	s.Live, s.OwnerPID = st.OwnerPID != 0, st.OwnerPID
	s.Keys, s.Counters, s.Maps, s.Entries, s.Locks = &keys, &st.Counters, &st.Maps, &st.Entries, &st.Locks
}

func (c *cli) printStates(states []stateJSON) error {
	if c.json {
		return c.printJSON(states)
	}
	if len(states) == 0 {
		return c.println("(no state in " + cmp.Or(c.dir, sharedstate.DefaultDir()) + ")")
	}
	rows := make([][]string, 0, len(states))
	for _, s := range states {
		owner, keys := "offline", "-"
		switch {
		case s.Error != "":
			owner = s.Error
		case s.Live:
			owner = "pid " + strconv.Itoa(s.OwnerPID)
		}
		if s.Keys != nil {
			keys = strconv.Itoa(*s.Keys)
		}
		rows = append(rows, []string{s.Name, owner, keys, humanBytes(s.Bytes)})
	}
	return c.table([]string{"STATE", "OWNER", "KEYS", "ON DISK"}, rows)
}
func (s *statsJSON) fill(st sharedstate.Stats) {
	if s.Live {
		s.OwnerPID = st.OwnerPID
		since := st.OwnerSince
		uptime := time.Since(since).Round(time.Millisecond).Seconds()
		clients := st.Clients
		journal := st.JournalBytes
		s.OwnerSince, s.UptimeSeconds, s.Clients, s.JournalBytes = &since, &uptime, &clients, &journal
		s.Durability = st.Durability.String()
	}
	s.Counters, s.Maps, s.Entries, s.Bytes, s.Locks = st.Counters, st.Maps, st.Entries, st.Bytes, st.Locks
	if s.Live {
		ops, evictions := st.Ops, st.Evictions
		s.Ops, s.Evictions = &ops, &evictions
	}
	s.Terms = st.Terms
	if st.Terms > 0 {
		s.Takeovers = st.Terms - 1
	}
}

// watchEvent is one change seen by watch.
type watchEvent struct {
	Time    time.Time
	Event   string // added, changed or removed
	Counter string // the counter that changed, or
	Map     string // the map whose key did
	Key     string
	Value   any    // the new value, except for removed
	Old     any    // the old value, except for added
	TTL     string // the new value's time left, if it expires

	counterDelta int64
}

func (e watchEvent) MarshalJSON() ([]byte, error) {
	m := map[string]any{"time": e.Time, "event": e.Event}
	if e.Counter != "" {
		m["counter"] = e.Counter
	} else {
		m["map"], m["key"] = e.Map, e.Key
	}
	if e.Event != "removed" {
		m["value"] = e.Value
	}
	if e.Event != "added" {
		m["old"] = e.Old
	}
	if e.TTL != "" {
		m["ttl"] = e.TTL
	}
	return json.Marshal(m)
}

// printJSON prints v as indented JSON.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printLine prints v as JSON on one line, for streams (watch, sub).
func (c *cli) printLine(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func (c *cli) println(s string) error {
	_, err := fmt.Fprintln(c.stdout, s)
	return err
}

// ok acknowledges a write.
func (c *cli) ok(v okJSON) error {
	if c.json {
		return c.printJSON(v)
	}
	return c.println("OK")
}

// table prints rows aligned in columns, under a header if there is one.
func (c *cli) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if header != nil {
		fmt.Fprintln(tw, strings.Join(header, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printLs prints the result of ls.
func (c *cli) printLs(items []lsItem, live bool) error {
	if c.json {
		if items == nil {
			items = []lsItem{}
		}
		return c.printJSON(items)
	}
	if len(items) == 0 {
		return c.println("(empty state)")
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		var v string
		switch {
		case it.Value != nil:
			v = strconv.FormatInt(*it.Value, 10)
		case it.Len != nil:
			v = fmt.Sprintf("%d entr%s", *it.Len, map[bool]string{true: "y", false: "ies"}[*it.Len == 1])
		default:
			v = lockText(it.lockJSON, live)
		}
		rows = append(rows, []string{it.Kind, printable([]byte(it.Name)), v})
	}
	return c.table([]string{"KIND", "NAME", "VALUE"}, rows)
}

// lockText describes a lock. Offline, a lock the journal shows held was
// held by a process that has gone: the next owner releases it.
func lockText(l *lockJSON, live bool) string {
	if !l.Held {
		return "free"
	}
	holder := "held by pid " + strconv.Itoa(l.PID)
	if l.PID == 0 {
		holder = "held"
	}
	if !live {
		return holder + " (stale: its holder has exited)"
	}
	return fmt.Sprintf("%s for %s (token %d)", holder, time.Since(*l.Since).Round(time.Second), l.Token)
}

func (c *cli) printEntries(entries []entry) error {
	if c.json {
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			m[e.key] = jsonable(e.value)
		}
		return c.printJSON(m)
	}
	if len(entries) == 0 {
		return c.println("(empty map)")
	}
	// A TTL column only if an entry expires.
	expires := slices.ContainsFunc(entries, func(e entry) bool { return e.ttl > 0 })
	rows := make([][]string, 0, len(entries))
	for _, e := range entries {
		row := []string{printable([]byte(e.key)), jsonText(e.value)}
		if expires {
			row = append(row, cmp.Or(ttlText(e.ttl), "-"))
		}
		rows = append(rows, row)
	}
	if expires {
		return c.table([]string{"KEY", "VALUE", "TTL"}, rows)
	}
	return c.table([]string{"KEY", "VALUE"}, rows)
}

// ttlText is a time left, to the second (to the millisecond under one), or
// "" for none.
func ttlText(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func (c *cli) printEvent(e watchEvent) error {
	if c.json {
		return c.printLine(e)
	}
	t := e.Time.Format("15:04:05.000")
	var line string
	switch {
	case e.Counter != "":
		line = fmt.Sprintf("%s %-7s %s = %s (was %s, %+d)", t, e.Event, printable([]byte(e.Counter)), jsonText(e.Value), jsonText(e.Old), e.counterDelta)
	case e.Event == "added":
		line = fmt.Sprintf("%s %-7s %s = %s", t, e.Event, entryName(e.Map, e.Key), jsonText(e.Value))
	case e.Event == "changed":
		line = fmt.Sprintf("%s %-7s %s = %s (was %s)", t, e.Event, entryName(e.Map, e.Key), jsonText(e.Value), jsonText(e.Old))
	default:
		line = fmt.Sprintf("%s %-7s %s (was %s)", t, e.Event, entryName(e.Map, e.Key), jsonText(e.Old))
	}
	if e.TTL != "" {
		line += ", expires in " + e.TTL
	}
	return c.println(line)
}

func entryName(m, key string) string {
	return printable([]byte(m)) + "[" + printable([]byte(key)) + "]"
}

func (c *cli) printStats(s statsJSON) error {
	if c.json {
		return c.printJSON(s)
	}
	rows := [][]string{{"state", s.State}}
	if s.Live {
		rows = append(rows,
			[]string{"owner pid", strconv.Itoa(s.OwnerPID)},
			[]string{"owner since", s.OwnerSince.Format(time.RFC3339)},
			[]string{"uptime", time.Duration(*s.UptimeSeconds * float64(time.Second)).Round(time.Second).String()},
			[]string{"clients", strconv.Itoa(*s.Clients) + " (this inspector included)"},
		)
	} else {
		rows = append(rows, []string{"owner", "none: read from the journal"})
	}
	rows = append(rows,
		[]string{"counters", strconv.Itoa(s.Counters)},
		[]string{"maps", strconv.Itoa(s.Maps)},
		[]string{"entries", strconv.Itoa(s.Entries)},
		[]string{"bytes", humanBytes(s.Bytes)},
		[]string{"locks", strconv.Itoa(s.Locks)},
	)
	if s.Ops != nil {
		rows = append(rows, []string{"ops", strconv.FormatUint(*s.Ops, 10)})
	}
	if s.OpsPerSec != nil {
		rows = append(rows, []string{"ops/s", strconv.FormatFloat(*s.OpsPerSec, 'f', 1, 64)})
	}
	if s.Evictions != nil {
		rows = append(rows, []string{"evictions", strconv.FormatUint(*s.Evictions, 10)})
	}
	rows = append(rows, []string{"terms", fmt.Sprintf("%d (%d takeover%s or restart%[3]s)", s.Terms, s.Takeovers, plural(int(s.Takeovers)))})
	if s.JournalBytes != nil {
		rows = append(rows, []string{"journal", humanBytes(*s.JournalBytes)})
	}
	if s.Durability != "" {
		rows = append(rows, []string{"durability", s.Durability})
	}
	return c.table(nil, rows)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d B)", float64(n)/float64(div), "KMGTP"[exp], n)
}

// valueKind names the type of a decoded value, for messages.
func valueKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64, int, uint:
		return "integer"
	case float32, float64:
		return "float"
	case string:
		return "string"
	case []byte:
		return "byte string"
	case []any:
		return "array"
	case map[string]any, map[any]any:
		return "object"
	case time.Time:
		return "time"
	}
	return fmt.Sprintf("%T", v)
}

// article puts "a" or "an" before a kind of value, but null.
func article(kind string) string {
	switch {
	case kind == "null":
		return kind
	case strings.ContainsRune("aeiou", rune(kind[0])):
		return "an " + kind
	}
	return "a " + kind
}

// jsonable turns a value decoded from msgpack into one encoding/json can
// encode: maps with keys other than strings get string keys, and floats
// that JSON cannot hold (NaN, ±Inf) become strings.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = jsonable(x)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[fmt.Sprint(k)] = jsonable(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = jsonable(x)
		}
		return out
	case []byte:
		// A byte string, as the Fiber adapter stores: base64 for the
		// bytes, and the text too if it is readable.
		out := map[string]any{"$base64": base64.StdEncoding.EncodeToString(v)}
		if utf8.Valid(v) && !bytes.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && !unicode.IsSpace(r) }) {
			out["$text"] = string(v)
		}
		return out
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return strconv.FormatFloat(v, 'g', -1, 64)
		}
	case float32:
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 32)
		}
	}
	return v
}

// jsonText is v as compact JSON.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jsonable(v)); err != nil {
		return fmt.Sprintf("%v", v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parseJSONValue parses one JSON value for set. Numbers become int64 when
// they are integers that fit (uint64 beyond), else float64, so that an
// integer is stored as a msgpack integer.
func parseJSONValue(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, usagef("the value %q is not JSON (%v); to store a string, quote it: '%q'", s, err, s)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, usagef("the value %q has more after its JSON value", s)
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(v.String(), 10, 64); err == nil {
			return u
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, x := range v {
			v[k] = numbers(x)
		}
	case []any:
		for i, x := range v {
			v[i] = numbers(x)
		}
	}
	return v
}

// printable returns b as it is if it is readable text on one line, else
// quoted.
func printable(b []byte) string {
	if len(b) == 0 {
		return `""`
	}
	if !utf8.Valid(b) || bytes.ContainsFunc(b, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(string(b))
	}
	return string(b)
}
