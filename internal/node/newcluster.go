package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/wire"
)

// A node that starts on an empty store where the configuration gives it
// keys cannot tell by itself whether it is new (a new cluster, or a node
// added to one) or lost its disk. After a lost disk its "not found" is no
// answer and its read-through answers only once enough of the other
// replicas answered (readThrough): else a version that it and a replica
// that is down held would be lost to reads. In a new cluster that rule
// would make every read fail while one node is down, because every node
// starts empty. So the node asks every other node of the cluster whether
// it holds any record at all (one OpRangeSummary entry over every hash):
//
//   - one does: the cluster holds data, and this node may have held some
//     of it: it recovers (a lost disk, or a node that joins a cluster in
//     use, which refills from the others like one);
//   - none of those that answered does, and with this node they are a
//     majority of the cluster's nodes (or the node is alone): nothing was
//     ever written that this node could have lost, and its recovery ends
//     at once;
//   - else (too few answered yet): it asks again in a moment, recovering
//     meanwhile.
//
// Why a majority: after several disks were lost at once and every node
// restarted, the nodes on new stores open fast and answer first, empty,
// while those with data still replay their logs; a node that trusted the
// first answers would judge a cluster with data new (the lost-disks drill,
// TestClusterKeepsEverythingThroughLostDisks, found this). What this
// trusts: that a majority of the nodes did not lose their disks at once,
// and that nodes that answer would hold some record of a cluster that has
// data. A new cluster with one node down still judges itself new.

// judgeEvery is how often a node that started on a new store asks the
// others whether the cluster holds data, until enough of them answered.
const judgeEvery = 100 * time.Millisecond

// judgeEmptyStart judges a recovery that began on an empty store (see
// above) and reports whether it is judged (or there is none to judge).
func (n *Node) judgeEmptyStart(ctx context.Context) bool {
	rec := n.recovery.Load()
	if rec == nil || !rec.mayBeNew() {
		return true
	}
	gen := rec.generation()
	cfg := n.cfg.Load()
	var others []config.Node
	for _, nd := range cfg.Nodes() {
		if nd.ID != n.id {
			others = append(others, nd)
		}
	}
	var mu sync.Mutex
	answered, holding := 0, ""
	var wg sync.WaitGroup
	for _, nd := range others {
		wg.Go(func() {
			resp, err := n.askOutsideThePool(ctx, nd, &wire.Request{Op: wire.OpRangeSummary, Ranges: []wire.HashRange{{Lo: 0, Hi: ^uint32(0)}}, Limit: 1})
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			answered++
			if len(resp.Entries) > 0 {
				holding = nd.ID
			}
		})
	}
	wg.Wait()
	switch {
	case holding != "":
		if err := rec.setMayBeNew(false); err != nil {
			n.logger.Error("saving the recovery state failed: a restart judges the empty store again", "node", n.id, "err", err)
		}
		n.logger.Warn("node recovering: the cluster holds data (at least "+holding+" does), so this node's empty store may have lost some: it refills, and its answers count once enough of the other replicas of a key answered",
			"node", n.id)
		return true
	case len(others) == 0 || answered > 0 && 2*(answered+1) > len(others)+1:
		if n.endRecovery(rec, gen) {
			n.logger.Info("node new: none of the nodes that answered (with this one, a majority of the cluster) holds any record, so its empty store lost nothing; it serves without recovering",
				"node", n.id, "nodes_answered", answered, "other_nodes", len(others))
		}
		return true
	}
	return false
}

// askOutsideThePool sends req to nd on a connection of its own, closed
// after the answer: a node starting up asks peers that may not listen yet,
// and a failed dial in the pool would hold back the pool's next dials to
// them and mark them down for the node's requests.
func (n *Node) askOutsideThePool(ctx context.Context, nd config.Node, req *wire.Request) (*wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, n.settings(n.cfg.Load()).RequestTimeout)
	defer cancel()
	c, err := wire.Dial(ctx, nd.BinaryAddr(), n.dialOpts)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", nd.ID, err)
	}
	defer c.Close()
	resp, err := c.Call(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", nd.ID, err)
	}
	return resp, nil
}

// judgeAtStart judges an empty start before the first repair pass, asking
// every judgeEvery for at most wait, so that a new cluster serves at once.
func (n *Node) judgeAtStart(ctx context.Context, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for !n.judgeEmptyStart(ctx) && time.Now().Before(deadline) {
		t := time.NewTimer(judgeEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
