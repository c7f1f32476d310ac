//go:build unix

package sharedstate_test

// The checks of a chaos test's history: every acknowledged increment
// applied exactly once, and each key's history linearizable (porcupine).

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/anishathalye/porcupine"
)

// checkIncrements checks the increments of one key against its final
// value: each acknowledged one returned a value of its own, no higher than
// the final one, and the final value counts every acknowledged increment
// and at most every other (failed or cut short by a kill).
func checkIncrements(incs []*chaosOp, final int64) []string {
	var problems []string
	seen := make(map[int64]*chaosOp)
	acked, unknown, dups, above := 0, 0, 0, 0
	var firstDup, dupOf, firstAbove *chaosOp
	for _, op := range incs {
		if !op.known {
			unknown++
			continue
		}
		acked++
		if prev := seen[op.value]; prev != nil {
			if dups++; firstDup == nil {
				firstDup, dupOf = op, prev
			}
		}
		seen[op.value] = op
		if op.value < 1 || op.value > final {
			if above++; firstAbove == nil {
				firstAbove = op
			}
		}
	}
	if dups > 0 {
		problems = append(problems, fmt.Sprintf("%d values returned twice (the first: %d, to %v and %v): increments were lost or applied twice",
			dups, firstDup.value, dupOf, firstDup))
	}
	if above > 0 {
		problems = append(problems, fmt.Sprintf("%d acknowledged increments returned values outside 1..%d, the final value (the first: %d, to %v): acknowledged writes were lost",
			above, final, firstAbove.value, firstAbove))
	}
	if int64(acked) > final || final > int64(acked+unknown) {
		problems = append(problems, fmt.Sprintf("final value %d, but %d increments were acknowledged and %d more may have been applied", final, acked, unknown))
	}
	return problems
}

// registerHistory turns the operations on one key into the input of
// checkLinearizable: Add and Update are increments that return the new
// value, Load a read.
func registerHistory(ops []*chaosOp) []registerOp {
	out := make([]registerOp, 0, len(ops))
	for _, op := range ops {
		call := op.call
		if op.known {
			call = max(call, op.attempt)
		}
		out = append(out, registerOp{
			read:   op.kind == "load",
			known:  op.known,
			value:  op.value,
			call:   call,
			ret:    op.ret,
			client: [2]int{op.proc.idx, op.g},
			meta:   op,
		})
	}
	return out
}

// registerOp is an operation on an int64 register that starts at 0: an
// increment returning the new value, or a read.
type registerOp struct {
	read      bool
	known     bool  // it returned value; else its outcome is unknown
	value     int64 // new value (increment) or value read
	call, ret int64 // an unknown increment took effect by ret, or never
	client    [2]int
	meta      fmt.Stringer // for the visualization; may be nil
}

// registerInput is the input of a porcupine operation on the register.
type registerInput struct {
	kind     registerKind
	deadline int64  // of a maybe: it took effect before this time, or never
	desc     string // why a maybe is one
}

type registerKind uint8

const (
	regInc    registerKind = iota // an increment that returned the new value
	regRead                       // a read that returned the value
	regMaybe                      // an increment that may have taken effect, or not
	regExpire                     // the deadline of the maybes due now
)

// registerState is the set of values the register may hold: those in
// [lo, hi] plus up to len(pending)/8 increments, the maybes that may still
// take effect. pending holds their deadlines, as sorted big-endian int64s
// (a string, so that states compare with ==).
//
// An exact operation spends the pending increments it needs, earliest
// deadline first; at its deadline, a maybe still pending widens the
// interval instead (it took effect or not, no later). Keeping this
// uncertainty in the state, rather than having porcupine try each maybe
// both applied and not at every place, keeps the search from exploding
// when dozens of operations are cut short or in flight across a takeover:
// linearizing a maybe as early as possible is never worse than later.
type registerState struct {
	lo, hi  int64
	pending string
}

var anyRegister = registerState{lo: math.MinInt64, hi: math.MaxInt64}

