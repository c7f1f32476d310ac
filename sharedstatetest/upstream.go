package sharedstatetest

// Upstream tests: a library that an adapter plugs a State into has tests
// of its own, which build their backend with the library's default
// constructor. RunUpstream runs them with the file of that constructor
// replaced by a stand-in that returns the adapter instead, over
// UpstreamProxy, so the library's whole suite runs against the adapter
// through a proxy. The library is copied from the module cache into a
// temporary directory for the run (go test -overlay may not replace files
// in the module cache) and built in a workspace with the calling test's
// modules; nothing of it is kept.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// upstreamDirEnv tells the tests RunUpstream runs where UpstreamProxy finds
// the state.
const upstreamDirEnv = "SHAREDSTATE_UPSTREAM_DIR"

// RunUpstream runs go test on the packages pkgs of module (patterns
// relative to the module's root, like "." or "./middleware/..."), a
// dependency of the calling test's module, with the file of module named by
// each key of replace replaced by the file at the path its value names
// (relative to the calling test's directory: keep stand-ins in testdata).
// The calling process owns the state that the stand-ins reach with
// UpstreamProxy while the tests run. They run with the race detector when
// the calling test does. RunUpstream fails t unless every test of pkgs
// passes, and logs their output; it skips in -short mode.
func RunUpstream(t *testing.T, module string, pkgs []string, replace map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a go test of its own; skipped in -short mode")
	}
	tmp := t.TempDir()
	stateDir := filepath.Join(tmp, "state")
	owner, err := openUpstream(t.Context(), stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if !owner.IsOwner() {
		t.Fatal("the test does not own the state of its upstream tests")
	}
	copyDir := filepath.Join(tmp, "upstream")
	if err = os.CopyFS(copyDir, os.DirFS(goOutput(t, "list", "-m", "-f", "{{.Dir}}", module))); err != nil {
		t.Fatal(err)
	}
	for file, with := range replace {
		b, err := os.ReadFile(with)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(copyDir, file)
		if err := os.Chmod(dst, 0o600); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(tmp, "go.work")
	if err := os.WriteFile(work, workspace(t, copyDir), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"test", "-count=1"}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(t.Context(), "go", append(args, pkgs...)...)
	cmd.Dir = copyDir
	cmd.Env = append(os.Environ(), upstreamDirEnv+"="+stateDir, "GOWORK="+work, "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	t.Logf("go %s:\n%s", strings.Join(cmd.Args[1:], " "), out)
	if err != nil {
		t.Fatalf("%s's own tests failed: %v", module, err)
	}
}

// UpstreamProxy returns the State, reached through a proxy, that the
// stand-ins of a RunUpstream run build their adapters on: the same State on
// every call. It panics outside such a run, or if it would own the state.
func UpstreamProxy() *sharedstate.State { return upstreamProxy() }

var upstreamProxy = sync.OnceValue(func() *sharedstate.State {
	dir := os.Getenv(upstreamDirEnv)
	if dir == "" {
		panic("sharedstatetest.UpstreamProxy: not in the tests of a RunUpstream")
	}
	st, err := openUpstream(context.Background(), dir)
	if err != nil {
		panic(err)
	}
	if st.IsOwner() {
		panic("sharedstatetest.UpstreamProxy: the upstream tests own the state: they must reach it through a proxy")
	}
	return st
})

func openUpstream(ctx context.Context, dir string) (*sharedstate.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return sharedstate.Open(ctx, "upstream", sharedstate.WithDir(dir),
		sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
}

// workspace returns a go.work that uses the modules the calling test builds
// with (its workspace's, or its own module alone) and the library's copy.
func workspace(t *testing.T, copyDir string) []byte {
	var w struct {
		Use     []struct{ DiskPath string }
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	base := "."
	if gowork := goOutput(t, "env", "GOWORK"); gowork != "" && gowork != "off" {
		if err := json.Unmarshal([]byte(goOutput(t, "work", "edit", "-json", gowork)), &w); err != nil {
			t.Fatal(err)
		}
		base = filepath.Dir(gowork)
	} else {
		w.Use = append(w.Use, struct{ DiskPath string }{goOutput(t, "list", "-m", "-f", "{{.Dir}}")})
	}
	abs := func(path string) string {
		if filepath.IsAbs(path) {
			return path
		}
		return filepath.Join(base, path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "go %s\n\nuse %q\n", goOutput(t, "env", "GOVERSION")[len("go"):], copyDir)
	for _, u := range w.Use {
		fmt.Fprintf(&b, "use %q\n", abs(u.DiskPath))
	}
	for _, r := range w.Replace {
		to := r.New.Path
		if r.New.Version != "" {
			to += " " + r.New.Version
		} else {
			to = fmt.Sprintf("%q", abs(to))
		}
		fmt.Fprintf(&b, "replace %s %s => %s\n", r.Old.Path, r.Old.Version, to)
	}
	return []byte(b.String())
}

func goOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
