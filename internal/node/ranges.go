package node

import (
	"slices"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/ring"
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
	out := map[string][]hashRange{}
	var buf []config.Node
	forEachArc(cfg, func(r hashRange, owner uint32) {
		buf = cfg.ReplicasOfHash(buf[:0], owner)
		if !slices.ContainsFunc(buf, func(n config.Node) bool { return n.ID == self }) {
			return
		}
		for _, n := range buf {
			if n.ID != self {
				out[n.ID] = appendMerged(out[n.ID], r)
			}
		}
	})
	return out
}

// appendMerged appends r to rs (in increasing order), merging it into the
// last range when they touch.
func appendMerged(rs []hashRange, r hashRange) []hashRange {
	if n := len(rs); n > 0 && rs[n-1].hi != ^uint32(0) && rs[n-1].hi+1 == r.lo {
		rs[n-1].hi = r.hi
		return rs
	}
	return append(rs, r)
}

// selfRanges returns the merged ranges of the hash space whose keys node
// self is a replica of under cfg.
func selfRanges(cfg *config.Config, self string) []hashRange {
	return arcsWhere(cfg, cfg.ReplicasOfHash, self, 1)
}

// replicatedRanges returns the merged ranges of the hash space whose keys
// node self holds together with at least one peer: where it can lack data
// that a peer has.
func replicatedRanges(cfg *config.Config, self string) []hashRange {
	return arcsWhere(cfg, cfg.ReplicasOfHash, self, 2)
}

// deploymentRanges returns the merged ranges whose keys node self is a
// replica of under deployment d alone (cfg's active or target).
func deploymentRanges(cfg *config.Config, d *config.Deployment, self string) []hashRange {
	return arcsWhere(cfg, d.ReplicasOfHash, self, 1)
}

// arcsWhere returns the merged arcs of cfg whose replicas, as replicas
// lists them, include self and number at least minReplicas.
func arcsWhere(cfg *config.Config, replicas func(dst []config.Node, h uint32) []config.Node, self string, minReplicas int) []hashRange {
	var out []hashRange
	var buf []config.Node
	forEachArc(cfg, func(r hashRange, owner uint32) {
		buf = replicas(buf[:0], owner)
		if len(buf) >= minReplicas && slices.ContainsFunc(buf, func(n config.Node) bool { return n.ID == self }) {
			out = appendMerged(out, r)
		}
	})
	return out
}

// forEachArc calls f with every arc of the union of cfg's rings, in
// increasing order, and a hash that owns it.
func forEachArc(cfg *config.Config, f func(r hashRange, owner uint32)) {
	bounds := cfg.Active.Ring.Boundaries()
	if cfg.Target != nil {
		bounds = append(bounds, cfg.Target.Ring.Boundaries()...)
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
	}
	ring.Arcs(bounds, func(lo, hi, owner uint32) { f(hashRange{lo, hi}, owner) })
}

// gainedRanges returns the ranges whose keys node self holds under next,
// together with a peer, and did not hold under prev.
func gainedRanges(prev, next *config.Config, self string) []hashRange {
	return subtract(replicatedRanges(next, self), selfRanges(prev, self))
}
