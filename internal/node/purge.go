package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/wire"
)

// The Node serves POST /purge/KEY on its HTTP port.
var _ httpapi.Purger = (*Node)(nil)

// Purge removes key from every one of its replicas, in the active
// deployment and the target, whatever their records: it is how an operator
// rids the cluster of a version whose timestamp breaks the rule, which no
// client write can replace. It leaves no tombstone. Every replica is asked
// at once (forced past a down mark, each bounded by the request timeout);
// the result says which held a record. When some could not be reached, it
// fails with httpapi.ErrUnavailable naming them, after purging the others:
// run it again once they are back. It is logged.
func (n *Node) Purge(ctx context.Context, key []byte) (httpapi.PurgeResult, error) {
	cfg := n.cfg.Load()
	p := coord.PlacementOf(cfg, key)
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	type answer struct {
		id      string
		removed bool
		err     error
	}
	answers := make([]answer, len(p.Nodes))
	var wg sync.WaitGroup
	for i, nd := range p.Nodes {
		wg.Go(func() {
			removed, err := n.purgeReplica(ctx, nd, key)
			answers[i] = answer{nd.ID, removed, err}
		})
	}
	wg.Wait()
	var res httpapi.PurgeResult
	var failed []string
	var errs []error
	for _, a := range answers {
		switch {
		case a.err != nil:
			failed = append(failed, a.id)
			errs = append(errs, a.err)
		case a.removed:
			res.Removed = append(res.Removed, a.id)
		default:
			res.Absent = append(res.Absent, a.id)
		}
	}
	res.Held = len(res.Removed) > 0
	sort.Strings(res.Removed)
	sort.Strings(res.Absent)
	n.logger.Warn("purged a key from its replicas, whatever its versions (an operator's purge)", "node", n.id, "key", string(key),
		"removed_from", strings.Join(res.Removed, ","), "absent_from", strings.Join(res.Absent, ","), "unreachable", strings.Join(failed, ","))
	if len(failed) > 0 {
		return res, fmt.Errorf("%w: purged %q from %d of %d replicas; %s could not be reached, purge again once they are back: %w",
			httpapi.ErrUnavailable, key, len(res.Removed)+len(res.Absent), len(p.Nodes), strings.Join(failed, ", "), errors.Join(errs...))
	}
	return res, nil
}

// purgeReplica removes key from one replica's store.
func (n *Node) purgeReplica(ctx context.Context, nd config.Node, key []byte) (bool, error) {
	if nd.ID == n.id {
		return n.purgeLocal(ctx, key)
	}
	r := n.remote(nd)
	r.force = true
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpReplicaPurge, Key: key})
	if err != nil {
		return false, err
	}
	return resp.Found, nil
}

// purgeLocal removes key from this node's store, and logs it.
func (n *Node) purgeLocal(ctx context.Context, key []byte) (bool, error) {
	removed, err := n.store.Purge(ctx, key)
	if err != nil {
		return false, err
	}
	if removed {
		n.logger.Warn("purged a key from this node's store (an operator's purge)", "node", n.id, "key", string(key))
	}
	return removed, nil
}
