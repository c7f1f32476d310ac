package transport

import (
	"fmt"
	"testing"
)

func TestStrings(t *testing.T) {
	for s := StatusOK; s < statusEnd; s++ {
		if str := s.String(); str == "" || str == fmt.Sprintf("status(%d)", s) {
			t.Errorf("Status %d has no name", s)
		}
	}
	if got := statusEnd.String(); got != fmt.Sprintf("status(%d)", statusEnd) {
		t.Errorf("statusEnd.String() = %q", got)
	}
	for o := OpAdd; o < opEnd; o++ {
		if str := o.String(); str == "" || str == fmt.Sprintf("op(%d)", o) {
			t.Errorf("Op %d has no name", o)
		}
	}
	for _, o := range []Op{0, opEnd, 255} {
		if got, want := o.String(), fmt.Sprintf("op(%d)", o); got != want {
			t.Errorf("Op(%d).String() = %q, want %q", o, got, want)
		}
	}
	for _, o := range []Op{OpGet, OpLoad, OpLen, OpRange} {
		if o.Mutates() {
			t.Errorf("%v.Mutates() = true", o)
		}
	}
	for _, o := range []Op{OpAdd, OpStore, OpDelete, OpClear, OpLock, OpUnlock} {
		if !o.Mutates() {
			t.Errorf("%v.Mutates() = false", o)
		}
	}
}
