package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// Garbage collection runs after a clean repair pass. Repair itself does not
// spread a tombstone older than the grace to a replica that has no record
// of the key: such a replica cannot bring the key back, and the tombstone
// is on its way out. It drops two kinds of records, each only once the
// nodes that could bring back what it drops have confirmed that they hold
// the record or a newer one (the configuration alone is never enough to
// drop data):
//   - records of keys this node is no longer a replica of (after a
//     migration was promoted, or a node left); a replica that lacks the
//     record is sent it first (hand-off), and it is dropped on a later pass;
//   - tombstones older than the deployment's tombstone_grace, so that a
//     deleted key stays deleted on every replica, even one that was down
//     for longer than the grace: its tombstone is kept until that replica
//     too holds it;
//   - values that expired more than tombstone_grace ago, by the same rule
//     and for the same reason: an expired value is the newest version of
//     its key, and a replica that lacks it may hold an older one that
//     would come back if it were dropped everywhere else.
// A value is confirmed by the key's current replicas; a tombstone (and an
// expired value) by every
// node of the cluster, replica or not, for a node that holds an older
// value of a key it no longer replicates would hand it back to replicas
// that dropped the tombstone (found by the simulator, internal/sim).

// gcBatch is how many records one garbage collection round considers.
const gcBatch = 256

type gcStats struct {
	notOwned, tombstones, expired int // dropped
	handedOff                     int // sent to a replica that lacked them
}

type gcCandidate struct {
	key []byte
	rec store.Record
}

// complement returns the parts of the hash space not in rs (sorted, merged).
func complement(rs []hashRange) []hashRange {
	var out []hashRange
	next := uint64(0)
	for _, r := range rs {
		if uint64(r.lo) > next {
			out = append(out, hashRange{uint32(next), r.lo - 1})
		}
		next = uint64(r.hi) + 1
	}
	if next <= uint64(^uint32(0)) {
		out = append(out, hashRange{uint32(next), ^uint32(0)})
	}
	return out
}

// collectGarbage drops what it safely can under cfg.
func (n *Node) collectGarbage(ctx context.Context, cfg *config.Config) (gcStats, error) {
	var stats gcStats
	owned := selfRanges(cfg, n.id)
	grace := n.settings(cfg).TombstoneGrace
	now := n.clock.Wall()
	oldest := now - grace.Microseconds()
	scan := func(ranges []hashRange, want func(rec store.Record) bool, kind func(rec store.Record) string) error {
		for _, r := range ranges {
			// Collect a batch with the iterator, then let it go before the
			// round calls peers; resume after the batch's last key.
			lo := r.lo
			var after []byte
			for {
				var batch []gcCandidate
				err := n.store.Scan(ctx, lo, r.hi, func(key []byte, rec store.Record) error {
					if after != nil && keyHashOrder(key, after) <= 0 || !want(rec) {
						return nil
					}
					batch = append(batch, gcCandidate{bytes.Clone(key), rec.Clone()})
					if len(batch) == gcBatch {
						return errBatchFull
					}
					return nil
				})
				if err != nil && !errors.Is(err, errBatchFull) {
					return err
				}
				if err := n.gcRound(ctx, cfg, batch, now, kind, &stats); err != nil {
					return err
				}
				if len(batch) < gcBatch {
					break
				}
				after = batch[len(batch)-1].key
				lo = keyhash.Sum(after)
			}
		}
		return nil
	}
	if err := scan(complement(owned), func(store.Record) bool { return true }, func(store.Record) string { return gcNotOwned }); err != nil {
		return stats, err
	}
	err := scan(owned, func(rec store.Record) bool { return goneBefore(rec, now, oldest) }, func(rec store.Record) string {
		if rec.Tombstone {
			return gcTombstone
		}
		return gcExpired
	})
	return stats, err
}

var errBatchFull = errors.New("node: gc batch full")

// The kinds of records garbage collection drops, as tako_gc_dropped_total
// labels them.
const (
	gcNotOwned  = "not_owned"
	gcTombstone = "tombstone"
	gcExpired   = "expired"
)

