package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

const stateName = "app"

type session struct {
	User  string
	Hits  int
	Roles []string
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openOwner opens the state in a new directory, as its owner.
func openOwner(t *testing.T) (string, *sharedstate.State) {
	t.Helper()
	dir := t.TempDir()
	return dir, openIn(t, dir)
}

func openIn(t *testing.T, dir string) *sharedstate.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, stateName, sharedstate.WithDir(dir),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if !st.IsOwner() {
		t.Fatal("the test's process is not the owner")
	}
	return st
}

// fill puts counters, a map and locks into st.
func fill(t *testing.T, st *sharedstate.State) {
	t.Helper()
	ctx := context.Background()
	must(t, st.Counter("hits").Store(ctx, 42))
	_, err := st.Counter("errors").Add(ctx, -3)
	must(t, err)
	sessions := sharedstate.NewMap[session](st, "sessions")
	must(t, sessions.Store(ctx, "alice", session{User: "alice", Hits: 3, Roles: []string{"admin"}}))
	must(t, sessions.Store(ctx, "bob", session{User: "bob", Hits: 1}, sharedstate.WithTTL(time.Hour)))
	must(t, st.Mutex("cron").Lock(ctx))
	free := st.Mutex("deploy")
	must(t, free.Lock(ctx))
	must(t, free.Unlock(ctx))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// inspect runs the inspector on the state in dir.
func inspect(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliCtx(t, context.Background(), dir, args...)
}

func cliCtx(t *testing.T, ctx context.Context, dir string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"-dir", dir, "-state", stateName}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// cliOK runs the inspector and fails the test unless it succeeds.
func cliOK(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errs, code := inspect(t, dir, args...)
	if code != 0 {
		t.Fatalf("sharedstate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// rows splits a table into the fields of its lines.
func rows(out string) [][]string {
	var r [][]string
	for line := range strings.Lines(out) {
		r = append(r, strings.Fields(line))
	}
	return r
}

func TestLs(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)

	pid := strconv.Itoa(os.Getpid())
	want := [][]string{
		{"KIND", "NAME", "VALUE"},
		{"counter", "errors", "-3"},
		{"counter", "hits", "42"},
		{"map", "sessions", "2", "entries"},
		{"lock", "cron", "held", "by", "pid", pid, "for", "0s", "(token", "1)"},
		{"lock", "deploy", "free"},
	}
	if got := rows(cliOK(t, dir, "ls")); !reflect.DeepEqual(got, want) {
		t.Errorf("ls:\n got %q\nwant %q", got, want)
	}

	var items []map[string]any
	if err := json.Unmarshal([]byte(cliOK(t, dir, "-json", "ls")), &items); err != nil {
		t.Fatal(err)
	}
	since, _ := items[3]["since"].(string)
	if when, err := time.Parse(time.RFC3339Nano, since); err != nil || time.Since(when) > time.Minute || time.Since(when) < 0 {
		t.Errorf("ls -json: cron held since %q (%v); want a moment ago", since, err)
	}
	delete(items[3], "since")
	wantJSON := []map[string]any{
		{"kind": "counter", "name": "errors", "value": -3.0},
		{"kind": "counter", "name": "hits", "value": 42.0},
		{"kind": "map", "name": "sessions", "len": 2.0},
		{"kind": "lock", "name": "cron", "held": true, "pid": float64(os.Getpid()), "token": 1.0},
		{"kind": "lock", "name": "deploy", "held": false, "token": 1.0},
	}
	if !reflect.DeepEqual(items, wantJSON) {
		t.Errorf("ls -json:\n got %v\nwant %v", items, wantJSON)
	}
}

func TestGet(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)

	if got := cliOK(t, dir, "get", "hits"); got != "42\n" {
		t.Errorf("get hits = %q, want 42", got)
	}
	if got, want := cliOK(t, dir, "get", "sessions", "alice"), `{"Hits":3,"Roles":["admin"],"User":"alice"}`+"\n"; got != want {
		t.Errorf("get sessions alice = %q, want %q", got, want)
	}
	want := [][]string{ // a TTL column, as bob's entry expires in an hour
		{"KEY", "VALUE", "TTL"},
		{"alice", `{"Hits":3,"Roles":["admin"],"User":"alice"}`, "-"},
		{"bob", `{"Hits":1,"Roles":null,"User":"bob"}`, "1h0m0s"},
	}
	if got := rows(cliOK(t, dir, "get", "sessions")); !reflect.DeepEqual(got, want) {
		t.Errorf("get sessions:\n got %q\nwant %q", got, want)
	}

	var e struct {
		Map, Key string
		Value    session
	}
	if err := json.Unmarshal([]byte(cliOK(t, dir, "-json", "get", "sessions", "alice")), &e); err != nil {
		t.Fatal(err)
	}
	if e.Map != "sessions" || e.Key != "alice" || e.Value.User != "alice" || e.Value.Hits != 3 {
		t.Errorf("get -json sessions alice = %+v", e)
	}
	var withTTL struct{ TTL string }
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "-json", "get", "sessions", "bob")), &withTTL))
	if withTTL.TTL != "1h0m0s" {
		t.Errorf("get -json sessions bob: ttl %q, want 1h0m0s", withTTL.TTL)
	}
	if _, errs, _ := inspect(t, dir, "get", "sessions", "bob"); !strings.Contains(errs, "expires in 1h0m0s") {
		t.Errorf("get sessions bob: stderr %q, want the time left", errs)
	}

	_, errs, code := inspect(t, dir, "get", "sessions", "nobody")
	if code != 1 || !strings.Contains(errs, `no key "nobody"`) {
		t.Errorf("get of a missing key: exit %d, stderr %q; want 1 and a message", code, errs)
	}
}

