//go:build unix

package sharedstate_test

// The torture test of the owner's table: workers read it at full speed
// while others write, and the test SIGKILLs the owner again and again.
//
//	go test -run Torture -v .                        # 20 kills
//	go test -run Torture -v -torture.kills=100 .     # long run

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sharedstate/sharedstate"
)

var tortureKills = flag.Int("torture.kills", 20, "how many owners TestTortureTableReads kills; 100 or more for a long run")

const (
	tortureKeys    = 256 // shared by every writer
	tortureWriters = 2   // goroutines per worker
	tortureReaders = 4
)

func init() { workerRoles["torture"] = runTortureWorker }

// tortureValue is value n that writer wrote for key: it carries them, a
// length that varies with n, and a checksum of them all.
func tortureValue(key, writer string, n uint64) []byte {
	v := binary.LittleEndian.AppendUint64(nil, n)
	v = append(v, writer...)
	v = append(v, ':')
	for i := range int(n % 97) {
		v = append(v, byte(int(n)+i))
	}
	return binary.LittleEndian.AppendUint32(v, crc32.ChecksumIEEE(append([]byte(key), v...)))
}

// checkTortureValue returns the writer and number of a value of key, or
// why it is not one that a writer wrote.
func checkTortureValue(key string, v []byte) (writer string, n uint64, err error) {
	if len(v) < 13 {
		return "", 0, fmt.Errorf("%q: a value of %d bytes", key, len(v))
	}
	body, sum := v[:len(v)-4], binary.LittleEndian.Uint32(v[len(v)-4:])
	if crc32.ChecksumIEEE(append([]byte(key), body...)) != sum {
		return "", 0, fmt.Errorf("%q: a value of %d bytes with a bad checksum", key, len(v))
	}
	n = binary.LittleEndian.Uint64(body)
	writer, _, _ = strings.Cut(string(body[8:]), ":")
	return writer, n, nil
}

// runTortureWorker writes and reads map kv until told to stop. Its writers
// store random shared keys, and each its own key, printing
//
//	a <writer> <n> <time>    before storing value n in the writer's key
//	w <writer> <n> <time>    once the Store returned
//
// and its readers Load random shared keys and check what they read,
// printing "bad <quoted error>" for a value no writer wrote, and
// "reads <n>" when the worker stops.
func runTortureWorker() int {
	st, stop, err := openChaosWorker()
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	defer st.Close()
	kv := sharedstate.NewMap[[]byte](st, "kv")
	var wg sync.WaitGroup
	var reads atomic.Int64
	for g := range tortureWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := fmt.Sprintf("%d.%d", os.Getpid(), g)
			for n := uint64(1); !stopped(stop); n++ {
				shared := fmt.Sprintf("k%d", rand.IntN(tortureKeys))
				ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
				kv.Store(ctx, shared, tortureValue(shared, me, n))
				emitLine("a %s %d %d", me, n, monotonicNow())
				err := kv.Store(ctx, "own."+me, tortureValue("own."+me, me, n))
				cancel()
				if err != nil {
					emitLine("e %q", err.Error())
					continue
				}
				emitLine("w %s %d %d", me, n, monotonicNow())
			}
		}()
	}
	for range tortureReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped(stop) {
				key := fmt.Sprintf("k%d", rand.IntN(tortureKeys))
				ctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
				v, ok, err := kv.Load(ctx, key)
				cancel()
				if err != nil {
					emitLine("e %q", err.Error())
					continue
				}
				if ok {
					if _, _, err := checkTortureValue(key, v); err != nil {
						emitLine("bad %q", err.Error())
					}
				}
				reads.Add(1)
			}
		}()
	}
	wg.Wait()
	emitLine("reads %d", reads.Load())
	return 0
}

// TestTortureTableReads: four workers read the owner's table at full speed
// while they write, and the test SIGKILLs the owner again and again: no
// read returns a value that no writer wrote, no call fails, and every
// acknowledged write is there at the end (the linearizability of the
// table's reads across takeovers is TestChaosKillOwner's).
func TestTortureTableReads(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test: not in -short mode")
	}
	acked, attempted := map[string]uint64{}, map[string]uint64{}
	var bad, failed []string
	var reads int64
	c := newChaosCluster(t, "torture", nil)
	c.parse = func(p *chaosProc, line string) error {
		kind, rest, _ := strings.Cut(line, " ")
		f := strings.Fields(rest)
		switch {
		case kind == "a" && len(f) == 3 || kind == "w" && len(f) == 3:
			n, err := strconv.ParseUint(f[1], 10, 64)
			at, err2 := strconv.ParseInt(f[2], 10, 64)
			if err != nil || err2 != nil {
				return fmt.Errorf("bad line %q", line)
			}
			if kind == "a" {
				attempted[f[0]] = n
			} else {
				acked[f[0]] = n
				c.progressed(at)
			}
		case kind == "bad":
			bad = append(bad, rest)
		case kind == "e":
			failed = append(failed, rest)
		case kind == "reads":
			n, _ := strconv.ParseInt(rest, 10, 64)
			reads += n
		default:
			return fmt.Errorf("bad line %q", line)
		}
		return nil
	}
	c.run(*tortureKills, 1<<10)
	c.stop()
	c.report()
	if len(bad) > 0 {
		t.Errorf("%d reads returned a value no writer wrote; the first: %s", len(bad), bad[0])
	}
	if len(failed) > 0 {
		t.Errorf("%d calls failed; the first: %s", len(failed), failed[0])
	}

	ctx, st := c.reopen()
	kv := sharedstate.NewMap[[]byte](st, "kv")
	for writer, n := range acked {
		v, ok, err := kv.Load(ctx, "own."+writer)
		if err != nil || !ok {
			t.Fatalf("own.%s: %v, %v", writer, ok, err)
		}
		w, got, err := checkTortureValue("own."+writer, v)
		switch {
		case err != nil:
			t.Error(err)
		case w != writer || got < n || got > attempted[writer]:
			t.Errorf("own.%s holds value %d of %s; %d was acknowledged, %d the last tried", writer, got, w, n, attempted[writer])
		}
	}
	t.Logf("%d owners killed; %d writers' last acknowledged writes there; %d reads by the workers that stopped", len(c.deaths), len(acked), reads)
}
