package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/health"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// errPeerDown is what a call to a node that is marked down answers at once.
var errPeerDown = errors.New("tako: node is down (skipped until a probe answers)")

// replica is a node's store as the client's coordinator reaches it: the
// node's fenced replica operations over the binary protocol (OpFencedGet,
// OpFencedStat, OpFencedPut), which a node refuses when it places keys by
// a newer configuration than the request's epoch.
type replica struct {
	c      *Client
	node   config.Node
	health *health.Peer
	// epoch is the epoch of the configuration the request was placed by,
	// which the fenced ops carry.
	epoch int64
	// force sends calls even while the node is marked down or its address
	// is in dial backoff, one at a time: the request cannot make its
	// quorum without it. A node that is joining (a configuration just
	// named it) is called by every such request, each dialling again while
	// it refuses, up to the request's timeout.
	force bool
}

// coordinator returns the coordinator of one request placed by the
// configuration of epoch: its replicas carry the epoch.
func (c *Client) coordinator(epoch int64) *coord.Coordinator {
	env := c.env
	env.Replica = func(nd config.Node, forced bool) coord.Replica {
		return replica{c: c, node: nd, health: c.peers.Peer(nd.ID), force: forced, epoch: epoch}
	}
	return coord.New(env)
}

func (r replica) call(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	call := r.c.pool.Call
	switch {
	case r.force && r.health.Joining():
		// A configuration just named the node: it may be starting.
		call = func(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
			return r.c.pool.CallPatiently(ctx, addr, req, health.JoinRetry, r.health.Joining)
		}
	case r.force:
		switch r.health.Urgent(ctx) {
		case health.UrgentMine:
			defer r.health.EndUrgent()
			call = r.c.pool.CallNow
		case health.UrgentRefused:
			return nil, fmt.Errorf("replica %s at %s: %w (%w)", r.node.ID, r.node.BinaryAddr(), errPeerDown, coord.ErrNotSent)
		}
	case !r.health.Allow():
		return nil, fmt.Errorf("replica %s at %s: %w (%w)", r.node.ID, r.node.BinaryAddr(), errPeerDown, coord.ErrNotSent)
	}
	resp, err := call(ctx, r.node.BinaryAddr(), req)
	if err != nil {
		if wire.PeerFault(err) {
			if r.health.Failure() {
				r.c.opts.Logger.Warn("node marked down: it did not answer in time; requests skip it until a probe answers",
					"node", r.node.ID, "addr", r.node.BinaryAddr(), "err", err)
			}
		}
		switch {
		case errors.Is(err, wire.ErrUnreachable):
			err = fmt.Errorf("%w (%w)", err, coord.ErrNotSent)
		case errors.Is(err, wire.ErrStaleConfig), errors.Is(err, wire.ErrUnknownOp):
			// A node that places keys by a newer configuration, or
			// one of a version without the fenced ops: a node must
			// coordinate this request.
			err = fmt.Errorf("%w (%w)", err, coord.ErrStaleView)
		}
		return nil, fmt.Errorf("replica %s at %s: %w", r.node.ID, r.node.BinaryAddr(), err)
	}
	r.health.Success()
	return resp, nil
}

func (r replica) Get(ctx context.Context, key []byte) (record.Record, bool, error) {
	return r.read(ctx, wire.OpFencedGet, key)
}

func (r replica) Stat(ctx context.Context, key []byte) (record.Record, bool, error) {
	return r.read(ctx, wire.OpFencedStat, key)
}

func (r replica) read(ctx context.Context, op wire.Op, key []byte) (record.Record, bool, error) {
	resp, err := r.call(ctx, &wire.Request{Op: op, Key: key, Epoch: r.epoch})
	if err != nil {
		return record.Record{}, false, err
	}
	return record.Record(resp.Record), resp.Found, nil
}

func (r replica) Put(ctx context.Context, key []byte, rec record.Record) (record.PutResult, error) {
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpFencedPut, Key: key, Record: wire.Record(rec), Epoch: r.epoch})
	if err != nil {
		return record.PutResult{}, err
	}
	res, err := resp.Outcome.PutResult(resp.Current)
	if err != nil {
		return record.PutResult{}, fmt.Errorf("replica %s: %w", r.node.ID, err)
	}
	return res, nil
}