func TestSetAddDel(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx := context.Background()
	sessions := sharedstate.NewMap[session](st, "sessions")

	if got := cliOK(t, dir, "set", "sessions", "carol", `{"User":"carol","Hits":7,"Roles":["a","b"]}`); got != "OK\n" {
		t.Errorf("set: %q", got)
	}
	v, ok, err := sessions.Load(ctx, "carol")
	must(t, err)
	if want := (session{User: "carol", Hits: 7, Roles: []string{"a", "b"}}); !ok || !reflect.DeepEqual(v, want) {
		t.Errorf("after set, the library loads %+v, %v; want %+v", v, ok, want)
	}

	// Integers stay integers, so a typed map reads them.
	cliOK(t, dir, "set", "limits", "max", "1000")
	n, _, err := sharedstate.NewMap[int](st, "limits").Load(ctx, "max")
	must(t, err)
	if n != 1000 {
		t.Errorf("limits[max] = %d, want 1000", n)
	}

	cliOK(t, dir, "-ttl", "1h", "set", "sessions", "dave", `{"User":"dave"}`)
	if _, ok, _ := sessions.Load(ctx, "dave"); !ok {
		t.Error("set with -ttl stored nothing")
	}

	cliOK(t, dir, "set", "hits", "-100")
	if n, _ := st.Counter("hits").Load(ctx); n != -100 {
		t.Errorf("after set hits -100, hits = %d", n)
	}
	if got := cliOK(t, dir, "add", "hits", "5"); got != "-95\n" {
		t.Errorf("add hits 5 = %q, want -95", got)
	}

	if got := cliOK(t, dir, "del", "sessions", "carol"); got != "OK\n" {
		t.Errorf("del = %q", got)
	}
	if _, ok, _ := sessions.Load(ctx, "carol"); ok {
		t.Error("carol is still there after del")
	}
	if _, errs, code := inspect(t, dir, "del", "sessions", "carol"); code != 1 || !strings.Contains(errs, `no key "carol"`) {
		t.Errorf("del again: exit %d, stderr %q; want 1 and a message", code, errs)
	}
	var d struct{ Deleted bool }
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "-json", "del", "sessions", "dave")), &d))
	if !d.Deleted {
		t.Error("del -json of dave: deleted false")
	}
}

func TestUsageErrors(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	for _, args := range [][]string{
		{"bogus"},
		{"get"},
		{"get", "a", "b", "c"},
		{"set", "hits", "many"},
		{"set", "m", "k", "not json"},
		{"set", "m", "k", `{"a":1} x`},
		{"-ttl", "1s", "set", "hits", "1"},
		{"-nosuchflag", "ls"},
	} {
		if _, errs, code := inspect(t, dir, args...); code != 2 || errs == "" {
			t.Errorf("sharedstate %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), code, errs)
		}
	}
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"ls"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), "-state") {
		t.Errorf("without -state: exit %d, stderr %q", code, errs.String())
	}
	if code := run(context.Background(), []string{"help"}, &out, &errs); code != 0 {
		t.Errorf("help: exit %d", code)
	}
}