// keyHashOrder compares two keys in the store's (hash, key) order.
func keyHashOrder(a, b []byte) int {
	ha, hb := keyhash.Sum(a), keyhash.Sum(b)
	switch {
	case ha < hb:
		return -1
	case ha > hb:
		return 1
	}
	return bytes.Compare(a, b)
}

// gcRound asks every current replica of each candidate value, and every
// node of the cluster for each candidate tombstone, whether it holds the
// record or a newer one (for a tombstone, no record will do); drops the
// candidates all of them confirm, and hands the record to those that lack
// it.
func (n *Node) gcRound(ctx context.Context, cfg *config.Config, batch []gcCandidate, now int64, kind func(rec store.Record) string, stats *gcStats) error {
	if len(batch) == 0 {
		return nil
	}
	perPeer := map[string][]int{}
	nodes := map[string]config.Node{}
	need := make([]int, len(batch))
	everyNode := cfg.Nodes()
	for i, c := range batch {
		// A value is confirmed by the key's current replicas. A
		// tombstone by every node of the cluster: a node that is not a
		// replica of the key may still hold an older value of it (it was
		// one before a configuration change, and its own collection
		// hands such records to the replicas that lack them); once the
		// tombstone is gone from the replicas, that hand-off would bring
		// the deleted key back. So such a node gets the tombstone first.
		peers := everyNode
		if !c.rec.Gone(now) {
			peers = cfg.Replicas(nil, c.key)
		}
		for _, nd := range peers {
			if nd.ID == n.id {
				continue
			}
			perPeer[nd.ID] = append(perPeer[nd.ID], i)
			nodes[nd.ID] = nd
			need[i]++
		}
	}
	confirmed := make([]int, len(batch))
	var errs []error
	for id, idx := range perPeer {
		peer := n.remote(nodes[id])
		for start := 0; start < len(idx); start += recordBatch {
			part := idx[start:min(start+recordBatch, len(idx))]
			req := &wire.Request{Op: wire.OpBatch}
			for _, i := range part {
				req.Batch = append(req.Batch, wire.Request{Op: wire.OpReplicaGet, Key: batch[i].key})
			}
			var scratch passStats
			resp, err := n.peerCall(ctx, peer, req, &scratch)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			var handoff []string
			var failed []error
			for j, r := range resp.Batch {
				i := part[j]
				switch {
				case r.Err != nil:
					failed = append(failed, fmt.Errorf("%q: %w", batch[i].key, r.Err))
				case r.Err == nil && r.Found && store.Compare(r.Record, batch[i].rec) >= 0:
					confirmed[i]++
				case r.Err == nil && !r.Found && batch[i].rec.Gone(now):
					// A node with no record of the key cannot bring it
					// back: it never had it, lost its disk (a recovering
					// node answers with an error instead), or dropped the
					// tombstone itself after every node had it. Only a
					// node holding an older value must get the tombstone
					// first. (Handing a tombstone this node does not own
					// to replicas that dropped it would only make them
					// collect it again, pass after pass.)
					confirmed[i]++
				case r.Err == nil:
					handoff = append(handoff, string(batch[i].key))
				}
			}
			if err := n.itemErrors(peer, "confirming", failed); err != nil {
				errs = append(errs, err)
			}
			if len(handoff) > 0 {
				if err := n.pushRecords(ctx, peer, handoff, &scratch); err != nil {
					errs = append(errs, err)
				}
				stats.handedOff += scratch.keysSent
			}
		}
	}
	for i, c := range batch {
		// Every other replica confirmed. (A key with no other replica is
		// a tombstone of a one-node deployment: nobody can bring it back.)
		if confirmed[i] < need[i] {
			continue
		}
		removed, err := n.store.Remove(ctx, c.key, c.rec)
		if err != nil {
			return err
		}
		if removed {
			k := kind(c.rec)
			switch k {
			case gcNotOwned:
				stats.notOwned++
			case gcTombstone:
				stats.tombstones++
			case gcExpired:
				stats.expired++
			}
			n.metrics.gcDropped.WithLabelValues(k).Inc()
		}
	}
	return errors.Join(errs...)
}
