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

// TestRecoveringNeedMeetsEveryCopyOfASeenVersion: the other replicas a
// recovering replica must hear from meet every set of replicas that holds
// a version a client may have seen, less the recovering one.
func TestRecoveringNeedMeetsEveryCopyOfASeenVersion(t *testing.T) {
	for _, c := range []struct {
		n, w, r int
		member  bool
		need    int
	}{
		{1, 1, 1, true, 0},
		{2, 2, 2, true, 1}, // the defaults with every key on 2
		{3, 2, 2, true, 2}, // the defaults with every key on 3: both others
		{3, 3, 2, true, 2}, // write quorum all, but a read settles on 2: seed 78's case
		{3, 2, 2, false, 2},
		{4, 3, 3, true, 2},
		{5, 3, 3, true, 3},
		{3, 1, 3, true, 2}, // write quorum 1: every other replica, and no more
	} {
		g := Group{Members: make([]int, c.n), WriteNeed: c.w, ReadNeed: c.r}
		if got := g.RecoveringNeed(c.member); got != c.need {
			t.Errorf("%d replicas, W=%d, R=%d, member %v: RecoveringNeed %d, want %d", c.n, c.w, c.r, c.member, got, c.need)
		}
	}
}

// TestSeenNeedMeetsEveryCopyOfASeenVersion: the replicas a stamped write's
// first round needs meet every set that holds an acknowledged write (the
// write quorum) or a version a read returned (SettleNeed), and never
// exceed the read quorum.
func TestSeenNeedMeetsEveryCopyOfASeenVersion(t *testing.T) {
	for _, c := range []struct{ n, w, r, need int }{
		{1, 1, 1, 1},
		{2, 2, 2, 1}, // the defaults with every key on 2: both hold every seen version
		{3, 2, 2, 2}, // the defaults with every key on 3
		{3, 3, 2, 2}, // a read settles on 2 of 3 only
		{3, 1, 3, 3}, // write quorum one: every replica
		{4, 3, 3, 2},
		{5, 3, 3, 3},
	} {
		g := Group{Members: make([]int, c.n), WriteNeed: c.w, ReadNeed: c.r}
		got := g.SeenNeed()
		if got != c.need {
			t.Errorf("%d replicas, W=%d, R=%d: SeenNeed %d, want %d", c.n, c.w, c.r, got, c.need)
		}
		if got > c.r {
			t.Errorf("%d replicas, W=%d, R=%d: SeenNeed %d exceeds the read quorum", c.n, c.w, c.r, got)
		}
	}
}
