package node

import (
	"context"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/record"
)

// The Node serves GET /where/KEY on its HTTP port.
var _ httpapi.Locator = (*Node)(nil)

// Where reports where key lives in the active deployment and the target, if
// any, and what each replica holds (coord.Locate): its own store for this
// node, the peer's local record (OpReplicaGetLocal, without a
// read-through) for the others, asked even when marked down (an operator
// asking where a key lives wants the peer's own answer), and whether each
// record's timestamp breaks the rule. Nothing is repaired. Where fails only
// when ctx ends first.
func (n *Node) Where(ctx context.Context, key []byte) (httpapi.Placement, error) {
	cfg := n.cfg.Load()
	ask := func(ctx context.Context, nd config.Node, key []byte) (record.Record, bool, error) {
		return n.replicaOf(nd, true).getLocal(ctx, key)
	}
	stored := func(ts int64) error {
		return hlc.Check(ts, n.clock.Wall(), n.settings(n.cfg.Load()).MaxTimestampAhead)
	}
	loc, err := coord.Locate(ctx, cfg, key, coord.PlacementOf(cfg, key).Timeout, ask, stored)
	if err != nil {
		return httpapi.Placement{}, err
	}
	return httpapi.PlacementOf(loc), nil
}
