package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
)

// The Node serves GET /where/KEY on its HTTP port.
var _ httpapi.Locator = (*Node)(nil)

// Where reports where key lives in the active deployment and the target, if
// any, and what each replica holds: its own store for this node, the
// peer's local record (OpReplicaGetLocal, without a read-through) for the
// others, and whether each record's timestamp breaks the rule. Every replica is asked
// once and at once, each bounded by the request timeout; nothing is
// repaired. A replica that fails shows its error. Where fails only when ctx
// ends first.
func (n *Node) Where(ctx context.Context, key []byte) (httpapi.Placement, error) {
	cfg := n.cfg.Load()
	p := coord.PlacementOf(cfg, key)
	states := n.whereReplicas(ctx, p.Nodes, key, p.Timeout)
	if err := ctx.Err(); err != nil {
		return httpapi.Placement{}, fmt.Errorf("where %q: %w", key, err)
	}
	out := httpapi.Placement{Key: string(key), Hash: keyhash.Sum(key)}
	out.Deployments = append(out.Deployments, deploymentPlacement(cfg.Active, httpapi.RoleActive, out.Hash, states))
	if cfg.Target != nil {
		out.Deployments = append(out.Deployments, deploymentPlacement(cfg.Target, httpapi.RoleTarget, out.Hash, states))
	}
	return out, nil
}

// whereReplicas asks each of nodes for its record of key, concurrently, and
// returns the answers by node id.
func (n *Node) whereReplicas(ctx context.Context, nodes []config.Node, key []byte, timeout time.Duration) map[string]httpapi.ReplicaState {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	states := make([]httpapi.ReplicaState, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		// Forced: an operator asking where a key lives wants the peer's own
		// answer, even from a peer this node has marked down.
		wg.Go(func() {
			states[i] = askReplica(ctx, n.replicaOf(nd, true), nd, key)
			if states[i].Found {
				if err := hlc.Check(states[i].Timestamp, n.clock.Wall(), n.settings(n.cfg.Load()).MaxTimestampAhead); err != nil {
					states[i].BrokenTimestamp = err.Error()
				}
			}
		})
	}
	wg.Wait()
	byID := make(map[string]httpapi.ReplicaState, len(nodes))
	for _, s := range states {
		byID[s.ID] = s
	}
	return byID
}

// askReplica reports what one replica holds of key.
func askReplica(ctx context.Context, r replica, nd config.Node, key []byte) httpapi.ReplicaState {
	s := httpapi.ReplicaState{ID: nd.ID, Binary: nd.BinaryAddr()}
	rec, found, err := r.getLocal(ctx, key)
	switch {
	case err != nil:
		s.Error = err.Error()
	case found:
		s.Found, s.Timestamp, s.Deleted = true, rec.Timestamp, rec.Tombstone
	}
	return s
}

// deploymentPlacement lays the answers out by the key's buckets in d, in
// ring order.
func deploymentPlacement(d *config.Deployment, role string, hash uint32, states map[string]httpapi.ReplicaState) httpapi.DeploymentPlacement {
	dp := httpapi.DeploymentPlacement{Name: d.Name, Role: role}
	for _, bi := range d.Ring.LookupHash(nil, hash, d.BucketsPerKey) {
		b := d.Buckets[bi]
		bp := httpapi.BucketPlacement{Name: b.Name, Nodes: make([]httpapi.ReplicaState, 0, len(b.Nodes))}
		for _, nd := range b.Nodes {
			bp.Nodes = append(bp.Nodes, states[nd.ID])
		}
		dp.Buckets = append(dp.Buckets, bp)
	}
	return dp
}
