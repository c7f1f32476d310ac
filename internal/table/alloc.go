package table

// The allocator: a free stack per size class, of the offsets of free
// blocks, and a bump offset past which the arena was never used. Its stacks
// are arrays of their own, so a free block holds nothing the allocator
// needs, and writing one before its transaction commits loses nothing.

// alloc returns a block of at least size bytes: the latest freed of its
// class, or new space. Blocks this transaction frees are not among them
// (see free), since readers may still reach those until it commits.
func (tx *Tx) alloc(size uint64) uint64 {
	c := classOf(size)
	st := stack(c)
	if n := tx.word(st + 8); n > 0 {
		off := word(tx.t.m, tx.word(st)+(n-1)*8)
		tx.set(st+8, n-1)
		return off
	}
	return tx.bump(classSize(c))
}

// bump returns size bytes of never used space, growing the file if needed.
func (tx *Tx) bump(size uint64) uint64 {
	off := tx.word(hBump)
	if err := tx.t.ensure(off + size); err != nil {
		tx.fail(err)
		return 0
	}
	tx.set(hBump, off+size)
	return off
}

// free returns the block of size bytes at off to its class, once the
// transaction commits: pushing it now would let this transaction allocate
// it and overwrite what readers still reach.
func (tx *Tx) free(off, size uint64) {
	tx.frees = append(tx.frees, freed{off, classOf(size)})
}

// thawBatch is how many of the blocks a Thaw freed one commit frees: a
// million at once would hold up an operation for milliseconds.
const thawBatch = 4096

// freed is a block a transaction frees, and its class.
type freed struct {
	off   uint64
	class int
}

// pushFrees pushes the blocks the transaction frees on their stacks, before
// it commits: the stacks' arrays past their lengths are free space too.
func (tx *Tx) pushFrees() {
	frees := tx.frees
	if f := tx.t.frozen; f != nil {
		tx.held, frees = f.hold(frees)
	} else if p := tx.t.pending; len(p) > 0 {
		tx.thawed = min(len(p), thawBatch)
		frees = append(frees[:len(frees):len(frees)], p[:tx.thawed]...)
	}
	m := tx.t.m
	for _, f := range frees {
		st := stack(f.class)
		arr, n, capacity := tx.word(st), tx.word(st+8), tx.word(st+16)
		if n == capacity {
			// A stack's old array is not reused: its arrays double, so all
			// of them together are at most twice the last.
			capacity = max(64, 2*capacity)
			grown := tx.bump(capacity * 8)
			if tx.err != nil {
				return
			}
			for i := range n { // as the transaction has them: it may have pushed some
				setWord(m, grown+i*8, tx.word(arr+i*8))
			}
			arr = grown
			tx.set(st, arr)
			tx.set(st+16, capacity)
		}
		if n < word(m, st+8) {
			// A slot the stack has in the table (this transaction popped
			// it): overwritten now, a crash before the commit would leave
			// a live block on the stack.
			tx.set(arr+n*8, f.off)
		} else {
			setWord(m, arr+n*8, f.off)
		}
		tx.set(st+8, n+1)
	}
}
