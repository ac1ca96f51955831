package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// The Node is the httpapi.Backend of its own HTTP port.
var _ httpapi.Backend = (*Node)(nil)

// replica is one copy of a key's data as the coordinator of a request sees
// it: the local store, or a peer over the binary protocol.
type replica interface {
	// Get returns the replica's record of key; found is false when it has
	// none. A recovering replica reads a key it may have lost through from
	// the other replicas first.
	Get(ctx context.Context, key []byte) (rec store.Record, found bool, err error)
	// getLocal returns what the replica's store holds of key, without a
	// read-through: a recovering replica's errRecovering for a key it may
	// have lost.
	getLocal(ctx context.Context, key []byte) (rec store.Record, found bool, err error)
	// Put offers rec to the replica, which keeps the winner.
	Put(ctx context.Context, key []byte, rec store.Record) (store.PutResult, error)
}

// localReplica is the node's own store.
type localReplica struct{ n *Node }

// errRecovering is a recovering node's answer for a key of a lost range
// that it does not have, when it could not read it through either: it may
// have lost it, so the answer must not count as "not found".
var errRecovering = errors.New("node: recovering lost data: this replica's \"not found\" does not count")

// Get returns the node's record of key. For a key of a range the node
// recovers, it reads the key through from the other replicas first (see
// readThrough), so that its answer counts like any replica's.
func (l localReplica) Get(ctx context.Context, key []byte) (store.Record, bool, error) {
	l.n.foreground.mark()
	rec, err := l.n.store.Get(ctx, key)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Record{}, false, err
	}
	h := keyhash.Sum(key)
	if !l.n.lostRanges().contains(h) {
		return rec, found, nil
	}
	if found && l.n.suspect(h, rec.Timestamp) {
		// No answer: the key may have been deleted while the node was out.
		rec, found = store.Record{}, false
	}
	return l.n.readThrough(ctx, key, rec, found)
}

// getLocal returns the node's record of key from its store alone: for a
// key of a range the node recovers that it does not have, errRecovering.
func (l localReplica) getLocal(ctx context.Context, key []byte) (store.Record, bool, error) {
	l.n.foreground.mark()
	rec, err := l.n.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		if l.n.lostRanges().contains(keyhash.Sum(key)) {
			return store.Record{}, false, errRecovering
		}
		return store.Record{}, false, nil
	}
	if err == nil && l.n.suspect(keyhash.Sum(key), rec.Timestamp) {
		return store.Record{}, false, errRecovering
	}
	return rec, err == nil, err
}

func (l localReplica) Put(ctx context.Context, key []byte, rec store.Record) (store.PutResult, error) {
	l.n.foreground.mark()
	return l.n.store.Put(ctx, key, rec)
}

