package main

// The seed recipe that sharedstate replaces: a Python multiprocessing
// BaseManager serving a dict and a lock, and P processes each doing
// "with lock: d[k] = d.get(k, 0) + 1", which takes four round trips to the
// manager per increment.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

const managerScript = `# Written and run by the sharedstate benchmark tool.
import json, os, sys, threading, time
import multiprocessing as mp
from multiprocessing.managers import AcquirerProxy, BaseManager, DictProxy

_state = {}
_lock = threading.Lock()

def get_state():
    return _state

def get_lock():
    return _lock

class StateManager(BaseManager):
    pass

StateManager.register("state", callable=get_state, proxytype=DictProxy)
StateManager.register("lock", callable=get_lock, proxytype=AcquirerProxy)

def worker(address, authkey, start, end, results):
    m = StateManager(address=address, authkey=authkey)
    m.connect()
    state, lock = m.state(), m.lock()
    n = 0
    while True:
        with lock:
            state["hits"] = state.get("hits", 0) + 1
        now = time.time()
        if now >= end:
            break
        if now >= start:
            n += 1
    results.put(n)

def main():
    procs, warmup, duration, address = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    ctx = mp.get_context("fork")
    authkey = os.urandom(16)
    manager = StateManager(address=address, authkey=authkey, ctx=ctx)
    manager.start()
    start = time.time() + 0.5 + warmup  # 0.5 s for the processes to start
    end = start + duration
    results = ctx.Queue()
    ps = [ctx.Process(target=worker, args=(address, authkey, start, end, results)) for _ in range(procs)]
    for p in ps:
        p.start()
    total = sum(results.get() for _ in ps)
    for p in ps:
        p.join()
    final = manager.state().get("hits", 0)
    manager.shutdown()
    print(json.dumps({"ops": total, "seconds": duration, "final": final}))

if __name__ == "__main__":
    main()
`

// pythonResult is what the script prints.
type pythonResult struct {
	Ops     int64   `json:"ops"`
	Seconds float64 `json:"seconds"`
	Final   int64   `json:"final"` // the counter: every increment, warm-up included
}

// runPythonManager runs the recipe with procs processes and returns its
// increments per second.
func runPythonManager(ctx context.Context, dir string, procs int, warmup, duration time.Duration) (float64, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return 0, errors.New("python3 is not installed; on Debian: apt-get install python3")
	}
	script := filepath.Join(dir, "manager_recipe.py")
	if err := os.WriteFile(script, []byte(managerScript), 0o600); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, py, script, strconv.Itoa(procs),
		strconv.FormatFloat(warmup.Seconds(), 'f', 3, 64), strconv.FormatFloat(duration.Seconds(), 'f', 3, 64),
		filepath.Join(dir, "manager.sock"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("python manager recipe: %w", err)
	}
	var r pythonResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("python manager recipe printed %q: %w", out, err)
	}
	if r.Ops == 0 || r.Seconds == 0 {
		return 0, fmt.Errorf("python manager recipe counted nothing: %s", out)
	}
	return float64(r.Ops) / r.Seconds, nil
}
