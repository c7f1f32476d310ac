// Package redisrun starts the Redis setups that the Redis engine's tests and
// the benchmark run: a redis-server on a Unix socket or a loopback port, a
// replica that has synced, and a Cluster of masters made as an operator
// makes one, with redis-cli --cluster create. It needs redis-server and
// redis-cli (Debian's packages; scripts/redis.sh installs them), and
// nothing but the standard library, so the root module can hold it.
package redisrun

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ClusterPorts returns n distinct loopback ports that are free, each with
// the port 10000 above it (its cluster bus) free too.
func ClusterPorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 < 65536 && !slices.Contains(ports, port) {
			if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
				bus.Close()
				ports = append(ports, port)
			}
		}
		l.Close()
	}
	return ports, nil
}

// ClusterArgs are the redis-server arguments of a Cluster's node.
var ClusterArgs = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}

// CreateCluster makes a Cluster of the nodes (host:port, started with
// ClusterArgs), each a master with a third of the slots, and waits until
// every node serves all of them, or ctx ends.
func CreateCluster(ctx context.Context, nodes []string) error {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return err
	}
	args := append(append([]string{"--cluster", "create"}, nodes...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for !ready(ctx, cli, nodes) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster of %v is not ready: %w", nodes, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// ready reports whether every node sees the cluster ok, every slot served.
func ready(ctx context.Context, cli string, nodes []string) bool {
	for _, n := range nodes {
		host, port, _ := net.SplitHostPort(n)
		out, err := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "cluster", "info").Output()
		if err != nil || !strings.Contains(string(out), "cluster_state:ok") || !strings.Contains(string(out), "cluster_slots_ok:16384") {
			return false
		}
	}
	return true
}
