// Package backup copies a running cluster into an archive (internal/archive)
// and writes archives back into a cluster of any shape.
//
// A backup walks the hash space range by range: each range is an arc of
// the active deployment's ring (merged with its neighbours while they have
// the same replicas), streamed with OpRangeStream, in (hash, key) order,
// from as many of its replicas as meet every write quorum (replicas −
// write quorum + 1): a write acknowledged before the backup started is on
// at least one of them, whichever replica lags. The streams are merged,
// the newest version of each key kept. A replica that fails mid-way is
// replaced by another of the range's from the same cursor, so a node going
// down costs a retry, not the backup.
//
// A restore offers each record to every replica of its key under the
// receiving cluster's configuration (OpReplicaPut, in batches), where it
// is kept only if it wins over what the replica holds (newest timestamp,
// the cluster's own rule): a restore never overwrites anything newer and
// is safe to run twice.
package backup

import (
	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/ring"
)

// unit is one range of a backup and the replicas that hold it whole.
type unit struct {
	r        archive.Range
	replicas []config.Node
	// need is how many of them a backup streams and merges: replicas −
	// write quorum + 1, so that every acknowledged write is on one.
	need int
}

// plan cuts the hash space into the units of cfg's active deployment:
// the ring's arcs, each merged into the one before when both have the
// same replicas.
func plan(cfg *config.Config) []unit {
	d := cfg.Active
	var units []unit
	var buf []config.Node
	ring.Arcs(d.Ring.Boundaries(), func(lo, hi, owner uint32) {
		buf = d.ReplicasOfHash(buf[:0], owner)
		if n := len(units); n > 0 && units[n-1].r.Hi+1 == lo && sameNodes(units[n-1].replicas, buf) {
			units[n-1].r.Hi = hi
			return
		}
		replicas := append([]config.Node(nil), buf...)
		need := len(replicas) - d.WriteQuorum.Required(len(replicas)) + 1
		units = append(units, unit{r: archive.Range{Lo: lo, Hi: hi}, replicas: replicas, need: max(need, 1)})
	})
	return units
}

// sameNodes reports whether a and b are the same nodes, in any order.
func sameNodes(a, b []config.Node) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			if x.ID == y.ID {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// ranges are the archive ranges of units.
func ranges(units []unit) []archive.Range {
	out := make([]archive.Range, len(units))
	for i, u := range units {
		out[i] = u.r
	}
	return out
}