func TestNoSuchState(t *testing.T) {
	dir, _ := openOwner(t)
	var out, errs bytes.Buffer
	code := run(context.Background(), []string{"-dir", dir, "-state", "other", "ls"}, &out, &errs)
	if code != 1 || !strings.Contains(errs.String(), `no state "other"`) {
		t.Errorf("ls of a missing state: exit %d, stderr %q", code, errs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "other.lock")); err == nil {
		t.Error("the inspector created a lock file for a missing state")
	}
}

func TestStats(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)

	var s statsJSON
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "-json", "stats")), &s))
	if !s.Live || s.OwnerPID != os.Getpid() || s.OwnerSince == nil || s.UptimeSeconds == nil {
		t.Errorf("stats: owner fields %+v", s)
	}
	if s.Counters != 2 || s.Maps != 1 || s.Entries != 2 || s.Locks != 2 || s.Bytes <= 0 {
		t.Errorf("stats: counts %+v", s)
	}
	if s.Clients == nil || *s.Clients < 1 {
		t.Errorf("stats: clients %v, want the inspector at least", s.Clients)
	}
	if s.Ops == nil || *s.Ops == 0 || s.OpsPerSec != nil {
		t.Errorf("stats: ops %v, ops/s %v; want ops, and no rate unless asked", s.Ops, s.OpsPerSec)
	}
	if s.Evictions == nil || *s.Evictions != 0 {
		t.Errorf("stats: evictions %v, want 0 from a live owner with no bounded map", s.Evictions)
	}
	if s.Terms != 1 || s.Takeovers != 0 || s.Durability != "process" || s.JournalBytes == nil || *s.JournalBytes == 0 {
		t.Errorf("stats: terms %d takeovers %d durability %q journal %v", s.Terms, s.Takeovers, s.Durability, s.JournalBytes)
	}

	var sampled statsJSON
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "stats", "-json", "-interval", "50ms")), &sampled))
	if sampled.OpsPerSec == nil || *sampled.OpsPerSec < 0 {
		t.Errorf("stats -interval: ops/s %v", sampled.OpsPerSec)
	}
	out := cliOK(t, dir, "stats", "-interval", "50ms")
	for _, want := range []string{"owner pid", "uptime", "clients", "ops/s", "journal", "durability"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
}

// readFiles returns the contents of the state's files but its socket.
func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		files[e.Name()] = b
	}
	return files
}

func TestDumpLiveAndOffline(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx := context.Background()
	must(t, sharedstate.NewMap[map[int]string](st, "odd").Store(ctx, "ints", map[int]string{1: "one"}))
	must(t, sharedstate.NewMap[float64](st, "odd").Store(ctx, "nan", math.NaN()))

	var live dumpJSON
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "dump")), &live))
	want := dumpJSON{
		State:    stateName,
		Source:   "owner",
		Counters: map[string]int64{"hits": 42, "errors": -3},
		Maps: map[string]map[string]any{
			"sessions": {
				"alice": map[string]any{"User": "alice", "Hits": 3.0, "Roles": []any{"admin"}},
				"bob":   map[string]any{"User": "bob", "Hits": 1.0, "Roles": nil},
			},
			"odd": {"ints": map[string]any{"1": "one"}, "nan": "NaN"},
		},
		TTLs:  map[string]map[string]string{"sessions": {"bob": "1h0m0s"}},
		Locks: map[string]lockJSON{"cron": {Held: true, PID: os.Getpid(), Token: 1}, "deploy": {Token: 1}},
	}
	if cron := live.Locks["cron"]; cron.Since == nil || time.Since(*cron.Since) > time.Minute {
		t.Errorf("live dump: lock cron held since %v; want a moment ago", cron.Since)
	} else {
		cron.Since = nil
		live.Locks["cron"] = cron
	}
	if !reflect.DeepEqual(live, want) {
		t.Fatalf("live dump:\n got %+v\nwant %+v", live, want)
	}

	must(t, st.Close())
	before := readFiles(t, dir)

	var offline dumpJSON
	out, errs, code := inspect(t, dir, "dump")
	if code != 0 {
		t.Fatalf("offline dump: exit %d: %s", code, errs)
	}
	must(t, json.Unmarshal([]byte(out), &offline))
	if offline.Source != "journal" {
		t.Errorf("offline dump: source %q", offline.Source)
	}
	if !reflect.DeepEqual(offline.Counters, live.Counters) || !reflect.DeepEqual(offline.Maps, live.Maps) {
		t.Errorf("offline dump differs from the live one:\n got %+v\nwant %+v", offline, live)
	}
	// The owner's locks went with it.
	if c := offline.Locks["cron"]; c.Held || c.Token != 1 || len(offline.Locks) != 2 {
		t.Errorf("offline locks: %v", offline.Locks)
	}

	// Offline, reads work and writes are refused.
	if got := cliOK(t, dir, "get", "hits"); got != "42\n" {
		t.Errorf("offline get hits = %q", got)
	}
	if got := rows(cliOK(t, dir, "ls")); len(got) != 7 {
		t.Errorf("offline ls: %q", got)
	}
	if out := cliOK(t, dir, "stats"); !strings.Contains(out, "none: read from the journal") {
		t.Errorf("offline stats:\n%s", out)
	}
	for _, args := range [][]string{{"set", "hits", "1"}, {"del", "sessions", "alice"}, {"pub", "c", "m"}, {"watch", "sessions"}, {"sub", "c"}} {
		_, errs, code := inspect(t, dir, args...)
		if code != 1 || !strings.Contains(errs, "no process owns") {
			t.Errorf("offline %s: exit %d, stderr %q", args[0], code, errs)
		}
	}

	after := readFiles(t, dir)
	if !reflect.DeepEqual(before, after) {
		t.Error("the offline inspector changed the state's files")
	}
	if len(before[stateName+".journal"]) == 0 {
		t.Error("no journal to compare")
	}
}

