package journal

import "fmt"

// tail is what follows a journal's records.
type tail int

const (
	tailClean tail = iota // zeros: the space reserved for more records
	tailTorn              // writes that were never acknowledged, cut short
)

// scan checks the records of a journal from off and returns where they end
// and what follows them.
//
// The records end at the first offset that does not hold a record. What
// follows may be zeros, or a record cut short and never acknowledged: a
// process that died while appending (the length is written last, so the
// record reads as zeros with its payload after them), or, after a machine
// crash, writes the last disk flush did not cover, partly on disk. Either
// way every record after the end, if any, was written before the end was
// committed (acknowledged), which each record's committed offset tells.
// Anything else is damage to records that were acknowledged, and so an
// error: a record after the end claims that the end was committed before
// it was written.
//
// Only the window bytes after the end are looked at: all of them for a
// journal that may have been cut short anywhere (a machine crash), fewer
// for one whose writer died (see OpenAt).
func scan(data []byte, off int, salt uint64, file string, window int) (end int, t tail, err error) {
	seed := seedOf(salt)
	for {
		_, _, next, ok := record(data, off, seed)
		if !ok {
			break
		}
		off = next
	}
	end = off
	data = data[:end+min(len(data)-end, window)]
	if zero(data[end:]) { // the usual case, at memory speed
		return end, tailClean, nil
	}
	claim, first := uint64(0), -1
	for at := end + 8; at+recordHeader <= len(data); {
		if _, committed, next, ok := record(data, at, seed); ok {
			claim = max(claim, committed)
			if first < 0 {
				first = at
			}
			at = next
			continue
		}
		at += 8
	}
	if claim > uint64(end) {
		return end, tailClean, &DamageError{File: file, Offset: end,
			Reason: fmt.Sprintf("not a record, with acknowledged records after it (the first at offset %d)", first)}
	}
	return end, tailTorn, nil
}

// zero reports whether b holds only zeros.
func zero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
