package docker

import (
	"testing"
	"time"
)

// TestHistoryCheckFindsViolations proves that the checker of the fault
// suite catches what it claims to: each history below has a known number of
// lost writes and stale reads. It needs no Docker.
func TestHistoryCheckFindsViolations(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	write := func(value string, from, to, code int, ts int64) *op {
		return &op{kind: opWrite, key: "k", value: value, start: at(from), end: at(to), code: code, ts: ts}
	}
	del := func(from, to, code int, ts int64) *op {
		return &op{kind: opDelete, key: "k", start: at(from), end: at(to), code: code, ts: ts}
	}
	read := func(from, to, code int, value string, ts int64) *op {
		return &op{kind: opRead, key: "k", value: value, start: at(from), end: at(to), code: code, ts: ts}
	}
	tests := []struct {
		name        string
		ops         []*op
		final       int // how many of the last ops are final reads
		lost, stale int
	}{
		{name: "read after write", ops: []*op{write("a", 0, 10, 200, 100), read(20, 30, 200, "a", 100)}},
		{name: "never written", ops: []*op{read(0, 10, 404, "", 0)}},
		{name: "read concurrent with a write sees the old version",
			ops: []*op{write("a", 0, 10, 200, 100), write("b", 20, 40, 200, 200), read(25, 30, 200, "a", 100)}},
		{name: "a failed write may take effect later",
			ops: []*op{write("a", 0, 10, 200, 100), write("b", 20, 30, 0, 0), read(100, 110, 200, "b", 300)}},
		{name: "a write that lost with 409 is not acknowledged",
			ops: []*op{write("a", 0, 10, 200, 100), write("b", 20, 30, 409, 100), read(100, 110, 200, "a", 100)}},
		{name: "stale read",
			ops:   []*op{write("a", 0, 10, 200, 100), write("b", 20, 30, 200, 200), read(40, 50, 200, "a", 100)},
			stale: 1},
		{name: "not found after an acknowledged write",
			ops:   []*op{write("a", 0, 10, 200, 100), read(20, 30, 404, "", 0)},
			stale: 1},
		{name: "a value nobody wrote",
			ops:   []*op{write("a", 0, 10, 200, 100), read(20, 30, 200, "zzz", 100)},
			stale: 1},
		{name: "a value read before its write started",
			ops:   []*op{read(0, 10, 200, "a", 100), write("a", 20, 30, 0, 0)},
			stale: 1},
		{name: "an acknowledged write read with another timestamp",
			ops:   []*op{write("a", 0, 10, 200, 100), read(20, 30, 200, "a", 150)},
			stale: 1},
		{name: "two writes with one timestamp: the larger value wins",
			ops: []*op{write("a", 0, 10, 200, 100), write("b", 20, 30, 200, 100), read(40, 50, 200, "b", 100)}},
		{name: "a delete wins a tie",
			ops: []*op{write("a", 0, 10, 200, 100), del(20, 30, 204, 100), read(40, 50, 404, "", 100)}},
		{name: "a read during a restamped write sees its first attempt",
			ops: []*op{write("a", 0, 10, 200, 100), write("b", 20, 40, 200, 300), read(25, 30, 200, "b", 200)}},
		{name: "after the restamped write, its first attempt is stale",
			ops:   []*op{write("a", 0, 10, 200, 100), write("b", 20, 40, 200, 300), read(50, 60, 200, "b", 200)},
			stale: 1},
		{name: "a later write with a tie it loses",
			ops:  []*op{write("b", 0, 10, 200, 100), write("a", 20, 30, 200, 100)},
			lost: 1},
		{name: "two deletes with one timestamp",
			ops: []*op{del(0, 10, 204, 100), del(20, 30, 204, 100), read(40, 50, 404, "", 100)}},
		{name: "a later write shadowed by an earlier one",
			ops:  []*op{write("a", 0, 10, 200, 200), write("b", 20, 30, 200, 100)},
			lost: 1},
		{name: "lost at the end",
			ops:   []*op{write("a", 0, 10, 200, 100), write("b", 20, 30, 200, 200), read(100, 110, 200, "a", 100)},
			final: 1, lost: 1},
		{name: "a deleted key comes back",
			ops:   []*op{write("a", 0, 10, 200, 100), del(20, 30, 204, 200), read(100, 110, 200, "a", 100)},
			final: 1, lost: 1},
		{name: "a delete stays deleted",
			ops:   []*op{write("a", 0, 10, 200, 100), del(20, 30, 204, 200), read(100, 110, 404, "", 200)},
			final: 1},
		{name: "a tombstone nobody wrote",
			ops:   []*op{write("a", 0, 10, 200, 100), read(100, 110, 404, "", 150)},
			final: 1, lost: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			final := map[*op]bool{}
			for _, o := range tt.ops[len(tt.ops)-tt.final:] {
				final[o] = true
			}
			v := check(tt.ops, final)
			if v.lost != tt.lost || v.stale != tt.stale {
				t.Errorf("lost %d, stale %d; want %d, %d\n%v", v.lost, v.stale, tt.lost, tt.stale, v)
			}
		})
	}
}
