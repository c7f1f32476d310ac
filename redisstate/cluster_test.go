//go:build unix

package redisstate

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sharedstate/sharedstate"
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
	cli := lookPath(t, "redis-cli")
	c := &cluster{t: t}
	var addrs []string
	for _, port := range clusterPorts(t, 3) {
		n := newServer(t, port, []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"})
		n.start()
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.addr())
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !c.ready() {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster is not ready after 30s; redis-cli said:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// clusterPorts returns n loopback ports that are free, each with the port
// 10000 above it (the cluster bus) free too.
func clusterPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err == nil {
			bus.Close()
			ports = append(ports, port)
		}
		l.Close()
	}
	return ports
}

// ready reports whether every node sees the cluster as ok, with every slot
// served.
func (c *cluster) ready() bool {
	for _, n := range c.nodes {
		rdb := redis.NewClient(n.options())
		info, err := rdb.ClusterInfo(context.Background()).Result()
		rdb.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
	}
	return true
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