func registerModel(init registerState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s, in := state.(registerState), input.(registerInput)
			switch in.kind {
			case regMaybe:
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(in.deadline))
				i := sort.Search(len(s.pending)/8, func(i int) bool { return s.pending[8*i:8*i+8] > string(b[:]) })
				s.pending = s.pending[:8*i] + string(b[:]) + s.pending[8*i:]
				return true, s
			case regExpire:
				n := sort.Search(len(s.pending)/8, func(i int) bool {
					return int64(binary.BigEndian.Uint64([]byte(s.pending[8*i:8*i+8]))) > in.deadline
				})
				s.pending = s.pending[8*n:]
				if s.hi <= math.MaxInt64-int64(n) {
					s.hi += int64(n)
				} else {
					s.hi = math.MaxInt64
				}
				return true, s
			}
			v := output.(int64)
			before := v // the value the operation saw
			if in.kind == regInc {
				before--
			}
			spend := max(before-s.hi, 0)
			if before < s.lo || spend > int64(len(s.pending)/8) {
				return false, s
			}
			return true, registerState{lo: v, hi: v, pending: s.pending[8*spend:]}
		},
		Hash: func(state any) uint64 {
			s := state.(registerState)
			return uint64(s.lo)*0x9e3779b97f4a7c15 ^ uint64(s.hi) ^ uint64(len(s.pending))<<48
		},
		DescribeOperation: func(input, output any) string {
			switch in := input.(registerInput); in.kind {
			case regInc:
				return fmt.Sprintf("inc() → %d", output)
			case regRead:
				return fmt.Sprintf("read() → %d", output)
			case regMaybe:
				return "inc() → ? (" + in.desc + ")"
			default:
				return "deadline of the increments that may have taken effect"
			}
		},
		DescribeOperationMetadata: func(meta any) string {
			if s, ok := meta.(fmt.Stringer); ok {
				return s.String()
			}
			return ""
		},
		DescribeState: func(state any) string {
			s := state.(registerState)
			var v string
			switch {
			case s.lo == anyRegister.lo && s.hi == anyRegister.hi:
				v = "any"
			case s.lo == s.hi:
				v = strconv.FormatInt(s.lo, 10)
			default:
				v = fmt.Sprintf("%d..%d", s.lo, s.hi)
			}
			if n := len(s.pending) / 8; n > 0 {
				v += fmt.Sprintf(", and %d increments that may take effect", n)
			}
			return v
		},
	}
}

// checkLinearizable checks with porcupine that ops, the history of one
// register, is linearizable.
//
// Porcupine's memory grows with the square of the history's length, and a
// run has hundreds of thousands of operations, so it checks overlapping
// windows of about window operations (in the order of their calls) each.
// A window [t0, t1] holds the operations that overlap it. Those wholly
// inside are exact. Those that straddle an edge may have taken effect
// outside it: an increment among them becomes a maybe, and a read is
// dropped. The register is then any value at the start of every window but
// the first. This never rejects a linearizable history, and it finds any
// violation that fits in half a window, including a write lost across a
// takeover; checkIncrements sees lost and duplicated writes at any
// distance.
//
// If visualize is set, a failing window is written out as porcupine's HTML
// visualization, with deaths (the times owners were killed) marked.
func checkLinearizable(ops []registerOp, window int, deaths []int64, visualize bool) error {
	slices.SortFunc(ops, func(a, b registerOp) int { return cmp.Compare(a.call, b.call) })
	var straddling []int // operations called before the window that may overlap it
	next := 0
	for i := 0; i < len(ops); i += max(window/2, 1) {
		end := min(i+window, len(ops))
		t0 := ops[i].call
		t1 := int64(math.MinInt64)
		for _, op := range ops[i:end] {
			t1 = max(t1, op.ret)
		}
		// A long call (one waiting out a takeover) stretches the window;
		// past four times its size, the long calls become maybes instead.
		for ; end < len(ops) && ops[end].call <= t1; end++ {
			if end-i >= 4*window {
				t1 = ops[end].call - 1
				break
			}
		}
		for ; next < i; next++ {
			straddling = append(straddling, next)
		}
		straddling = slices.DeleteFunc(straddling, func(j int) bool { return ops[j].ret < t0 })

		var history []porcupine.Operation
		clients := make(map[[2]int]int) // dense ids, for the visualization
		client := func(c [2]int) int {
			id, ok := clients[c]
			if !ok {
				id = len(clients)
				clients[c] = id
			}
			return id
		}
		expiring := make(map[int64]bool)
		add := func(op registerOp) {
			in := registerInput{kind: regInc}
			switch {
			case op.known && op.call >= t0 && op.ret <= t1:
				if op.read {
					in.kind = regRead
				}
			case op.read:
				return
			default:
				in = registerInput{kind: regMaybe, deadline: math.MaxInt64, desc: "cut short"}
				if op.known {
					in.desc = fmt.Sprintf("%d, maybe outside this window", op.value)
				}
				if op.ret < t1 {
					in.deadline = op.ret + 1
					expiring[in.deadline] = true
				}
			}
			history = append(history, porcupine.Operation{
				ClientId: client(op.client),
				Input:    in,
				Call:     op.call,
				Output:   op.value,
				Return:   op.ret,
				Metadata: op.meta,
			})
		}
		for _, j := range straddling {
			add(ops[j])
		}
		for _, op := range ops[i:end] {
			if op.call <= t1 {
				add(op)
			}
		}
		for d := range expiring {
			history = append(history, porcupine.Operation{
				ClientId: client([2]int{-1, -1}),
				Input:    registerInput{kind: regExpire, deadline: d},
				Call:     d,
				Return:   d,
			})
		}
		init := anyRegister
		if i == 0 {
			init = registerState{}
		}
		model := registerModel(init)
		// Without the partial linearizations that the visualization needs,
		// which take most of the time; a failing window is checked again
		// with them.
		res := porcupine.CheckOperationsTimeout(model, history, chaosCheckTimeout)
		if res == porcupine.Ok {
			if end == len(ops) {
				break
			}
			continue
		}
		if res == porcupine.Unknown {
			// Typical of a history that is not linearizable, whose search
			// is exhaustive.
			return fmt.Errorf("porcupine found no answer within %v for %d operations from %.3fs to %.3fs (monotonic clock)",
				chaosCheckTimeout, len(history), float64(t0)/1e9, float64(t1)/1e9)
		}
		err := fmt.Errorf("not linearizable: %d operations from %.3fs to %.3fs (monotonic clock)", len(history), float64(t0)/1e9, float64(t1)/1e9)
		if !visualize {
			return err
		}
		_, info := porcupine.CheckOperationsVerbose(model, history, chaosCheckTimeout)
		var notes []porcupine.Annotation
		for _, d := range deaths {
			if t0 <= d && d <= t1 {
				notes = append(notes, porcupine.Annotation{Tag: "test", Start: d, Description: "owner killed"})
			}
		}
		info.AddAnnotations(notes)
		// Not under t.TempDir, which is deleted when the test ends.
		f, ferr := os.CreateTemp("", "sharedstate-chaos-*.html")
		if ferr == nil {
			ferr = porcupine.Visualize(model, info, f)
			f.Close()
		}
		if ferr != nil {
			return fmt.Errorf("%v (visualization failed: %v)", err, ferr)
		}
		return fmt.Errorf("%v; visualization in %s", err, f.Name())
	}
	return nil
}

