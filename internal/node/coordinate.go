package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
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
	// stat returns the replica's record of key as Get does, without its
	// value: what a write stamped by the cluster asks first.
	stat(ctx context.Context, key []byte) (rec store.Record, found bool, err error)
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
	h := keyhash.Sum(key)
	rec, found, suspect, err := l.n.readOwn(ctx, key, h)
	if err != nil {
		return store.Record{}, false, err
	}
	if !suspect && !l.n.lostRanges().contains(h) {
		return rec, found, nil
	}
	// A suspect record is no answer: the key may have been deleted while
	// the node was out.
	return l.n.readThrough(ctx, key, rec, found)
}

// getLocal returns the node's record of key from its store alone: for a
// key of a range the node recovers that it does not have, or whose record
// is suspect, errRecovering.
func (l localReplica) getLocal(ctx context.Context, key []byte) (store.Record, bool, error) {
	l.n.foreground.mark()
	h := keyhash.Sum(key)
	rec, found, suspect, err := l.n.readOwn(ctx, key, h)
	switch {
	case err != nil:
		return store.Record{}, false, err
	case suspect || !found && l.n.lostRanges().contains(h):
		return store.Record{}, false, errRecovering
	}
	return rec, found, nil
}

// testHookOwnRead, when a test sets it, runs in readOwn between the read
// and the judgement of the record. Atomic: the nodes of the test run
// while it is set.
var testHookOwnRead atomic.Pointer[func()]

// readOwn reads the node's record of key (of hash h) from its store. A
// suspect record (recovery.go) is not returned: found is false and suspect
// true. The bound that makes a record suspect is taken before the store is
// read: the refill deletes a unit's suspect records and only then marks
// the unit merged, so a record read after the bound was taken is either
// judged by it or was read once the deletions were done. Judging a record
// read before the merge by the state after it would let a record that the
// merge deleted out (a reader that waited between its read and its check
// did bring a deleted key back this way).
func (n *Node) readOwn(ctx context.Context, key []byte, h uint32) (rec store.Record, found, suspect bool, err error) {
	bound := n.suspectBound(h)
	rec, err = n.store.Get(ctx, key)
	if hook := testHookOwnRead.Load(); hook != nil {
		(*hook)()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Record{}, false, false, nil
	case err != nil:
		return store.Record{}, false, false, err
	case bound != 0 && rec.Timestamp < bound:
		return store.Record{}, false, true, nil
	}
	return rec, true, false, nil
}