// waitFor polls cond until it holds, doing act between tries.
func waitFor(t *testing.T, what string, act func(i int), cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; !cond(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		act(i)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPubSub(t *testing.T) {
	dir, st := openOwner(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var out, errs syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-state", stateName, "sub", "news"}, &out, &errs)
	}()
	waitFor(t, "the message", func(int) {
		cliOK(t, dir, "pub", "news", "drop caches")
	}, func() bool { return strings.Contains(out.String(), "drop caches\n") })

	// The owner's own messages reach the inspector too.
	_, err := st.Publish(context.Background(), "news", []byte("from the app"))
	must(t, err)
	waitFor(t, "the app's message", func(int) {}, func() bool { return strings.Contains(out.String(), "from the app\n") })

	cancel()
	if code := <-done; code != 0 {
		t.Errorf("sub: exit %d after interrupt; stderr %s", code, errs.String())
	}

	var p publishedJSON
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "-json", "pub", "news", "x")), &p))
	if p.Receivers != 0 {
		t.Errorf("pub with no subscriber left: %d receivers", p.Receivers)
	}
}

func TestWatch(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sessions := sharedstate.NewMap[session](st, "sessions")

	var out, errs syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-state", stateName, "-interval", "20ms", "watch", "sessions"}, &out, &errs)
	}()
	bg := context.Background()
	// Changes made before watch's first poll go unseen: repeat until one is.
	waitFor(t, "a change", func(i int) {
		must(t, sessions.Store(bg, "alice", session{User: "alice", Hits: 100 + i}))
	}, func() bool { return strings.Contains(out.String(), "changed sessions[alice] = {") })
	must(t, sessions.Store(bg, "carol", session{User: "carol"}, sharedstate.WithTTL(time.Hour)))
	waitFor(t, "an addition", func(int) {}, func() bool {
		return strings.Contains(out.String(), `added   sessions[carol] = {"Hits":0,"Roles":null,"User":"carol"}, expires in `)
	})
	must(t, sessions.Delete(bg, "bob"))
	waitFor(t, "a removal", func(int) {}, func() bool {
		return strings.Contains(out.String(), `removed sessions[bob] (was {"Hits":1,"Roles":null,"User":"bob"})`)
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch: exit %d after interrupt; stderr %s", code, errs.String())
	}
}

