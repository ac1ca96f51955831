package client

import (
	"context"
	"fmt"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/record"
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
	// ExpiresAt is when the record's value expires (microseconds since
	// the Unix epoch); 0 when it never does.
	ExpiresAt int64
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
	loc, err := coord.Locate(ctx, cfg, key, c.whereTimeout(cfg), c.askLocal, c.env.Stored)
	if err != nil {
		return Placement{}, fmt.Errorf("tako: %w", err)
	}
	p := Placement{Key: loc.Key, Hash: loc.Hash}
	for _, d := range loc.Deployments {
		dp := DeploymentPlacement{Name: d.Name, Role: d.Role}
		for _, b := range d.Buckets {
			bp := BucketPlacement{Name: b.Name, Replicas: make([]ReplicaRecord, 0, len(b.Replicas))}
			for _, r := range b.Replicas {
				bp.Replicas = append(bp.Replicas, ReplicaRecord{NodeID: r.Node.ID, Addr: r.Node.BinaryAddr(), Found: r.Found,
					Timestamp: r.Record.Timestamp, Deleted: r.Record.Tombstone, ExpiresAt: r.Record.ExpiresAt, BrokenTimestamp: r.BrokenTimestamp, Err: r.Err})
			}
			dp.Buckets = append(dp.Buckets, bp)
		}
		p.Deployments = append(p.Deployments, dp)
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

// askLocal asks one node for its own record of key (OpReplicaGetLocal: a
// recovering node answers what its store holds, not what it would read
// through).
func (c *Client) askLocal(ctx context.Context, nd config.Node, key []byte) (record.Record, bool, error) {
	resp, err := c.pool.Call(ctx, nd.BinaryAddr(), &wire.Request{Op: wire.OpReplicaGetLocal, Key: key})
	if err != nil {
		return record.Record{}, false, fmt.Errorf("replica %s at %s: %w", nd.ID, nd.BinaryAddr(), err)
	}
	return record.Record(resp.Record), resp.Found, nil
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