func (l localReplica) stat(ctx context.Context, key []byte) (store.Record, bool, error) {
	rec, found, err := l.Get(ctx, key)
	rec.Value = nil
	return rec, found, err
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

// quorumReads reports whether the active deployment's read quorum is a
// majority of the key's replicas (the default): only then do reads
// promise never to go back in time, and does a read put what it returns
// on enough replicas first (settle, needSettled), which then needs no
// more replicas than the read itself. With a smaller read quorum an
// operator chose availability over that promise, and a read must not
// need more replicas than its read quorum.
func (p placement) quorumReads() bool {
	g := p.groups[0]
	return 2*g.readNeed > len(g.members)
}

// quorumNeed is what a request needs of a key's replicas.
type quorumNeed int

const (
	// needWrite is the write quorum of every deployment (active and,
	// during a migration, target), so that a write is on a quorum of the
	// target's replicas when the target is promoted.
	needWrite quorumNeed = iota
	// needRead is the read quorum of the active deployment only: that is
	// where every acknowledged write has a quorum, so read and write
	// quorums intersect there. A read still asks, and repairs, the
	// target's replicas, and answers with the newest of every answer; but
	// target nodes that are still being filled (recovering) cannot hold it
	// up.
	needRead
	// needSettled is replicas − read quorum + 1 of the active deployment:
	// where a read puts the version it returns before it answers (settle),
	// so that every later read quorum of the active deployment meets one
	// of them and sees it (2 of 3 replicas, 1 of 2, with the defaults).
	needSettled
)

// satisfied reports whether ok[i] (per node) meets every group's need.
func (p placement) satisfied(ok []bool, need quorumNeed) bool {
	groups := p.groups
	if need != needWrite {
		groups = groups[:1]
	}
	for _, g := range groups {
		want, have := g.writeNeed, 0
		switch need {
		case needRead:
			want = g.readNeed
		case needSettled:
			want = len(g.members) - g.readNeed + 1
		}
		for _, m := range g.members {
			if ok[m] {
				have++
			}
		}
		if have < want {
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

type writeAnswer struct {
	i   int
	res store.PutResult
	err error
}

// writeRecord stores rec, which came in through door, on the key's
// replicas.
//
// A write that the cluster stamps (the client sent no timestamp) first
// asks a read quorum of the key's replicas for their versions' timestamps
// and stamps itself above all of them and above the clock (for this key
// alone: the clock does not move). Read and write quorums intersect, so
// every version acknowledged (or returned by a read) before this write
// started is below it: the write is ordered after everything that
// finished before it, even when the clock that stamped those versions
// runs ahead. A replica that holds a newer version then (Stale) holds a
// write concurrent with this one, ordered after it: the write counts that
// replica toward its quorum and succeeds, overwritten. So such a write is
// sent once with one timestamp, is never visible, hidden, then visible
// again, and never answers "superseded" (409). It fails with
// ErrUnavailable when too few replicas answer, or when the key's current
// version breaks the timestamp rule (only tako purge removes it).
//
// A write with the client's own timestamp keeps it, and loses (409) to a
// newer version.
func (n *Node) writeRecord(ctx context.Context, door string, key []byte, rec store.Record) (httpapi.WriteResult, error) {
	cfg := n.cfg.Load()
	p := n.placementOf(cfg, key)
	if rec.Timestamp != 0 {
		if err := n.admit(door, rec.Timestamp); err != nil {
			return httpapi.WriteResult{}, fmt.Errorf("X-Timestamp: %w: %w", err, httpapi.ErrBadRequest)
		}
		return n.writeOnce(ctx, p, key, rec, false)
	}
	got, err := n.askReplicas(ctx, p, key, true, nil)
	switch {
	case ctx.Err() != nil:
		return httpapi.WriteResult{}, ctx.Err()
	case err != nil:
		// Too few replicas could say what they hold (down, or refilling
		// what they lost): the write goes on, stamped by the clock above
		// what those that answered hold. It is then ordered after the
		// writes that finished before it as far as the clocks agree.
		n.metrics.writes.WithLabelValues("stamped_without_quorum").Inc()
	}
	rec.Timestamp = n.clock.Now()
	if top, found := newestOf(got); found {
		if err := n.admit(doorStored, top.Timestamp); err != nil {
			n.metrics.writes.WithLabelValues("unavailable").Inc()
			return httpapi.WriteResult{}, fmt.Errorf("%w: %q holds a version that breaks the timestamp rule (%v), which a write stamped by the cluster cannot follow; `tako purge` removes it",
				httpapi.ErrUnavailable, key, err)
		}
		rec.Timestamp = max(rec.Timestamp, top.Timestamp+1)
	}
	return n.writeOnce(ctx, p, key, rec, true)
}

// putSender returns send, which offers rec for key to replica i of p
// (forced past its health and dial backoff when asked) as background
// work, and answers, where each answer arrives (room for every replica
// twice: one send, and one forced send again). The puts outlive the
// request: a replica slower than the quorum still gets the record, up to
// the request timeout; cancel ends them sooner.
func (n *Node) putSender(ctx context.Context, p placement, key []byte, rec store.Record) (send func(i int, forced bool), answers chan writeAnswer, cancel context.CancelFunc) {
	answers = make(chan writeAnswer, 2*len(p.nodes))
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	send = func(i int, forced bool) {
		r := n.replicaOf(p.nodes[i], forced)
		if !n.goBackground(func(context.Context) {
			res, err := r.Put(wctx, key, rec)
			answers <- writeAnswer{i: i, res: res, err: err}
		}) {
			answers <- writeAnswer{i: i, err: errShuttingDown}
		}
	}
	return send, answers, cancel
}

// writeOnce sends rec to every replica of p at once and answers once the
// quorum of every deployment holds it durably, or, unless overwritable, a
// replica reports a newer record (superseded). An overwritable write (one
// the cluster stamped, see writeRecord) counts a replica that holds a
// newer record toward its quorum. Replicas that have not answered by then
// keep their request, as background work bounded by the request timeout.
func (n *Node) writeOnce(ctx context.Context, p placement, key []byte, rec store.Record, overwritable bool) (httpapi.WriteResult, error) {
	start := time.Now()
	send, answers, cancel := n.putSender(ctx, p, key, rec)
	for i := range p.nodes {
		send(i, false)
	}
	q := newQuorumWait(p, needWrite)
	for q.pending() > 0 {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(n, answers, q.pending(), cancel, nil)
			return httpapi.WriteResult{}, ctx.Err()
		}
		if a.err == nil && a.res.Outcome == store.Stale && !overwritable {
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