// readThrough answers for a key of a lost range, whose local record is
// local (when found): it asks every other replica of the key for its own
// record (OpReplicaGetLocal, which never reads through in turn), waits for
// their answers (at most half the request timeout), keeps the newest record
// it saw in its store and answers with it. A replica that lost its data
// and holds what one live replica holds is then as good as that replica.
// With no record anywhere, "not found" is an answer only when enough of
// the active deployment's replicas that are not recovering said so that
// every write quorum includes one of them (replicas - write quorum + 1);
// otherwise it is errRecovering.
func (n *Node) readThrough(ctx context.Context, key []byte, local store.Record, found bool) (store.Record, bool, error) {
	cfg := n.cfg.Load()
	p := n.placementOf(cfg, key)
	rctx, cancel := context.WithTimeout(ctx, p.timeout/2)
	defer cancel()
	type answer struct {
		i     int
		rec   store.Record
		found bool
		err   error
	}
	answers := make(chan answer, len(p.nodes))
	asked := 0
	for i, nd := range p.nodes {
		if nd.ID == n.id {
			continue
		}
		asked++
		r := n.remote(nd)
		if !n.goBackground(func(context.Context) {
			rec, found, err := r.getLocal(rctx, key)
			answers <- answer{i: i, rec: rec, found: found, err: err}
		}) {
			answers <- answer{i: i, err: errShuttingDown}
		}
	}
	active := p.groups[0]
	newest, have := local, found
	notFound := 0
	for range asked {
		a := <-answers
		switch {
		case a.err != nil:
		case a.found:
			if !have || store.Compare(a.rec, newest) > 0 {
				newest, have = a.rec, true
			}
		case slices.Contains(active.members, a.i):
			notFound++
		}
	}
	if have {
		n.metrics.refill.readThroughs.WithLabelValues("found").Inc()
		if (!found || store.Compare(newest, local) > 0) && n.admit(doorReadThrough, newest.Timestamp) == nil {
			// Keep it, in the background: the answer is what the other
			// replicas hold, and need not wait for this store's write
			// (which a refill may be slowing).
			n.goBackground(func(bg context.Context) {
				if _, err := n.store.Put(bg, key, newest); err != nil {
					n.logger.Debug("keeping a record read through failed; the refill brings it", "key", string(key), "err", err)
				}
			})
		}
		return newest, true, nil
	}
	if need := len(active.members) - active.writeNeed + 1; notFound >= need {
		n.metrics.refill.readThroughs.WithLabelValues("not_found").Inc()
		return store.Record{}, false, nil
	}
	n.metrics.refill.readThroughs.WithLabelValues("unavailable").Inc()
	return store.Record{}, false, fmt.Errorf("%w: no other replica of %q holds it, and %d of them that are not recovering said so, fewer than %d",
		errRecovering, key, notFound, len(active.members)-active.writeNeed+1)
}

// replicaFor returns the replica behind a configured node.
func (n *Node) replicaFor(nd config.Node) replica {
	if nd.ID == n.id {
		return n.local
	}
	return n.remote(nd)
}

// placement is where a key lives: the union of its replicas in the active
// and target deployments, and for each deployment the members that count
// towards its quorum.
type placement struct {
	nodes  []config.Node
	groups []quorumGroup
	// timeout bounds one replica's answer.
	timeout time.Duration
}

type quorumGroup struct {
	members    []int // indexes into placement.nodes
	writeNeed  int
	readNeed   int
	deployment string
}

func (n *Node) placementOf(cfg *config.Config, key []byte) placement {
	var p placement
	p.nodes = cfg.Replicas(nil, key)
	index := make(map[string]int, len(p.nodes))
	for i, nd := range p.nodes {
		index[nd.ID] = i
	}
	p.timeout = cfg.Active.RequestTimeout
	for _, d := range []*config.Deployment{cfg.Active, cfg.Target} {
		if d == nil {
			continue
		}
		members := d.Replicas(nil, key)
		g := quorumGroup{deployment: d.Name}
		for _, m := range members {
			g.members = append(g.members, index[m.ID])
		}
		g.writeNeed = d.WriteQuorum.Required(len(members))
		g.readNeed = d.ReadQuorum.Required(len(members))
		p.groups = append(p.groups, g)
		if d.RequestTimeout > p.timeout {
			p.timeout = d.RequestTimeout
		}
	}
	return p
}

// satisfied reports whether ok[i] (per node) meets every group's need.
//
// A write needs the write quorum of every deployment (active and, during a
// migration, target), so that it is on a quorum of the target's replicas
// when the target is promoted. A read needs the read quorum of the active
// deployment only: that is where every acknowledged write has a quorum, so
// read and write quorums intersect there. A read still asks, and repairs,
// the target's replicas, and answers with the newest of every answer; but
// target nodes that are still being filled (recovering) cannot hold it up.
func (p placement) satisfied(ok []bool, read bool) bool {
	groups := p.groups
	if read {
		groups = groups[:1]
	}
	for _, g := range groups {
		need, have := g.writeNeed, 0
		if read {
			need = g.readNeed
		}
		for _, m := range g.members {
			if ok[m] {
				have++
			}
		}
		if have < need {
			return false
		}
	}
	return true
}

