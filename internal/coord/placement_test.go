package coord

import "testing"

// TestSettleNeedSurvivesALostDisk: a version a read returns is put on
// enough replicas that every later read quorum meets one, on at least
// two (so that one lost disk does not take it), on no fewer than the
// write quorum but never all of them.
func TestSettleNeedSurvivesALostDisk(t *testing.T) {
	for _, c := range []struct {
		n, w, r int
		settle  int
	}{
		{1, 1, 1, 1},
		{2, 2, 2, 2}, // the defaults with every key on 2
		{2, 1, 2, 2},
		{3, 2, 2, 2}, // the defaults with every key on 3
		{3, 3, 2, 2}, // write quorum all: one down must not block reads of a half-written version
		{3, 2, 3, 2},
		{4, 3, 3, 3}, // the local cluster's keys
		{5, 3, 3, 3},
	} {
		g := Group{Members: make([]int, c.n), WriteNeed: c.w, ReadNeed: c.r}
		if got := g.SettleNeed(); got != c.settle {
			t.Errorf("%d replicas, W=%d, R=%d: SettleNeed %d, want %d", c.n, c.w, c.r, got, c.settle)
		}
	}
}