// TestChaosHistoryChecker checks the checks of TestChaosKillOwner on
// made-up histories, so that a pass there means something.
func TestChaosHistoryChecker(t *testing.T) {
	inc := func(client int, call, ret, v int64) registerOp {
		return registerOp{known: true, value: v, call: call, ret: ret, client: [2]int{client}}
	}
	read := func(client int, call, ret, v int64) registerOp {
		r := inc(client, call, ret, v)
		r.read = true
		return r
	}
	lost := func(client int, call, death int64) registerOp {
		return registerOp{call: call, ret: death, client: [2]int{client}}
	}
	// A steady run: 20 increments, one after the other, by three clients.
	// The cases add to it operations cut short ("lost") and late ones.
	var base []registerOp
	v := int64(0)
	for i := range int64(20) {
		v++
		base = append(base, inc(int(i%3), 100*i, 100*i+50, v))
	}
	for _, tc := range []struct {
		name string
		ops  []registerOp
		ok   bool
	}{
		{"steady", base, true},
		{"unknown applied", append(slices.Clone(base), lost(5, 1990, 2100), read(1, 2200, 2300, 21)), true},
		{"unknown not applied", append(slices.Clone(base), lost(5, 1990, 2100), read(1, 2200, 2300, 20)), true},
		{"unknown after return", append(slices.Clone(base), lost(5, 2200, 2300), read(1, 2000, 2100, 21)), false},
		{"both unknown applied", append(slices.Clone(base), lost(5, 1990, 2100), lost(6, 1990, 2100), inc(1, 2200, 2300, 23)), true},
		{"lost acknowledged write", append(slices.Clone(base), inc(1, 2200, 2300, 20)), false},
		{"lost write seen late", append(slices.Clone(base), read(1, 5000, 5100, 19)), false},
		{"stale read", append(slices.Clone(base), read(1, 2000, 2100, 15)), false},
		{"concurrent read", append(slices.Clone(base), read(1, 940, 1500, 10)), true},
		{"unknown applied after a later write", append(slices.Clone(base), lost(5, 1960, 2100), inc(1, 1970, 2500, 21), inc(1, 2600, 2700, 23)), true},
		{"unknown applied after its process died", append(slices.Clone(base), lost(5, 1960, 2100), inc(1, 1970, 1980, 21), read(2, 2150, 2160, 21), inc(1, 2200, 2300, 23)), false},
	} {
		for _, window := range []int{4, 7, 1000} {
			err := checkLinearizable(slices.Clone(tc.ops), window, nil, false)
			if (err == nil) != tc.ok {
				t.Errorf("%s, window %d: err = %v, want ok = %v", tc.name, window, err, tc.ok)
			}
		}
	}

	mk := func(vals ...int64) []*chaosOp {
		var ops []*chaosOp
		for _, v := range vals {
			ops = append(ops, &chaosOp{proc: &chaosProc{}, value: v, known: v > 0})
		}
		return ops
	}
	for _, tc := range []struct {
		name  string
		ops   []*chaosOp
		final int64
		ok    bool
	}{
		{"exact", mk(1, 2, 3), 3, true},
		{"unknown applied", mk(1, 3, 0), 3, true},
		{"unknown not applied", mk(1, 2, 0), 2, true},
		{"duplicate", mk(1, 2, 2), 3, false},
		{"lost", mk(1, 2, 3), 2, false},
		{"extra", mk(1, 2, 3), 4, false},
	} {
		if got := checkIncrements(tc.ops, tc.final); (len(got) == 0) != tc.ok {
			t.Errorf("checkIncrements %s: %v, want ok = %v", tc.name, got, tc.ok)
		}
	}
}