func TestWatchCounterJSON(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var out, errs syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-state", stateName, "-json", "-interval", "20ms", "watch", "hits"}, &out, &errs)
	}()
	waitFor(t, "a change", func(int) {
		_, err := st.Counter("hits").Add(context.Background(), 1)
		must(t, err)
	}, func() bool { return strings.Contains(out.String(), "\n") })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch: exit %d after interrupt; stderr %s", code, errs.String())
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	var ev struct {
		Event, Counter string
		Value, Old     int64
	}
	must(t, json.Unmarshal([]byte(line), &ev))
	if ev.Event != "changed" || ev.Counter != "hits" || ev.Value <= ev.Old || ev.Old < 42 {
		t.Errorf("watch event %+v", ev)
	}
}

// TestDecodeRaw checks the fallback decoder against Map[any] on the values
// both can decode.
func TestDecodeRaw(t *testing.T) {
	_, st := openOwner(t)
	ctx := context.Background()
	when := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	values := map[string]any{
		"int": 7, "neg": -70000, "big": uint64(math.MaxUint64), "min": int64(math.MinInt64),
		"float": 1.5, "f32": float32(0.25), "str": strings.Repeat("x", 300), "bytes": []byte{0, 1, 2},
		"nil": nil, "bool": true, "time": when, "time0": time.Unix(1, 0),
		"slice": []any{1, "a", []int{2}}, "map": map[string]any{"a": 1, "b": map[string]int{"c": 2}},
		"struct": session{User: "u", Roles: []string{"r"}},
	}
	m, raw := sharedstate.NewMap[any](st, "v"), sharedstate.NewMap[rawValue](st, "v")
	for k, v := range values {
		must(t, m.Store(ctx, k, v))
		want, _, err := m.Load(ctx, k)
		must(t, err)
		b, _, err := raw.Load(ctx, k)
		must(t, err)
		if got := decodeRaw(b); jsonText(got) != jsonText(want) {
			t.Errorf("%s: decodeRaw = %s, Map[any] = %s", k, jsonText(got), jsonText(want))
		}
	}
	if got := jsonText(decodeRaw([]byte{0x92, 0x01})); !strings.Contains(got, "$error") {
		t.Errorf("truncated value: %s", got)
	}
}

// TestRepair: a state whose journal is damaged in the middle fails to
// open; repair keeps what reads back whole, says what it set aside, and
// refuses while a process uses the state.
func TestRepair(t *testing.T) {
	dir, st := openOwner(t)
	ctx := context.Background()
	for range 10 {
		st.Counter("c").Add(ctx, 1)
	}
	if _, errs, code := inspect(t, dir, "repair"); code == 0 || !strings.Contains(errs, "a process uses the state") {
		t.Errorf("repair of a state in use: exit %d, stderr %q", code, errs)
	}
	st.Close()
	if out := cliOK(t, dir, "repair"); !strings.Contains(out, "nothing to repair") {
		t.Errorf("repair of a sound state: %q", out)
	}
	// Zero the word of the seventh record (the first two start the owner's
	// term: who owns it, and in which process).
	path := filepath.Join(dir, stateName+".journal")
	data, err := os.ReadFile(path)
	must(t, err)
	off := 40
	for range 6 {
		off = (off + 16 + int(data[off]) + 7) &^ 7
	}
	clear(data[off : off+8])
	must(t, os.WriteFile(path, data, 0o600))
	if _, errs, code := inspect(t, dir, "get", "c"); code == 0 || !strings.Contains(errs, "damaged") || !strings.Contains(errs, "repair") {
		t.Errorf("get on a damaged state: exit %d, stderr %q", code, errs)
	}
	out := cliOK(t, dir, "repair")
	if !strings.Contains(out, "kept the snapshot and 6 journal records") || !strings.Contains(out, "set aside "+path+".damaged-") {
		t.Errorf("repair: %q", out)
	}
	if out := cliOK(t, dir, "get", "c"); strings.TrimSpace(out) != "4" {
		t.Errorf("get c after repair: %q, want 4", out)
	}
}

