package node

import (
	"slices"

	"github.com/takodb/tako/internal/config"
)

// hashRange is an inclusive range [lo, hi] of the 32-bit key-hash space.
type hashRange struct{ lo, hi uint32 }

// sharedRanges returns, for every peer that shares keys with node self, the
// ranges of the hash space whose keys both hold under cfg (the union of the
// active and target deployments). The ranges come from the rings' arcs:
// between two consecutive points of either ring every key has the same
// replicas, so each arc is either shared with a peer or not, whole.
// Adjacent ranges are merged; each peer's ranges are in increasing order.
func sharedRanges(cfg *config.Config, self string) map[string][]hashRange {
	bounds := cfg.Active.Ring.Boundaries()
	if cfg.Target != nil {
		bounds = append(bounds, cfg.Target.Ring.Boundaries()...)
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
	}
	out := map[string][]hashRange{}
	add := func(peer string, r hashRange) {
		rs := out[peer]
		if n := len(rs); n > 0 && rs[n-1].hi != ^uint32(0) && rs[n-1].hi+1 == r.lo {
			rs[n-1].hi = r.hi
		} else {
			rs = append(rs, r)
		}
		out[peer] = rs
	}
	var buf []config.Node
	arc := func(r hashRange, owner uint32) {
		buf = cfg.ReplicasOfHash(buf[:0], owner)
		if !slices.ContainsFunc(buf, func(n config.Node) bool { return n.ID == self }) {
			return
		}
		for _, n := range buf {
			if n.ID != self {
				add(n.ID, r)
			}
		}
	}
	if len(bounds) == 0 {
		return out
	}
	// Hashes not above the first boundary belong with it; the arc above
	// the last boundary wraps around to the first too.
	arc(hashRange{0, bounds[0]}, bounds[0])
	for i := 1; i < len(bounds); i++ {
		arc(hashRange{bounds[i-1] + 1, bounds[i]}, bounds[i])
	}
	if last := bounds[len(bounds)-1]; last != ^uint32(0) {
		arc(hashRange{last + 1, ^uint32(0)}, bounds[0])
	}
	return out
}

// ownedRanges returns the merged ranges of the hash space whose keys node
// self holds under cfg (with at least one peer).
func ownedRanges(cfg *config.Config, self string) []hashRange {
	var all []hashRange
	for _, rs := range sharedRanges(cfg, self) {
		all = append(all, rs...)
	}
	slices.SortFunc(all, func(a, b hashRange) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out []hashRange
	for _, r := range all {
		if n := len(out); n > 0 && (r.lo <= out[n-1].hi || (out[n-1].hi != ^uint32(0) && r.lo == out[n-1].hi+1)) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// gainsRanges reports whether node self holds keys under next that it did
// not hold under prev.
func gainsRanges(prev, next *config.Config, self string) bool {
	had := ownedRanges(prev, self)
	for _, r := range ownedRanges(next, self) {
		if !slices.ContainsFunc(had, func(h hashRange) bool { return h.lo <= r.lo && r.hi <= h.hi }) {
			return true
		}
	}
	return false
}
