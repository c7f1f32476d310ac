package main

// Workload 11: the library's API on the Redis engine (redisstate), for the
// apps that outgrow one host: one Redis server, a Redis Cluster of three
// masters, and a primary whose replica every write waits for
// (redisstate.WithReplicas), each beside go-redis's INCR on the same
// servers. All of them listen on loopback TCP, as a Cluster must.

import (
	"context"
	"fmt"

	"github.com/sharedstate/sharedstate/internal/redisrun"
)

// redisSetups are the servers of workload 11.
type redisSetups struct {
	single  []string // one server
	cluster []string // three masters
	primary []string // a primary with one replica
	servers []*redisrun.Server
}

func (r *redisSetups) stop() {
	for _, s := range r.servers {
		s.Stop()
	}
}

// startRedisSetups starts workload 11's servers: 6 redis-servers.
func (b *bench) startRedisSetups(ctx context.Context) (_ *redisSetups, err error) {
	r := &redisSetups{}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	ports, err := redisrun.ClusterPorts(6)
	if err != nil {
		return nil, err
	}
	start := func(port int, args ...string) (*redisrun.Server, error) {
		dir, err := b.fresh("redis-tcp")
		if err != nil {
			return nil, err
		}
		s, err := startServer(ctx, dir, port, args...)
		if err == nil {
			r.servers = append(r.servers, s)
		}
		return s, err
	}
	single, err := start(ports[0])
	if err != nil {
		return nil, err
	}
	r.single = []string{single.Addr()}
	for _, port := range ports[1:4] {
		node, err := start(port, redisrun.ClusterArgs...)
		if err != nil {
			return nil, err
		}
		r.cluster = append(r.cluster, node.Addr())
	}
	if err := redisrun.CreateCluster(ctx, r.cluster); err != nil {
		return nil, err
	}
	// Without the delay, a replica's first sync waits 5 seconds to start.
	primary, err := start(ports[4], "--repl-diskless-sync-delay", "0")
	if err != nil {
		return nil, err
	}
	r.primary = []string{primary.Addr()}
	replica, err := start(ports[5], "--replicaof", "127.0.0.1", fmt.Sprint(ports[4]))
	if err != nil {
		return nil, err
	}
	return r, replica.AwaitReplica(ctx)
}

// redisEngine is workload 11.
func (b *bench) redisEngine(ctx context.Context, s *section) error {
	p := b.cfg.procs
	s.Title = fmt.Sprintf("The Redis engine (redisstate): Counter.Add on one server, a 3-master Cluster, and WithReplicas(1), loopback TCP, %d processes x G goroutines", p)
	b.progress("workload 11: starting a Redis server, a Cluster of 3 masters, and a primary with a replica")
	r, err := b.startRedisSetups(ctx)
	if err != nil {
		return err
	}
	defer r.stop()
	for _, g := range b.cfg.goroutines {
		cells := []struct {
			name string
			j    job
		}{
			{"go-redis INCR, one server", job{Target: targetGoRedis, Addrs: r.single}},
			{"redisstate Counter.Add, one server", job{Target: targetRedisState, Addrs: r.single}},
			{"go-redis INCR, Cluster", job{Target: targetGoRedis, Addrs: r.cluster, Cluster: true}},
			{"redisstate Counter.Add, Cluster", job{Target: targetRedisState, Addrs: r.cluster, Cluster: true}},
			{"redisstate Counter.Add, primary with a replica", job{Target: targetRedisState, Addrs: r.primary}},
			{"redisstate Counter.Add, WithReplicas(1, 1s)", job{Target: targetRedisState, Addrs: r.primary, Replicas: 1}},
		}
		ops := make([]float64, len(cells))
		for i, c := range cells {
			c.j.Op, c.j.G = opAdd, g
			b.progress("workload 11: %s, G=%d", c.name, g)
			res, err := b.throughput(ctx, c.j, p, false)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ops[i] = res.opsPerSec
		}
		name := func(i int) string { return fmt.Sprintf("%s, G=%d", cells[i].name, g) }
		s.add(name(0), ops[0], "ops/s")
		s.add(name(1), ops[1], "ops/s").vs("go-redis INCR, one server", ops[0])
		s.add(name(2), ops[2], "ops/s").vs("go-redis INCR, one server", ops[0])
		s.add(name(3), ops[3], "ops/s").vs("redisstate, one server", ops[1])
		s.add(name(3), ops[3], "ops/s").vs("go-redis INCR, Cluster", ops[2])
		s.add(name(4), ops[4], "ops/s")
		s.add(name(5), ops[5], "ops/s").vs("the same without WAIT", ops[4])
	}
	s.note("a state lives in one slot, so on one master of a Cluster: more masters serve more states, not one state faster")
	s.note("redisstate's Add is a Lua script that records its request id (exactly once); WithReplicas adds a WAIT on the same connection")
	return nil
}
