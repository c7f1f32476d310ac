package main

// Redis, the peer users weigh us against: a redis-server of the tool's own
// on a Unix socket, and worker targets for its two main Go clients.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/redis/rueidis"
	"github.com/sharedstate/sharedstate/internal/redisrun"
)

// findRedis returns the path of redis-server, or says how to install it.
// The tool installs nothing itself.
func findRedis() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed; on Debian or Ubuntu: apt-get install redis-server (package redis-server)")
	}
	return path, nil
}

// startRedis starts redis-server in dir, listening on a Unix socket only.
// With appendfsync "" persistence is off; otherwise every write goes to an
// append-only file, fsynced as appendfsync says (no, everysec, always).
func startRedis(ctx context.Context, dir, appendfsync string) (*redisrun.Server, error) {
	var args []string
	if appendfsync != "" {
		args = []string{"--appendonly", "yes", "--appendfsync", appendfsync}
	}
	return startServer(ctx, dir, 0, args...)
}

// startServer starts redis-server in dir, on a loopback port or (port 0) a
// Unix socket, and waits up to 10 seconds for it to answer.
func startServer(ctx context.Context, dir string, port int, args ...string) (*redisrun.Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return redisrun.Start(ctx, dir, port, args...)
}

// socketClient returns a go-redis client of a server on a Unix socket, for
// the coordinator's own commands.
func socketClient(srv *redisrun.Server) *redis.Client {
	return redisClient(job{Socket: srv.Addr()}).(*redis.Client)
}

// redisClient returns the go-redis client of j, with one connection per
// goroutine (per node of a Cluster): to redis-server's Unix socket, or
// over loopback TCP to j.Addrs, a Cluster's nodes if j.Cluster.
func redisClient(j job) redis.UniversalClient {
	pool := max(j.G, 1)
	off := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if j.Cluster {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: j.Addrs, PoolSize: pool, ContextTimeoutEnabled: true,
			DisableIdentity: true, MaintNotificationsConfig: off,
		})
	}
	network, addr := "unix", j.Socket
	if len(j.Addrs) > 0 {
		network, addr = "tcp", j.Addrs[0]
	}
	return redis.NewClient(&redis.Options{
		Network: network, Addr: addr, PoolSize: pool, ContextTimeoutEnabled: true,
		DisableIdentity:          true, // CLIENT SETINFO is newer than Debian's redis-server
		MaintNotificationsConfig: off,
	})
}

// infoField returns one numeric field of INFO section.
func infoField(ctx context.Context, c *redis.Client, section, field string) (float64, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("INFO %s has no %s", section, field)
}

// preloadRedis sets the counter and n map keys with values of size bytes,
// in pipelines of a thousand.
func preloadRedis(ctx context.Context, c *redis.Client, n, size int) error {
	if err := c.FlushAll(ctx).Err(); err != nil {
		return err
	}
	if err := c.Set(ctx, counterName, 0, 0).Err(); err != nil {
		return err
	}
	val := make([]byte, size)
	for i := 0; i < n; i += 1000 {
		p := c.Pipeline()
		for k := i; k < min(i+1000, n); k++ {
			p.Set(ctx, key(k), val, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// redisVersion returns what redis-server --version says.
func redisVersion() string {
	bin, err := findRedis()
	if err != nil {
		return "not installed"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// goRedisTarget runs INCR, GET and SET through go-redis: one command per
// round trip, one pooled connection per goroutine.
type goRedisTarget struct {
	j    job
	c    redis.UniversalClient
	keys []string
}

func openGoRedis(ctx context.Context, j job) (*goRedisTarget, error) {
	c := redisClient(j)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	return &goRedisTarget{j: j, c: c, keys: keyNames(j.Keys)}, nil
}

func (t *goRedisTarget) owner() bool { return false }
func (t *goRedisTarget) close()      { t.c.Close() }

// hotUpdate is a read-modify-write in one step at the server, as a Redis
// user would write Map.Update's increment: a Lua script.
const hotUpdate = `local n = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
redis.call('SET', KEYS[1], n)
return n`

var goRedisHotUpdate = redis.NewScript(hotUpdate)

func (t *goRedisTarget) op(g int) func(context.Context) error {
	switch t.j.Op {
	case opHotUpdate:
		return func(ctx context.Context) error { return goRedisHotUpdate.Run(ctx, t.c, []string{hotKey}).Err() }
	case opHotAdd:
		return func(ctx context.Context) error { return t.c.IncrBy(ctx, hotKey, 1).Err() }
	case opAdd:
		return func(ctx context.Context) error { return t.c.Incr(ctx, counterName).Err() }
	case opLoad:
		return func(ctx context.Context) error { return t.c.Get(ctx, counterName).Err() }
	case opMap:
		r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
		val := make([]byte, t.j.ValueSize)
		return func(ctx context.Context) error {
			k := t.keys[r.IntN(len(t.keys))]
			if r.IntN(10) == 0 {
				return t.c.Set(ctx, k, val, 0).Err()
			}
			return t.c.Get(ctx, k).Err()
		}
	}
	return func(context.Context) error { return fmt.Errorf("unknown op %q", t.j.Op) }
}

// rueidisTarget runs the same commands through rueidis, which pipelines
// concurrent commands onto shared connections on its own.
type rueidisTarget struct {
	j    job
	c    rueidis.Client
	keys []string
}

func openRueidis(ctx context.Context, j job) (*rueidisTarget, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{j.Socket},
		DialCtxFn: func(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return d.DialContext(ctx, "unix", addr)
		},
		DisableCache:      true, // no client-side caching: every GET goes to the server
		ForceSingleClient: true,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, err
	}
	return &rueidisTarget{j: j, c: c, keys: keyNames(j.Keys)}, nil
}

func (t *rueidisTarget) owner() bool { return false }
func (t *rueidisTarget) close()      { t.c.Close() }

var rueidisHotUpdate = rueidis.NewLuaScript(hotUpdate)

func (t *rueidisTarget) op(g int) func(context.Context) error {
	c := t.c
	switch t.j.Op {
	case opHotUpdate:
		return func(ctx context.Context) error { return rueidisHotUpdate.Exec(ctx, c, []string{hotKey}, nil).Error() }
	case opHotAdd:
		return func(ctx context.Context) error {
			return c.Do(ctx, c.B().Incrby().Key(hotKey).Increment(1).Build()).Error()
		}
	case opAdd:
		return func(ctx context.Context) error { return c.Do(ctx, c.B().Incr().Key(counterName).Build()).Error() }
	case opLoad:
		return func(ctx context.Context) error { return c.Do(ctx, c.B().Get().Key(counterName).Build()).Error() }
	case opMap:
		r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(g)))
		val := rueidis.BinaryString(make([]byte, t.j.ValueSize))
		return func(ctx context.Context) error {
			k := t.keys[r.IntN(len(t.keys))]
			if r.IntN(10) == 0 {
				return c.Do(ctx, c.B().Set().Key(k).Value(val).Build()).Error()
			}
			return c.Do(ctx, c.B().Get().Key(k).Build()).Error()
		}
	}
	return func(context.Context) error { return fmt.Errorf("unknown op %q", t.j.Op) }
}
