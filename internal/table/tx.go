package table

import (
	"errors"
	"fmt"
)

// Tx is a transaction of the owner: the changes of one operation, published
// at once by Commit. Blocks it allocates are written at once (no reader can
// reach them); every word a reader can reach is set by its plan, on
// Commit. A Tx is reused: Table.Begin returns the same one each time.
type Tx struct {
	t     *Table
	plan  []pair
	frees []freed
	held  []freed // of frees, those a Frozen holds
	// thawed is how many of the table's pending blocks it frees too.
	thawed int
	err    error // the first failure; Commit publishes nothing then
}

// pair is one store of a plan: the word at off becomes val.
type pair struct{ off, val uint64 }

// errPlanFull means a transaction changes more words than an intent holds:
// a defect of the caller, which keeps its transactions small.
var errPlanFull = errors.New("table: a transaction changes too many words")

// Begin starts a transaction.
func (t *Table) Begin() *Tx {
	tx := &t.tx
	tx.t, tx.plan, tx.frees, tx.held, tx.thawed, tx.err = t, tx.plan[:0], tx.frees[:0], nil, 0, nil
	return tx
}

// SetPosition records that the table holds the journal up to p once the
// transaction commits.
func (tx *Tx) SetPosition(p Position) {
	if tx.word(hJournal) != p.Journal {
		tx.set(hJournal, p.Journal)
	}
	if tx.word(hOffset) != p.Offset {
		tx.set(hOffset, p.Offset)
	}
}

// word returns the word at off as the transaction has it: its plan's value
// if it sets one, else the table's.
func (tx *Tx) word(off uint64) uint64 {
	for i := len(tx.plan) - 1; i >= 0; i-- {
		if tx.plan[i].off == off {
			return tx.plan[i].val
		}
	}
	return word(tx.t.m, off)
}

// set plans the word at off to become val.
func (tx *Tx) set(off, val uint64) {
	for i := range tx.plan {
		if tx.plan[i].off == off {
			tx.plan[i].val = val
			return
		}
	}
	if len(tx.plan) == maxPlan {
		tx.fail(errPlanFull)
		return
	}
	tx.plan = append(tx.plan, pair{off, val})
}

func (tx *Tx) fail(err error) {
	if tx.err == nil {
		tx.err = err
	}
}

// Commit publishes the transaction: the intent first, then the plan with
// the sequence number odd, which also marks the intent valid. It returns
// the transaction's first failure, if any, having published nothing (the
// blocks it wrote stay free).
func (tx *Tx) Commit() error {
	if len(tx.plan) == 0 && len(tx.frees) == 0 && tx.err == nil {
		return nil // it only read: nothing to publish
	}
	if err := tx.prepare(); err != nil {
		return err
	}
	if f := tx.t.frozen; f != nil {
		f.keep(tx.plan, tx.held)
	}
	seq := atomicWord(tx.t.m, hSeq)
	seq.Add(1) // odd: readers wait, and a new owner applies the intent again
	tx.apply(len(tx.plan))
	seq.Add(1)
	if tx.thawed > 0 {
		tx.t.pending = tx.t.pending[tx.thawed:]
		if len(tx.t.pending) == 0 {
			tx.t.pending = nil
		}
	}
	return nil
}

// prepare completes the plan and writes it as the intent, which counts
// once the sequence number is odd.
func (tx *Tx) prepare() error {
	tx.pushFrees()
	if tx.err != nil {
		return tx.err
	}
	m := tx.t.m
	for i, p := range tx.plan {
		setWord(m, hIntent+8+uint64(i)*16, p.off)
		setWord(m, hIntent+16+uint64(i)*16, p.val)
	}
	setWord(m, hIntent, uint64(len(tx.plan)))
	return nil
}

// apply performs the plan's first n stores.
func (tx *Tx) apply(n int) {
	for _, p := range tx.plan[:n] {
		setWord(tx.t.m, p.off, p.val)
	}
}

// recoverIntent applies again the plan of a transaction that its owner did
// not finish (the sequence number is odd), and makes the number even.
func (t *Table) recoverIntent() error {
	m := t.m
	seq := atomicWord(m, hSeq)
	if seq.Load()%2 == 0 {
		return nil
	}
	n := word(m, hIntent)
	if n > maxPlan {
		return fmt.Errorf("%w: an intent of %d stores", ErrCorrupt, n)
	}
	for i := range n {
		off, val := word(m, hIntent+8+i*16), word(m, hIntent+16+i*16)
		if !plannable(off, word(m, hSize)) {
			return fmt.Errorf("%w: an intent stores to offset %d", ErrCorrupt, off)
		}
		setWord(m, off, val)
	}
	seq.Add(1)
	return nil
}

// plannable reports whether a plan may store to off, in a table of size
// bytes: the words of the header that change, and the arena.
func plannable(off, size uint64) bool {
	switch {
	case off%8 != 0:
		return false
	case off == hOffset, off == hJournal, off == hBump, off == hOwner, off == hClock:
		return true
	case off >= hRoot && off < hRoot+nsWords*8, off >= hStacks && off < hStacks+nClasses*24:
		return true
	}
	return off >= hEnd && off+8 <= size
}
