package backup

import (
	"context"
	"fmt"

	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// Nodes is how a backup and a restore reach the cluster's nodes: the wire
// protocol (WireNodes), or a fake in a unit test.
type Nodes interface {
	// Stream returns a part of the records of range r that node holds, in
	// (hash, key) order, strictly after the key after (nil: from the
	// range's start), about limit bytes of them (0: none, the estimates
	// only).
	Stream(ctx context.Context, node config.Node, r archive.Range, after []byte, limit int) (Part, error)
	// Put offers each entry to node's store, where it is kept only if it
	// wins over what the node holds, and returns each one's result or
	// error, in order; err when the request as a whole failed.
	Put(ctx context.Context, node config.Node, entries []archive.Entry) (results []record.PutResult, errs []error, err error)
}

// Part is one answer of a range's stream.
type Part struct {
	// Entries are the records, in order.
	Entries []archive.Entry
	// More: records of the range follow the last entry.
	More bool
	// RemainingKeys, RemainingBytes estimate what the range holds after
	// the part (for progress only).
	RemainingKeys, RemainingBytes uint64
}

// WireNodes reaches the nodes over the binary protocol, with a token of
// the admin role when the cluster has an auth section (OpRangeStream and
// OpReplicaPut need it).
type WireNodes struct {
	pool *wire.Pool
}

// NewWireNodes returns WireNodes that dial with opts (token, TLS, frame
// size: wire.FrameSizeFor the configuration's largest max_value_size).
func NewWireNodes(opts wire.DialOptions) *WireNodes {
	return &WireNodes{pool: wire.NewPool(opts)}
}

// Close closes the connections.
func (w *WireNodes) Close() error { return w.pool.Close() }

// Stream implements Nodes with OpRangeStream.
func (w *WireNodes) Stream(ctx context.Context, node config.Node, r archive.Range, after []byte, limit int) (Part, error) {
	req := &wire.Request{Op: wire.OpRangeStream, Ranges: []wire.HashRange{{Lo: r.Lo, Hi: r.Hi}}, After: after, Limit: uint32(limit)}
	resp, err := w.pool.Call(ctx, node.BinaryAddr(), req)
	if err != nil {
		return Part{}, fmt.Errorf("node %s at %s: %w", node.ID, node.BinaryAddr(), err)
	}
	if limit > 0 && resp.Truncated && len(resp.Stream) == 0 {
		return Part{}, fmt.Errorf("node %s at %s answered an empty part of range %d-%d with more to come", node.ID, node.BinaryAddr(), r.Lo, r.Hi)
	}
	p := Part{Entries: make([]archive.Entry, len(resp.Stream)), More: resp.Truncated && limit > 0,
		RemainingKeys: resp.RemainingKeys, RemainingBytes: resp.RemainingBytes}
	for i, e := range resp.Stream {
		p.Entries[i] = archive.Entry{Key: e.Key, Record: e.Record}
	}
	return p, nil
}

// Put implements Nodes with an OpBatch of OpReplicaPut (at most
// wire.MaxBatch entries).
func (w *WireNodes) Put(ctx context.Context, node config.Node, entries []archive.Entry) ([]record.PutResult, []error, error) {
	req := &wire.Request{Op: wire.OpBatch, Batch: make([]wire.Request, len(entries))}
	for i, e := range entries {
		req.Batch[i] = wire.Request{Op: wire.OpReplicaPut, Key: e.Key, Record: e.Record}
	}
	resp, err := w.pool.Call(ctx, node.BinaryAddr(), req)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s at %s: %w", node.ID, node.BinaryAddr(), err)
	}
	if len(resp.Batch) != len(entries) {
		return nil, nil, fmt.Errorf("node %s at %s answered %d of a batch of %d", node.ID, node.BinaryAddr(), len(resp.Batch), len(entries))
	}
	results := make([]record.PutResult, len(entries))
	errs := make([]error, len(entries))
	for i, r := range resp.Batch {
		if r.Err != nil {
			errs[i] = fmt.Errorf("node %s: %q: %w", node.ID, entries[i].Key, r.Err)
			continue
		}
		res, err := r.Outcome.PutResult(r.Current)
		if err != nil {
			errs[i] = fmt.Errorf("node %s: %q: %w", node.ID, entries[i].Key, err)
			continue
		}
		results[i] = res
	}
	return results, errs, nil
}