// TestFlagsAnywhere: flags before, between and after the command and its
// arguments; negative numbers are arguments, and "--" ends the flags.
func TestFlagsAnywhere(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx := context.Background()
	runOK := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		if code := run(ctx, args, &out, &errs); code != 0 {
			t.Fatalf("sharedstate %s: exit %d: %s", strings.Join(args, " "), code, errs.String())
		}
		return out.String()
	}
	var items []map[string]any
	must(t, json.Unmarshal([]byte(runOK("ls", "-state", stateName, "-json", "-dir", dir)), &items))
	if len(items) != 5 {
		t.Errorf("ls -state app -json -dir DIR: %d items", len(items))
	}
	if got := runOK("add", "hits", "-5", "-state="+stateName, "--dir", dir); got != "37\n" {
		t.Errorf("add hits -5 = %q, want 37", got)
	}
	if got := runOK("-dir", dir, "set", "hits", "-state", stateName, "-100"); got != "OK\n" {
		t.Errorf("set with a flag between its arguments: %q", got)
	}
	if n, _ := st.Counter("hits").Load(ctx); n != -100 {
		t.Errorf("hits = %d, want -100", n)
	}
	runOK("-dir", dir, "-state", stateName, "set", "--", "m", "-k", `"v"`)
	if v, ok, _ := sharedstate.NewMap[string](st, "m").Load(ctx, "-k"); !ok || v != "v" {
		t.Errorf("after set -- m -k: %q, %v", v, ok)
	}
	for _, args := range [][]string{
		{"ls", "-state"},                      // a flag without its value
		{"ls", "-state", stateName, "-bogus"}, // an unknown flag after the command
	} {
		var out, errs bytes.Buffer
		if code := run(ctx, append([]string{"-dir", dir}, args...), &out, &errs); code != 2 {
			t.Errorf("sharedstate %s: exit %d; want 2", strings.Join(args, " "), code)
		}
	}
}

// TestMissingNames: a name or key that does not exist is an error, and
// nothing is made by asking.
func TestMissingNames(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"get", "nosuch"}, 1, `no counter or map called "nosuch"`},
		{[]string{"add", "hit", "1"}, 1, "set it first"},
		{[]string{"add", "sessions", "1"}, 2, "is a map"},
		{[]string{"add", "sessions", "alice", "1"}, 1, "not an integer"},
		{[]string{"add", "limits", "n", "1"}, 1, `no key "n"`},
		{[]string{"del", "nosuch"}, 1, `no counter called "nosuch"`},
		{[]string{"del", "sessions"}, 2, "is a map"},
		{[]string{"get", "hits", "-raw"}, 2, "-raw applies to one map entry"},
	} {
		_, errs, code := inspect(t, dir, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("sharedstate %s: exit %d, stderr %q; want %d and %q", strings.Join(c.args, " "), code, errs, c.code, c.msg)
		}
	}
	if found, _ := hasCounter(st, "hit"); found {
		t.Error("add of a missing counter made it")
	}

	if got := cliOK(t, dir, "del", "errors"); got != "OK\n" {
		t.Errorf("del errors = %q", got)
	}
	if found, _ := hasCounter(st, "errors"); found {
		t.Error("del of a counter left it")
	}
	cliOK(t, dir, "set", "limits", "n", "5")
	if got := cliOK(t, dir, "add", "limits", "n", "2"); got != "7\n" {
		t.Errorf("add limits n 2 = %q, want 7", got)
	}
	if n, _, _ := sharedstate.NewMap[int](st, "limits").Load(ctx, "n"); n != 7 {
		t.Errorf("limits[n] = %d, want 7", n)
	}
}

func hasCounter(st *sharedstate.State, name string) (found bool, err error) {
	err = st.Names(context.Background(), sharedstate.KindCounter, func(n string, _ int64) bool {
		found = found || n == name
		return true
	})
	return found, err
}

// TestRawValues: byte strings, as the Fiber adapter stores, shown as
// base64 and text, read and written with -raw.
func TestRawValues(t *testing.T) {
	dir, st := openOwner(t)
	ctx := context.Background()
	m := sharedstate.NewMap[[]byte](st, "fiber")
	must(t, m.Store(ctx, "text", []byte("hello")))
	must(t, m.Store(ctx, "bin", []byte{0, 0xff}))

	if got, want := cliOK(t, dir, "get", "fiber", "text"), `{"$base64":"aGVsbG8=","$text":"hello"}`+"\n"; got != want {
		t.Errorf("get of a byte string = %q, want %q", got, want)
	}
	if got, want := cliOK(t, dir, "get", "fiber", "bin"), `{"$base64":"AP8="}`+"\n"; got != want {
		t.Errorf("get of binary bytes = %q, want %q", got, want)
	}
	if got := cliOK(t, dir, "get", "fiber", "bin", "-raw"); got != "AP8=\n" {
		t.Errorf("get -raw = %q, want AP8=", got)
	}
	cliOK(t, dir, "set", "-raw", "fiber", "new", "AAEC")
	if b, ok, err := m.Load(ctx, "new"); err != nil || !ok || !bytes.Equal(b, []byte{0, 1, 2}) {
		t.Errorf("after set -raw, Map[[]byte] loads %v, %v, %v", b, ok, err)
	}
	if _, errs, code := inspect(t, dir, "set", "-raw", "fiber", "x", "not base64!"); code != 2 || !strings.Contains(errs, "not base64") {
		t.Errorf("set -raw of bad base64: exit %d, stderr %q", code, errs)
	}
	cliOK(t, dir, "set", "n", "k", "1")
	if _, errs, code := inspect(t, dir, "get", "-raw", "n", "k"); code != 1 || !strings.Contains(errs, "not a byte string") {
		t.Errorf("get -raw of an integer: exit %d, stderr %q", code, errs)
	}
}

