//go:build unix

package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// selfChecking returns a value that carries its key and version and a
// checksum of them, of a length that varies with the version.
func selfChecking(key string, version uint64) []byte {
	v := make([]byte, 12+int(version%300))
	binary.LittleEndian.PutUint64(v, version)
	for i := 12; i < len(v); i++ {
		v[i] = byte(int(version) + i)
	}
	binary.LittleEndian.PutUint32(v[8:], crc32.ChecksumIEEE(append([]byte(key), v[12:]...))^uint32(version))
	return v
}

func checkSelfChecking(key string, version uint64, v []byte) error {
	if len(v) < 12 || binary.LittleEndian.Uint64(v) != version || len(v) != 12+int(version%300) {
		return fmt.Errorf("%q: a value of %d bytes for version %d", key, len(v), version)
	}
	if binary.LittleEndian.Uint32(v[8:]) != crc32.ChecksumIEEE(append([]byte(key), v[12:]...))^uint32(version) {
		return fmt.Errorf("%q: version %d: bad checksum", key, version)
	}
	return nil
}

// TestReadersDuringWrites: readers that read while the owner writes as fast
// as it can see only whole entries, and never one older than the last
// version the writer had committed when their read began.
func TestReadersDuringWrites(t *testing.T) {
	tb, v, _ := newTestTable(t, 1<<30)
	const keys = 2000
	var committed [keys]atomic.Uint64 // the latest version of each key, once committed
	tx := tb.Begin()
	sp := tx.NewSpace("m:kv", 0).Space()
	commit(t, tx)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, busy atomic.Int64
	errs := make(chan error, 8)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			var buf []byte
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(keys)
				key := fmt.Sprintf("key%d", i)
				floor := committed[i].Load()
				got, err := v.Get("m:kv", key, buf)
				if errors.Is(err, ErrBusy) {
					busy.Add(1)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				buf = got.Value
				switch {
				case !got.Found && floor > 0:
					errs <- fmt.Errorf("%s: not found, after version %d was committed", key, floor)
				case got.Found && got.Version < floor:
					errs <- fmt.Errorf("%s: version %d, after %d was committed", key, got.Version, floor)
				case got.Found:
					if err := checkSelfChecking(key, got.Version, got.Value); err != nil {
						errs <- err
					}
				}
				if len(errs) > 0 {
					return
				}
			}
		}()
	}

	r := rand.New(rand.NewPCG(7, 7))
	var version uint64
	deadline := time.Now().Add(time.Second)
	writes := 0
	for time.Now().Before(deadline) && len(errs) == 0 {
		i := r.IntN(keys)
		key := fmt.Sprintf("key%d", i)
		version++
		tx := tb.Begin()
		tx.Put(sp, key, selfChecking(key, version), version, 0)
		// Other keys come and go, moving slots and reusing blocks.
		other := fmt.Sprintf("other%d", r.IntN(500))
		if r.IntN(2) == 0 {
			tx.Put(sp, other, make([]byte, r.IntN(300)), version, 0)
		} else {
			tx.Delete(sp, other)
		}
		commit(t, tx)
		committed[i].Store(version)
		writes++
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d writes, %d reads, %d busy", writes, reads.Load(), busy.Load())
	if reads.Load() == 0 {
		t.Fatal("no read finished")
	}
}

// FuzzView: whatever the bytes of the arena and of the header's words
// that change, a View returns or fails, and reads nothing outside.
func FuzzView(f *testing.F) {
	f.Add([]byte{}, uint64(hEnd+64), uint64(hEnd), uint64(8))
	f.Add(make([]byte, 512), uint64(hEnd+512), uint64(hEnd+64), uint64(16))
	f.Fuzz(func(t *testing.T, arena []byte, size, index, slots uint64) {
		tb, v, m := newTestTable(t, 1<<20)
		// A real table under the noise, so that lookups go somewhere.
		tx := tb.Begin()
		sp := tx.NewSpace("m:kv", 0).Space()
		for i := range 20 {
			tx.Put(sp, fmt.Sprint(i), []byte("value"), 1, 0)
		}
		commit(t, tx)
		copy(m[hEnd+256:], arena)
		setWord(m, hSize, size)
		setWord(m, hRoot+nsIndex, index)
		setWord(m, hRoot+nsSlots, slots)
		for _, key := range []string{"m:kv", "", "x"} {
			v.Get(key, "1", nil)
			v.Count(key, 0)
			v.Scan(key)
		}
	})
}

// TestBusyReadsNothing: a read that gives up on a transaction that does not
// end (its owner died in it, or is stopped) returns nothing it read.
func TestBusyReadsNothing(t *testing.T) {
	tb, v, m := newTestTable(t, 64<<20)
	tx := tb.Begin()
	tx.Put(Root, "k", []byte("value"), 1, 0)
	commit(t, tx)
	atomicWord(m, hSeq).Add(1) // in the middle of a transaction, for good
	r, err := v.Get("", "k", nil)
	if !errors.Is(err, ErrBusy) || r.Found || r.Value != nil {
		t.Fatalf("Get = %+v, %v; want nothing and ErrBusy", r, err)
	}
	if n, _, err := v.Count("k", 0); !errors.Is(err, ErrBusy) || n != 0 {
		t.Fatalf("Count = %d, %v; want 0 and ErrBusy", n, err)
	}
}
