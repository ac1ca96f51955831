package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/wire"
)

// Placement is where a key lives and what each of its replicas holds, as
// Where reports it.
type Placement struct {
	// Key is the key asked about.
	Key []byte
	// Hash is the key's position on the hash ring.
	Hash uint32
	// Deployments are the active deployment, then the target if any.
	Deployments []DeploymentPlacement
}

// DeploymentPlacement is where one deployment places a key.
type DeploymentPlacement struct {
	// Name is the deployment's name.
	Name string
	// Role is "active" or "target".
	Role string
	// Buckets are the key's buckets in the deployment, in ring order (the
	// primary bucket first).
	Buckets []BucketPlacement
}

// BucketPlacement is one of a key's buckets and what its nodes hold.
type BucketPlacement struct {
	// Name is the bucket's name.
	Name string
	// Replicas are the bucket's nodes, in configuration order.
	Replicas []ReplicaRecord
}

// ReplicaRecord is one replica's own record of a key.
type ReplicaRecord struct {
	// NodeID is the node's id.
	NodeID string
	// Addr is the node's binary protocol address, host:port.
	Addr string
	// Found reports that the replica has a record (a value or a tombstone).
	Found bool
	// Timestamp is the record's timestamp; 0 when not found.
	Timestamp int64
	// Deleted reports that the record is a tombstone.
	Deleted bool
	// BrokenTimestamp says why the record's timestamp breaks the rule
	// every timestamp must follow to come in (1 ≤ ts ≤ now +
	// max_timestamp_ahead): it was stored before the rule, or by a peer
	// whose clock was wrong, and only a purge removes it. Empty when the
	// timestamp follows the rule.
	BrokenTimestamp string
	// Err is why the replica gave no answer; nil when it answered.
	Err error
}

// Where asks every replica of key, in the active deployment and the
// target if any, for its own record: what that node's store holds, with no
// quorum and no read repair, to see where a key lives and which replicas
// lag. Each replica is asked once and at once, bounded by the request
// timeout (Options.Timeout, else the deployments' request_timeout). A
// replica that fails has Err set; Where itself fails only for an invalid
// key, a closed client, or when ctx ends first.
func (c *Client) Where(ctx context.Context, key []byte) (Placement, error) {
	if c.closed.Load() {
		return Placement{}, ErrClosed
	}
	if len(key) == 0 || len(key) > wire.MaxKeySize {
		return Placement{}, fmt.Errorf("%w: the key is %d bytes, want 1 to %d", ErrBadRequest, len(key), wire.MaxKeySize)
	}
	cfg := c.cfg.Load()
	records := c.replicaRecords(ctx, cfg.Replicas(nil, key), key, c.whereTimeout(cfg))
	if err := ctx.Err(); err != nil {
		return Placement{}, fmt.Errorf("tako: where %q: %w", key, err)
	}
	p := Placement{Key: key, Hash: keyhash.Sum(key)}
	p.Deployments = append(p.Deployments, layOut(cfg.Active, "active", p.Hash, records))
	if cfg.Target != nil {
		p.Deployments = append(p.Deployments, layOut(cfg.Target, "target", p.Hash, records))
	}
	return p, nil
}

// whereTimeout bounds one replica's answer to Where.
func (c *Client) whereTimeout(cfg *config.Config) time.Duration {
	if c.opts.Timeout > 0 {
		return c.opts.Timeout
	}
	t := cfg.Active.RequestTimeout
	if cfg.Target != nil && cfg.Target.RequestTimeout > t {
		t = cfg.Target.RequestTimeout
	}
	return t
}

// replicaRecords asks each node for its own record of key, concurrently,
// and returns the answers by node id.
func (c *Client) replicaRecords(ctx context.Context, nodes []config.Node, key []byte, timeout time.Duration) map[string]ReplicaRecord {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]ReplicaRecord, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() { out[i] = c.replicaRecord(ctx, nd, key) })
	}
	wg.Wait()
	byID := make(map[string]ReplicaRecord, len(nodes))
	for _, r := range out {
		byID[r.NodeID] = r
	}
	return byID
}

// replicaRecord asks one node for its own record of key
// (OpReplicaGetLocal: a recovering node answers what its store holds, not
// what it would read through).
func (c *Client) replicaRecord(ctx context.Context, nd config.Node, key []byte) ReplicaRecord {
	r := ReplicaRecord{NodeID: nd.ID, Addr: nd.BinaryAddr()}
	resp, err := c.pool.Call(ctx, nd.BinaryAddr(), &wire.Request{Op: wire.OpReplicaGetLocal, Key: key})
	switch {
	case err != nil:
		r.Err = fmt.Errorf("replica %s at %s: %w", nd.ID, nd.BinaryAddr(), err)
	case resp.Found:
		r.Found, r.Timestamp, r.Deleted = true, resp.Record.Timestamp, resp.Record.Tombstone
		if err := hlc.Check(r.Timestamp, time.Now().UnixMicro(), c.cfg.Load().Active.MaxTimestampAhead); err != nil {
			r.BrokenTimestamp = err.Error()
		}
	}
	return r
}

// layOut arranges the answers by the key's buckets in d, in ring order.
func layOut(d *config.Deployment, role string, hash uint32, records map[string]ReplicaRecord) DeploymentPlacement {
	dp := DeploymentPlacement{Name: d.Name, Role: role}
	for _, bi := range d.Ring.LookupHash(nil, hash, d.BucketsPerKey) {
		b := d.Buckets[bi]
		bp := BucketPlacement{Name: b.Name, Replicas: make([]ReplicaRecord, 0, len(b.Nodes))}
		for _, nd := range b.Nodes {
			bp.Replicas = append(bp.Replicas, records[nd.ID])
		}
		dp.Buckets = append(dp.Buckets, bp)
	}
	return dp
}

// Purge removes key from every one of its replicas, whatever their
// versions, leaving no tombstone, and reports whether one held a record:
// how an operator rids the cluster of a version whose timestamp breaks the
// rule (1 ≤ ts ≤ now + max_timestamp_ahead), which no write can replace.
// One node of the key coordinates it (OpPurge) and logs it; it needs a
// token of the admin role when the cluster has an auth section. When some
// replicas could not be reached it fails with ErrUnavailable naming them:
// purge again once they are back.
func (c *Client) Purge(ctx context.Context, key []byte) (bool, error) {
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpPurge, Key: key})
	if err != nil {
		return false, err
	}
	return resp.Found, nil
}