// TestSetKeepsTypes: set refuses a value of another type than the map
// holds, unless forced.
func TestSetKeepsTypes(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	for _, args := range [][]string{
		{"set", "sessions", "alice", "5"},      // over an object
		{"set", "sessions", "zed", `"text"`},   // beside objects
		{"set", "-raw", "sessions", "a", "AA"}, // bytes beside objects
	} {
		if _, errs, code := inspect(t, dir, args...); code != 1 || !strings.Contains(errs, "-force") {
			t.Errorf("sharedstate %s: exit %d, stderr %q; want a refusal naming -force", strings.Join(args, " "), code, errs)
		}
	}
	cliOK(t, dir, "set", "sessions", "zed", `{"User":"zed"}`)
	cliOK(t, dir, "set", "sessions", "alice", "5", "-force")
	if n, _, err := sharedstate.NewMap[int](st, "sessions").Load(context.Background(), "alice"); err != nil || n != 5 {
		t.Errorf("after set -force: %d, %v", n, err)
	}
	cliOK(t, dir, "set", "floats", "a", "1.5")
	cliOK(t, dir, "set", "floats", "b", "2") // an integer where floats are: decodes
}

// TestStatesAndRm: states lists the directory's states, live or not;
// rm removes one, and refuses while a process uses it.
func TestStatesAndRm(t *testing.T) {
	dir, st := openOwner(t)
	fill(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	old, err := sharedstate.Open(ctx, "old", sharedstate.WithDir(dir), sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	must(t, err)
	_, err = old.Counter("c").Add(ctx, 1)
	must(t, err)
	must(t, old.Close())

	var states []stateJSON
	must(t, json.Unmarshal([]byte(cliOK(t, dir, "states", "-json")), &states))
	if len(states) != 2 || states[0].Name != stateName || states[1].Name != "old" {
		t.Fatalf("states: %+v", states)
	}
	if a := states[0]; !a.Live || a.OwnerPID != os.Getpid() || a.Keys == nil || *a.Keys != 4 || a.Bytes == 0 {
		t.Errorf("states: live state %+v", a)
	}
	if o := states[1]; o.Live || o.Keys == nil || *o.Keys != 1 || o.Error != "" {
		t.Errorf("states: offline state %+v", o)
	}
	table := rows(cliOK(t, dir, "states"))
	if len(table) != 3 || table[1][0] != stateName || table[1][2] != strconv.Itoa(os.Getpid()) || table[2][1] != "offline" {
		t.Errorf("states:\n%q", table)
	}

	if _, errs, code := inspect(t, dir, "rm", stateName); code != 1 || !strings.Contains(errs, "a process uses the state") {
		t.Errorf("rm of a live state: exit %d, stderr %q", code, errs)
	}
	if out := cliOK(t, dir, "rm", "old"); !strings.Contains(out, filepath.Join(dir, "old.journal")) {
		t.Errorf("rm old: %q; want the files it removed", out)
	}
	if _, errs, code := inspect(t, dir, "rm", "old"); code != 1 || !strings.Contains(errs, "no such state") {
		t.Errorf("rm of a removed state: exit %d, stderr %q", code, errs)
	}
	if _, errs, code := inspect(t, dir, "-state", "old", "ls"); code != 1 || !strings.Contains(errs, "there are: "+stateName) {
		t.Errorf("ls of a removed state: exit %d, stderr %q", code, errs)
	}
}
