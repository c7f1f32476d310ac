package fiberstorage_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/limiter"
	"github.com/gofiber/fiber/v3/middleware/session"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/adapters/fiberstorage"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

// A child process of TestLimiterAcrossProcesses runs this test binary again
// with these variables set, and plays a worker instead of running the tests.
const (
	childDirEnv  = "FIBERSTORAGE_TEST_DIR"
	childHitsEnv = "FIBERSTORAGE_TEST_HITS"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(child(dir, os.Getenv(childHitsEnv)))
	}
	os.Exit(m.Run())
}

func open(t *testing.T, dir string) *sharedstate.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, "fiberstorage-test", sharedstate.WithDir(dir),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func get(t *testing.T, s fiber.Storage, key string) []byte {
	t.Helper()
	v, err := s.GetWithContext(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func TestStorage(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	a := fiberstorage.New(owner, "store")
	b := fiberstorage.New(proxy, "store")
	other := fiberstorage.New(proxy, "other")
	ctx := t.Context()

	if v, err := a.Get("missing"); v != nil || err != nil {
		t.Errorf("Get(missing) = %q, %v; want nil, nil", v, err)
	}

	val := []byte("v1")
	if err := a.Set("k", val, 0); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the storage must have kept its own copy
	if v := get(t, b, "k"); string(v) != "v1" {
		t.Errorf("Get(k) in the other process = %q, want %q", v, "v1")
	}

	// Fiber's contract: an empty key or value is ignored.
	if err := b.SetWithContext(ctx, "k", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.SetWithContext(ctx, "", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if v := get(t, a, "k"); string(v) != "v1" {
		t.Errorf("after setting an empty value, Get(k) = %q, want %q", v, "v1")
	}

	if err := b.Set("short", []byte("x"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := b.Set("long", []byte("y"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if v := get(t, a, "short"); string(v) != "x" {
		t.Errorf("Get(short) before expiry = %q, want %q", v, "x")
	}
	time.Sleep(100 * time.Millisecond)
	if v := get(t, a, "short"); v != nil {
		t.Errorf("Get(short) after expiry = %q, want nil", v)
	}
	if v := get(t, a, "long"); string(v) != "y" {
		t.Errorf("Get(long) = %q, want %q", v, "y")
	}

	if err := a.DeleteWithContext(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete("long"); err != nil { // deleting a missing key is no error
		t.Errorf("Delete of a missing key: %v", err)
	}
	if v := get(t, b, "long"); v != nil {
		t.Errorf("Get(long) after Delete = %q, want nil", v)
	}

	if err := other.Set("k", []byte("mine"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if v := get(t, a, "k"); v != nil {
		t.Errorf("Get(k) after Reset = %q, want nil", v)
	}
	if v := get(t, other, "k"); string(v) != "mine" {
		t.Errorf("Reset cleared another storage's entry: Get(k) = %q, want %q", v, "mine")
	}

	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if v := get(t, b, "k"); v != nil { // Close leaves the State open
		t.Errorf("Get(k) = %q, want nil", v)
	}
}

// limitedApp returns an app whose every route allows max requests a minute
// in total, counted in the storage called "limiter" of st.
func limitedApp(st *sharedstate.State, max int) *fiber.App {
	app := fiber.New()
	app.Use(limiter.New(limiter.Config{
		Max:          max,
		Expiration:   time.Minute,
		KeyGenerator: func(fiber.Ctx) string { return "everyone" },
		Storage:      fiberstorage.New(st, "limiter"),
	}))
	app.Get("/", func(c fiber.Ctx) error { return c.SendString("ok") })
	return app
}

// hit sends one request to app and returns its status and Retry-After.
func hit(app *fiber.App) (int, string, error) {
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, "/", nil))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get(fiber.HeaderRetryAfter), nil
}

func TestLimiterSharedBetweenStates(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	apps := []*fiber.App{limitedApp(owner, 5), limitedApp(proxy, 5)}
	var ok, limited int
	for i := range 10 {
		code, retryAfter, err := hit(apps[i%2]) // alternate, as a load balancer would
		if err != nil {
			t.Fatal(err)
		}
		switch code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 || n > 60 {
				t.Errorf("Retry-After = %q, want 1 to 60 seconds", retryAfter)
			}
		default:
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	// Each app alone would have allowed 5: 10 in all.
	if ok != 5 || limited != 5 {
		t.Errorf("%d allowed and %d limited, want 5 and 5: the limit is not shared", ok, limited)
	}
}

func TestSessionSharedBetweenStates(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	newApp := func(st *sharedstate.State) *fiber.App {
		app := fiber.New()
		app.Use(session.New(session.Config{Storage: fiberstorage.New(st, "sessions")}))
		app.Post("/login", func(c fiber.Ctx) error {
			session.FromContext(c).Set("user", "ann")
			return c.SendString("welcome")
		})
		app.Get("/whoami", func(c fiber.Ctx) error {
			user, _ := session.FromContext(c).Get("user").(string)
			return c.SendString(user)
		})
		return app
	}
	a, b := newApp(owner), newApp(proxy)

	resp, err := a.Test(httptest.NewRequest(http.MethodPost, "/login", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) == 0 {
		t.Fatal("login set no cookie")
	}

	req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err = b.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ann" {
		t.Errorf("the other process sees user %q, want %q", body, "ann")
	}
}

// TestLimiterAcrossProcesses shares one limit between this process and a
// child process.
func TestLimiterAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir)
	app := limitedApp(st, 5)
	for range 3 {
		if code, _, err := hit(app); err != nil || code != http.StatusOK {
			t.Fatalf("hit: %d, %v; want 200", code, err)
		}
	}

	// The child sends 4 requests: only 2 remain of the limit.
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childHitsEnv+"=4")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), "200 200 429 429"; got != want {
		t.Errorf("child's statuses = %q, want %q", got, want)
	}

	if code, _, err := hit(app); err != nil || code != http.StatusTooManyRequests {
		t.Errorf("hit after the child's: %d, %v; want 429", code, err)
	}
}

// child opens the state in dir, sends hits requests through a limited app,
// and prints their statuses.
func child(dir, hits string) int {
	n, err := strconv.Atoi(hits)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, "fiberstorage-test", sharedstate.WithDir(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	app := limitedApp(st, 5)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for i := range n {
		code, _, err := hit(app)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i > 0 {
			w.WriteString(" ")
		}
		w.WriteString(strconv.Itoa(code))
	}
	return 0
}

// TestIncrement: counts kept at the owner, exact from two processes at once,
// keeping the expiry of their first increment, apart from Set's values, and
// cleared by Reset.
func TestIncrement(t *testing.T) {
	owner, proxy := sharedstatetest.Pair(t)
	a, b := fiberstorage.New(owner, "limiter"), fiberstorage.New(proxy, "limiter")
	ctx := t.Context()
	// Long enough for the thousand Increments below on a loaded machine:
	// they must end before the count does.
	const window = 2 * time.Second
	began := time.Now()
	if n, err := a.Increment(ctx, "k", 1, window); err != nil || n != 1 {
		t.Fatalf("first Increment = %d, %v", n, err)
	}
	done := make(chan error, 20)
	for i := range 20 {
		s := []*fiberstorage.Storage{a, b}[i%2]
		go func() {
			for range 50 {
				if _, err := s.Increment(ctx, "k", 1, time.Hour); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 20 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.Increment(ctx, "k", 0, time.Hour); err != nil || n != 1001 {
		t.Fatalf("after 1,000 concurrent Increments: %d, %v; want 1001", n, err)
	}
	if v := get(t, a, "k"); v != nil {
		t.Errorf("Get of a counted key: %q; counts live apart", v)
	}
	time.Sleep(time.Until(began.Add(window + 100*time.Millisecond))) // the first Increment's TTL, kept by the others
	if n, err := a.Increment(ctx, "k", 1, time.Hour); err != nil || n != 1 {
		t.Errorf("Increment after the window: %d, %v; want a new count", n, err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Increment(ctx, "k", 1, 0); err != nil || n != 1 {
		t.Errorf("Increment after Reset: %d, %v; want 1", n, err)
	}
}

// TestUpstream runs the tests of Fiber's middleware that keep their state in
// a fiber.Storage (session, idempotency, limiter, cache and CSRF), with
// Fiber's memory storage, their default and the storage their tests
// configure, replaced by a Storage that reaches, through a proxy, the state
// this process owns: see testdata/memory.go.
func TestUpstream(t *testing.T) {
	sharedstatetest.RunUpstream(t, "github.com/gofiber/fiber/v3",
		[]string{"./middleware/session", "./middleware/idempotency", "./middleware/limiter", "./middleware/cache", "./middleware/csrf"},
		map[string]string{"internal/storage/memory/memory.go": "testdata/memory.go"})
}
