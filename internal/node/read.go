package node

import (
	"context"
	"fmt"
	"time"

	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/store"
)

type readAnswer struct {
	i     int
	rec   store.Record
	found bool
	err   error
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
	return httpapi.Version{Timestamp: rec.Timestamp, Deleted: rec.Tombstone, Value: rec.Value}, nil
}

// Stat returns the newest version of key among its replicas; it reads the
// same replicas as Get, so it repairs them the same way.
func (n *Node) Stat(ctx context.Context, key []byte) (httpapi.Version, error) {
	return n.Get(ctx, key)
}

// readRecord asks every replica of key at once and answers with the newest
// record once the read quorum of every deployment answered. The answers
// that arrive later join the comparison in the background; then every
// replica that answered with an older record, or none, gets the newest one
// written back (read repair, when the deployment has read_repair on).
func (n *Node) readRecord(ctx context.Context, key []byte) (store.Record, bool, error) {
	cfg := n.cfg.Load()
	p := n.placementOf(cfg, key)
	repair := n.settings(cfg).ReadRepair
	start := time.Now()
	// Room for every replica twice: one send, and one forced send again.
	answers := make(chan readAnswer, 2*len(p.nodes))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	send := func(i int, forced bool) {
		r := n.replicaOf(p.nodes[i], forced)
		if !n.goBackground(func(context.Context) {
			rec, found, err := r.Get(rctx, key)
			answers <- readAnswer{i: i, rec: rec, found: found, err: err}
		}) {
			answers <- readAnswer{i: i, err: errShuttingDown}
		}
	}
	for i := range p.nodes {
		send(i, false)
	}
	q := newQuorumWait(p, true)
	got := make([]readAnswer, 0, len(p.nodes))
	for q.pending() > 0 {
		var a readAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(n, answers, q.pending(), cancel, nil)
			return store.Record{}, false, ctx.Err()
		}
		got = append(got, a)
		q.answered(a.i, a.err)
		if !q.satisfied() {
			for _, i := range q.resend() {
				send(i, true)
			}
			continue
		}
		newest, found := newestOf(got)
		n.metrics.reads.WithLabelValues("ok").Inc()
		n.metrics.quorumLatency.WithLabelValues("read").Observe(time.Since(start).Seconds())
		if found {
			n.noteStored(newest.Timestamp)
		}
		finishLater(n, answers, q.pending(), cancel, func(late []readAnswer) {
			if repair {
				n.readRepair(key, p, append(got, late...))
			}
		})
		return newest, found, nil
	}
	cancel()
	n.metrics.reads.WithLabelValues("unavailable").Inc()
	return store.Record{}, false, fmt.Errorf("read: %d of %d replicas answered: %w: %w",
		q.countOK(), len(p.nodes), httpapi.ErrUnavailable, q.err())
}

// newestOf returns the winning record among the answers that succeeded.
func newestOf(answers []readAnswer) (store.Record, bool) {
	var newest store.Record
	found := false
	for _, a := range answers {
		if a.err != nil || !a.found {
			continue
		}
		if !found || store.Compare(a.rec, newest) > 0 {
			newest, found = a.rec, true
		}
	}
	return newest, found
}

// readRepair writes the newest record back to every replica that answered
// with an older one or none. It runs as background work after the read was
// answered.
func (n *Node) readRepair(key []byte, p placement, answers []readAnswer) {
	newest, found := newestOf(answers)
	if !found || n.admit(doorStored, newest.Timestamp) != nil {
		return // nothing to repair, or nothing that may be spread
	}
	for _, a := range answers {
		if a.err != nil || (a.found && store.Compare(a.rec, newest) >= 0) {
			continue
		}
		nd := p.nodes[a.i]
		ctx, cancel := context.WithTimeout(n.bgCtx, p.timeout)
		_, err := n.replicaFor(nd).Put(ctx, key, newest)
		cancel()
		if err != nil {
			n.metrics.readRepairs.WithLabelValues("failed").Inc()
			n.logger.Debug("read repair failed", "key", string(key), "replica", nd.ID, "err", err)
			continue
		}
		n.metrics.readRepairs.WithLabelValues("ok").Inc()
	}
}