// settings returns the deployment whose settings this node follows.
func (n *Node) settings(cfg *config.Config) *config.Deployment {
	if _, d, ok := cfg.Node(n.id); ok {
		return d
	}
	return cfg.Active
}

// Ready reports whether the node can serve: it has a configuration that
// names it and is not shutting down.
func (n *Node) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	_, _, ok := n.cfg.Load().Node(n.id)
	return ok
}

// MaxValueSize is the max_value_size of the node's deployment.
func (n *Node) MaxValueSize() int64 { return n.settings(n.cfg.Load()).MaxValueSize }

// Put stores value under key on the key's replicas (the HTTP door).
func (n *Node) Put(ctx context.Context, key, value []byte, ts int64) (httpapi.WriteResult, error) {
	return n.writeRecord(ctx, doorHTTP, key, store.Record{Timestamp: ts, Value: value})
}

// Delete stores a tombstone for key on the key's replicas (the HTTP door).
func (n *Node) Delete(ctx context.Context, key []byte, ts int64) (httpapi.WriteResult, error) {
	return n.writeRecord(ctx, doorHTTP, key, store.Record{Timestamp: ts, Tombstone: true})
}

// stamp gives rec a timestamp from the clock when the client sent none,
// and holds a client's timestamp to the rule (admit): one too far in the
// future would shadow every later write of the key. A client's timestamp
// orders its key and nothing else: it never moves the clock.
func (n *Node) stamp(door string, rec *store.Record) error {
	if rec.Timestamp == 0 {
		rec.Timestamp = n.clock.Now()
		return nil
	}
	if err := n.admit(door, rec.Timestamp); err != nil {
		return fmt.Errorf("X-Timestamp: %w: %w", err, httpapi.ErrBadRequest)
	}
	return nil
}

type writeAnswer struct {
	i   int
	res store.PutResult
	err error
}

// maxRestamps bounds how often a write stamped by this node is stamped
// again because a replica held a newer version: once is enough unless
// other writers of the key keep overtaking it.
const maxRestamps = 16

