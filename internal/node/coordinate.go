package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// The Node is the httpapi.Backend of its own HTTP port.
var _ httpapi.Backend = (*Node)(nil)

// replica is one copy of a key's data as this node sees it: the local
// store, or a peer over the binary protocol. It is what the coordinator
// of coord reaches, plus the read of a replica's own record that a
// recovering node and Where need.
type replica interface {
	coord.Replica
	// getLocal returns what the replica's store holds of key, without a
	// read-through: a recovering replica's errRecovering for a key it may
	// have lost.
	getLocal(ctx context.Context, key []byte) (rec store.Record, found bool, err error)
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

// Stat is Get without the value.
func (l localReplica) Stat(ctx context.Context, key []byte) (store.Record, bool, error) {
	rec, found, err := l.Get(ctx, key)
	rec.Value = nil
	return rec, found, err
}

// Put offers rec to the node's store.
func (l localReplica) Put(ctx context.Context, key []byte, rec store.Record) (store.PutResult, error) {
	l.n.foreground.mark()
	return l.n.store.Put(ctx, key, rec)
}

// readThrough answers for a key of a lost range, whose local record is
// local (when found): it asks every other replica of the key for its own
// record (OpReplicaGetLocal, which never reads through in turn), waits for
// their answers (at most half the request timeout), keeps the newest record
// it saw in its store and answers with it. A replica that lost its data
// and holds what the live replicas hold is then as good as any of them.
//
// Its answer, found or not, counts only once enough of the active
// deployment's other replicas answered that they meet every set of
// replicas that may hold a version a client has seen (RecoveringNeed), or
// every one of them answered (some that recover the key too: then no
// replica that is merely out of reach holds a newer version, and what
// the lost disks alone held is gone for good): else it is errRecovering.
// Answering with what fewer of them hold would let a read go back in time:
// with the only other holder of the newest version down, the replica would
// hand on the version before as its own, and the version come back with
// that holder (the simulator found this, docs/simulator-design.md).
func (n *Node) readThrough(ctx context.Context, key []byte, local store.Record, found bool) (store.Record, bool, error) {
	cfg := n.cfg.Load()
	p := coord.PlacementOf(cfg, key)
	rctx, cancel := context.WithTimeout(ctx, p.Timeout/2)
	defer cancel()
	type answer struct {
		i     int
		rec   store.Record
		found bool
		err   error
	}
	answers := make(chan answer, len(p.Nodes))
	asked := 0
	for i, nd := range p.Nodes {
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
	active := p.Groups[0]
	member := slices.ContainsFunc(active.Members, func(i int) bool { return p.Nodes[i].ID == n.id })
	need := active.RecoveringNeed(member)
	others := len(active.Members)
	if member {
		others--
	}
	newest, have := local, found
	heard, unsure := 0, 0
	for range asked {
		a := <-answers
		inActive := slices.Contains(active.Members, a.i)
		if a.err != nil {
			if inActive && errors.Is(a.err, wire.ErrUnavailable) {
				unsure++ // it answered: it recovers the key too, or does not serve
			}
			continue
		}
		if inActive {
			heard++
		}
		if a.found && (!have || store.Compare(a.rec, newest) > 0) {
			newest, have = a.rec, true
		}
	}
	if have && (!found || store.Compare(newest, local) > 0) && n.admit(doorReadThrough, newest.Timestamp) == nil {
		// Keep it, in the background, even when it is no answer yet: it
		// is a version the key had. The answer need not wait for this
		// store's write (which a refill may be slowing).
		n.goBackground(func(bg context.Context) {
			if _, err := n.store.Put(bg, key, newest); err != nil {
				n.logger.Debug("keeping a record read through failed; the refill brings it", "key", string(key), "err", err)
			}
		})
	}
	if heard < need && heard+unsure < others {
		n.metrics.refill.readThroughs.WithLabelValues("unavailable").Inc()
		return store.Record{}, false, fmt.Errorf("%w: %d of the other replicas of %q that are not recovering answered, fewer than the %d that meet every copy of its newest version, and %d did not answer",
			errRecovering, heard, key, need, others-heard-unsure)
	}
	if have {
		n.metrics.refill.readThroughs.WithLabelValues("found").Inc()
		return newest, true, nil
	}
	n.metrics.refill.readThroughs.WithLabelValues("not_found").Inc()
	return store.Record{}, false, nil
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

// Put stores value under key on the key's replicas (the HTTP door), to
// expire as exp says by this node's clock.
func (n *Node) Put(ctx context.Context, key, value []byte, ts int64, exp httpapi.Expiry) (httpapi.WriteResult, error) {
	rec := store.Record{Timestamp: ts, Value: value, ExpiresAt: exp.At}
	if exp.TTL > 0 || exp.At != 0 {
		now := n.clock.Wall()
		if exp.TTL > 0 {
			rec.ExpiresAt = now + exp.TTL.Microseconds()
		}
		if err := hlc.CheckExpiry(rec.ExpiresAt, now, n.settings(n.cfg.Load()).MaxTTL); err != nil {
			return httpapi.WriteResult{}, fmt.Errorf("%w: %w", err, httpapi.ErrBadRequest)
		}
	}
	res, err := n.writeRecord(ctx, doorHTTP, key, rec)
	if err == nil && !res.Superseded {
		res.ExpiresAt = rec.ExpiresAt
	}
	return res, err
}

// Delete stores a tombstone for key on the key's replicas (the HTTP door).
func (n *Node) Delete(ctx context.Context, key []byte, ts int64) (httpapi.WriteResult, error) {
	return n.writeRecord(ctx, doorHTTP, key, store.Record{Timestamp: ts, Tombstone: true})
}

// writeRecord stores rec, which came in through door, on the key's
// replicas (coord.Coordinator.Write): a timestamp of the client's is held
// to the timestamp rule first.
func (n *Node) writeRecord(ctx context.Context, door string, key []byte, rec store.Record) (httpapi.WriteResult, error) {
	if rec.Timestamp != 0 {
		if err := n.admit(door, rec.Timestamp); err != nil {
			return httpapi.WriteResult{}, fmt.Errorf("X-Timestamp: %w: %w", err, httpapi.ErrBadRequest)
		}
	}
	if door == doorBinary && rec.ExpiresAt != 0 {
		// The client checked the expiry by its own clock; this one may
		// read behind it by up to max_timestamp_ahead. An expiry that
		// has passed by this clock is let through: the value is absent
		// at once, as the client's clock would soon say too.
		d := n.settings(n.cfg.Load())
		if now := n.clock.Wall(); rec.ExpiresAt > now && rec.ExpiresAt-now > (d.MaxTTL+d.MaxTimestampAhead).Microseconds() {
			return httpapi.WriteResult{}, fmt.Errorf("%w: %w", hlc.CheckExpiry(rec.ExpiresAt, now, d.MaxTTL+d.MaxTimestampAhead), httpapi.ErrBadRequest)
		}
	}
	res, err := n.coord.Write(ctx, n.cfg.Load(), key, rec)
	return httpapi.WriteResult{Timestamp: res.Timestamp, Superseded: res.Superseded}, err
}

// readRecord reads the newest record of key from its replicas
// (coord.Coordinator.Read), with read repair when the node's deployment
// has it on.
func (n *Node) readRecord(ctx context.Context, key []byte) (store.Record, bool, error) {
	cfg := n.cfg.Load()
	return n.coord.Read(ctx, cfg, key, n.settings(cfg).ReadRepair)
}

// Get returns the newest version of key among its replicas.
func (n *Node) Get(ctx context.Context, key []byte) (httpapi.Version, error) {
	rec, found, err := n.readRecord(ctx, key)
	if err != nil {
		return httpapi.Version{}, err
	}
	if !found {
		return httpapi.Version{}, httpapi.ErrNotFound
	}
	v := httpapi.Version{Timestamp: rec.Timestamp, Deleted: rec.Tombstone, Value: rec.Value, ExpiresAt: rec.ExpiresAt}
	if rec.Expired(n.clock.Wall()) {
		v.Expired, v.Value = true, nil
	}
	return v, nil
}

// Stat returns the newest version of key among its replicas; it reads the
// same replicas as Get, so it repairs them the same way.
func (n *Node) Stat(ctx context.Context, key []byte) (httpapi.Version, error) {
	return n.Get(ctx, key)
}

// replicaOf returns the replica behind a configured node; forced, a peer
// is called even while it is marked down or its address is in backoff,
// and waited for while it is joining (a client's request needs it).
func (n *Node) replicaOf(nd config.Node, forced bool) replica {
	if nd.ID == n.id {
		return n.local
	}
	r := n.remote(nd)
	r.force = forced
	r.waitJoining = forced
	return r
}
