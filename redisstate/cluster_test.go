//go:build unix

package redisstate

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/redisrun"
	"github.com/sharedstate/sharedstate/sharedstatetest"
)

// cluster is a Redis Cluster of three masters on loopback ports, made by
// redis-cli --cluster create, as its users make one.
type cluster struct {
	t     testing.TB
	nodes []*server
}

// startCluster starts a three-master Cluster, stopped when the test ends.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	lookPath(t, "redis-cli")
	ports, err := redisrun.ClusterPorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t}
	var addrs []string
	for _, port := range ports {
		n := newServer(t, port, redisrun.ClusterArgs)
		n.start()
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := redisrun.CreateCluster(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	return c
}

// client returns a Cluster client as an app would make one, closed when the
// test ends.
func (c *cluster) client() *redis.ClusterClient {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.addr())
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// TestClusterEveryState: states whose slots live on every master all work
// (through a single-node client, three of four failed every call with
// MOVED), and a State's Close leaves the app's client open.
func TestClusterEveryState(t *testing.T) {
	c := startCluster(t)
	rdb := c.client()
	ctx := testContext(t)
	masters := map[string]bool{}
	for i := range 8 {
		name := fmt.Sprintf("app%d", i)
		st, err := OpenClient(ctx, rdb, name)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := st.Counter("hits").Add(ctx, 1); err != nil || n != 1 {
			t.Errorf("state %s: Add = %d, %v", name, n, err)
		}
		if err := sharedstate.NewMap[string](st, "m").Store(ctx, "k", "v"); err != nil {
			t.Errorf("state %s: Store: %v", name, err)
		}
		st.Close()
		node, err := rdb.MasterForKey(ctx, "sharedstate:{"+name+"}:x")
		if err != nil {
			t.Fatal(err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Errorf("8 states all live on %v: the test does not cross masters", masters)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("the app's client after the States closed: %v", err)
	}
	// WithReplicas waits on the node of the state's slot: these masters
	// have no replica, so a write cannot be confirmed, and says so.
	st, err := OpenClient(ctx, rdb, "app0", WithReplicas(1, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	callCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := st.Counter("hits").Add(callCtx, 1); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Errorf("Add waiting for a replica on a Cluster without any: %v; want ErrUnavailable", err)
	}
	node, err := rdb.MasterForKey(ctx, "sharedstate:{app0}:x")
	if err != nil {
		t.Fatal(err)
	}
	if stats, err := node.Info(ctx, "commandstats").Result(); err != nil || !strings.Contains(stats, "cmdstat_wait:calls=") {
		t.Errorf("no WAIT ran on the master of the state's slot (%v):\n%s", err, stats)
	}
}

// TestConformanceCluster: the conformance suite on a three-master Cluster,
// each test's state on a slot of its own, through the app's client and
// through one that OpenClusterURL makes.
func TestConformanceCluster(t *testing.T) {
	c := startCluster(t)
	rdb := c.client()
	url := "redis://" + c.nodes[0].addr() + "?addr=" + c.nodes[1].addr()
	n := 0
	sharedstatetest.Run(t, func(t *testing.T) *sharedstate.State {
		n++
		name := fmt.Sprintf("conformance%d", n)
		st, err := OpenClient(testContext(t), rdb, name)
		if n%2 == 0 {
			st, err = OpenClusterURL(testContext(t), url, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// TestClusterReshard moves a state's slot to another master with
// redis-cli --cluster reshard, as an operator rebalancing a Cluster would,
// while goroutines add to a counter and store map entries: every call
// succeeds within its context (the client follows MOVED and ASK, the engine
// retries TRYAGAIN), and every acknowledged write is there after the move,
// once.
func TestClusterReshard(t *testing.T) {
	c := startCluster(t)
	rdb := c.client()
	ctx := testContext(t)
	// redis-cli moves a source's lowest slots first: find a state whose
	// slot is the lowest of its master's, and that master.
	var from, to *server
	lowest := map[int64]*server{}
	for _, n := range c.nodes {
		slots, err := redis.NewClient(n.options()).ClusterSlots(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			if r.Nodes[0].Addr == n.addr() {
				lowest[int64(r.Start)] = n
			}
		}
	}
	name := ""
	for i := 0; name == "" && i < 200000; i++ {
		candidate := fmt.Sprintf("reshard%d", i)
		slot, err := rdb.ClusterKeySlot(ctx, "sharedstate:{"+candidate+"}:x").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n := lowest[slot]; n != nil {
			name, from = candidate, n
		}
	}
	if name == "" {
		t.Fatal("no state name hashes to the first slot of a master")
	}
	for _, n := range c.nodes {
		if n != from {
			to = n
			break
		}
	}
	id := func(n *server) string {
		rdb := redis.NewClient(n.options())
		defer rdb.Close()
		id, err := rdb.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	st, err := OpenClient(ctx, rdb, name)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counter, m := st.Counter("hits"), sharedstate.NewMap[int](st, "m")
	const workers = 4
	var acked atomic.Int64
	var failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	for g := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := counter.Add(callCtx, 1)
				if err == nil {
					err = m.Store(callCtx, fmt.Sprintf("%d-%d", g, i), i)
				}
				cancel()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				acked.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	cli := lookPath(t, "redis-cli")
	out, err := exec.Command(cli, "--cluster", "reshard", from.addr(), "--cluster-from", id(from), "--cluster-to", id(to),
		"--cluster-slots", "1", "--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	for range workers {
		<-done
	}
	owner, err := rdb.MasterForKey(ctx, "sharedstate:{"+name+"}:x")
	if err != nil || owner.Options().Addr != to.addr() {
		t.Fatalf("the state's slot is on %v (%v), not on %s where it was moved", owner, err, to.addr())
	}
	if n := failures.Load(); n > 0 {
		t.Errorf("%d calls failed during the move; the first: %v", n, firstErr.Load())
	}
	n, err := counter.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	size, err := m.Len(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < acked.Load() || n > acked.Load()+failures.Load() || int64(size) < acked.Load() {
		t.Errorf("after the move: counter %d, %d entries; %d rounds acknowledged, %d failed", n, size, acked.Load(), failures.Load())
	}
	t.Logf("%d rounds of Add and Store while the slot moved", acked.Load())
}