// writeRecord stores rec, which came in through door, on the key's
// replicas. A write that this node stamped (the client sent no timestamp)
// and that a replica reports older than its current version is stamped
// again, above that version (for this key alone: the clock does not move),
// and sent again: the newer version was written before this request or
// concurrently with it, so this write must win, even when the clock that
// stamped the other version runs ahead. Write quorums intersect, so a
// version acknowledged before this write started is always seen. Such a
// write never answers "superseded" (409): when it cannot win, because the
// key's current version breaks the timestamp rule (only tako purge removes
// it) or because other writes overtook it maxRestamps times, it fails with
// ErrUnavailable and the reason. A write with the client's own timestamp
// keeps it, and loses (409) to a newer version.
func (n *Node) writeRecord(ctx context.Context, door string, key []byte, rec store.Record) (httpapi.WriteResult, error) {
	cfg := n.cfg.Load()
	stampedHere := rec.Timestamp == 0
	if err := n.stamp(door, &rec); err != nil {
		return httpapi.WriteResult{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := n.writeOnce(ctx, cfg, key, rec)
		if err != nil || !res.Superseded || !stampedHere {
			return res, err
		}
		if err := n.admit(doorStored, res.Timestamp); err != nil {
			return httpapi.WriteResult{}, fmt.Errorf("%w: %q holds a version that breaks the timestamp rule (%v), which a write stamped by the cluster cannot follow; `tako purge` removes it",
				httpapi.ErrUnavailable, key, err)
		}
		if attempt == maxRestamps || ctx.Err() != nil {
			return httpapi.WriteResult{}, fmt.Errorf("%w: other writes of %q overtook this one %d times", httpapi.ErrUnavailable, key, attempt)
		}
		n.metrics.writes.WithLabelValues("restamped").Inc()
		rec.Timestamp = max(n.clock.Now(), res.Timestamp+1)
	}
}

// writeOnce sends rec to every replica at once and answers once the quorum
// of every deployment holds it durably, or a replica reports a newer
// record. Replicas that have not answered by then keep their request, as
// background work bounded by the request timeout.
func (n *Node) writeOnce(ctx context.Context, cfg *config.Config, key []byte, rec store.Record) (httpapi.WriteResult, error) {
	p := n.placementOf(cfg, key)
	start := time.Now()
	// Room for every replica twice: one send, and one forced send again.
	answers := make(chan writeAnswer, 2*len(p.nodes))
	// The writes outlive the request: a replica slower than the quorum
	// still gets the write, up to the request timeout.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	send := func(i int, forced bool) {
		r := n.replicaOf(p.nodes[i], forced)
		if !n.goBackground(func(context.Context) {
			res, err := r.Put(wctx, key, rec)
			answers <- writeAnswer{i: i, res: res, err: err}
		}) {
			answers <- writeAnswer{i: i, err: errShuttingDown}
		}
	}
	for i := range p.nodes {
		send(i, false)
	}
	q := newQuorumWait(p, false)
	for q.pending() > 0 {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(n, answers, q.pending(), cancel, nil)
			return httpapi.WriteResult{}, ctx.Err()
		}
		if a.err == nil && a.res.Outcome == store.Stale {
			// A newer write or delete exists: this one lost everywhere
			// once repair has run, so answer now.
			q.answered(a.i, nil)
			n.metrics.writes.WithLabelValues("superseded").Inc()
			finishLater(n, answers, q.pending(), cancel, nil)
			return httpapi.WriteResult{Timestamp: a.res.Current.Timestamp, Superseded: true}, nil
		}
		q.answered(a.i, a.err)
		if q.satisfied() {
			n.metrics.writes.WithLabelValues("ok").Inc()
			n.metrics.quorumLatency.WithLabelValues("write").Observe(time.Since(start).Seconds())
			finishLater(n, answers, q.pending(), cancel, nil)
			return httpapi.WriteResult{Timestamp: rec.Timestamp}, nil
		}
		for _, i := range q.resend() {
			send(i, true)
		}
	}
	cancel()
	if errs := q.err(); noSpace(errs) {
		n.metrics.writes.WithLabelValues("no_space").Inc()
		return httpapi.WriteResult{}, fmt.Errorf("write of %d bytes: %d of %d replicas took it, too few: some lack disk space: %w: %w",
			len(rec.Value), q.countOK(), len(p.nodes), httpapi.ErrInsufficientStorage, errs)
	}
	n.metrics.writes.WithLabelValues("unavailable").Inc()
	return httpapi.WriteResult{}, fmt.Errorf("write of %d bytes: %d of %d replicas answered: %w: %w",
		len(rec.Value), q.countOK(), len(p.nodes), httpapi.ErrUnavailable, q.err())
}

// noSpace reports whether err says a replica refused a write because its
// disk is nearly full: the local store's ErrNoSpace, or a peer's
// CodeInsufficientStorage.
func noSpace(err error) bool {
	return errors.Is(err, store.ErrNoSpace) || errors.Is(err, wire.ErrInsufficientStorage)
}

// finishLater hands the answers still to come for a request to background
// work, which waits for them (each bounded by the request timeout) and then
// releases the request's context.
func finishLater[T any](n *Node, answers <-chan T, remaining int, cancel context.CancelFunc, after func([]T)) {
	if !n.goBackground(func(context.Context) {
		defer cancel()
		late := make([]T, 0, remaining)
		for range remaining {
			late = append(late, <-answers)
		}
		if after != nil {
			after(late)
		}
	}) {
		cancel()
	}
}

func countTrue(b []bool) int {
	c := 0
	for _, v := range b {
		if v {
			c++
		}
	}
	return c
}
