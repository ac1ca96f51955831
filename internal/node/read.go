package node

import (
	"context"
	"fmt"
	"slices"
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
// record once the read quorum of the active deployment answered, and, for
// quorum reads, once that record is on enough replicas that every later
// read quorum meets one of them: when the answers do not show that yet (a
// write in progress, a replica behind), it is written back first
// (blocking read repair, settle), so that no read that starts later
// returns an older one. The answers that arrive later join the
// comparison in the background; then every replica that answered with an
// older record, or none, gets the newest one written back (read repair,
// when the deployment has read_repair on).
func (n *Node) readRecord(ctx context.Context, key []byte) (store.Record, bool, error) {
	cfg := n.cfg.Load()
	p := n.placementOf(cfg, key)
	repair := n.settings(cfg).ReadRepair
	start := time.Now()
	got, err := n.askReplicas(ctx, p, key, false, func(all []readAnswer) {
		if repair {
			n.readRepair(key, p, all)
		}
	})
	if err != nil {
		n.metrics.reads.WithLabelValues("unavailable").Inc()
		return store.Record{}, false, err
	}
	newest, found := newestOf(got)
	if found && n.admit(doorStored, newest.Timestamp) == nil && p.quorumReads() {
		if err := n.settle(ctx, p, key, newest, got); err != nil {
			n.metrics.reads.WithLabelValues("unavailable").Inc()
			return store.Record{}, false, err
		}
	}
	n.metrics.reads.WithLabelValues("ok").Inc()
	n.metrics.quorumLatency.WithLabelValues("read").Observe(time.Since(start).Seconds())
	return newest, found, nil
}

// askReplicas asks every replica of p for its record of key (only the
// timestamp with statOnly) and returns the answers once the read quorum of
// the active deployment answered; or the answers it got and an error when
// that quorum cannot be met. The answers still to come are awaited in the
// background (each bounded by the request timeout); then, when the quorum
// was met, late gets every answer, early and late.
func (n *Node) askReplicas(ctx context.Context, p placement, key []byte, statOnly bool, late func(all []readAnswer)) ([]readAnswer, error) {
	// Room for every replica twice: one send, and one forced send again.
	answers := make(chan readAnswer, 2*len(p.nodes))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	send := func(i int, forced bool) {
		r := n.replicaOf(p.nodes[i], forced)
		if !n.goBackground(func(context.Context) {
			var a readAnswer
			a.i = i
			if statOnly {
				a.rec, a.found, a.err = r.stat(rctx, key)
			} else {
				a.rec, a.found, a.err = r.Get(rctx, key)
			}
			answers <- a
		}) {
			answers <- readAnswer{i: i, err: errShuttingDown}
		}
	}
	for i := range p.nodes {
		send(i, false)
	}
	q := newQuorumWait(p, needRead)
	got := make([]readAnswer, 0, len(p.nodes))
	for q.pending() > 0 {
		var a readAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(n, answers, q.pending(), cancel, nil)
			return nil, ctx.Err()
		}
		got = append(got, a)
		q.answered(a.i, a.err)
		if !q.satisfied() {
			for _, i := range q.resend() {
				send(i, true)
			}
			continue
		}
		var after func([]readAnswer)
		if late != nil {
			early := slices.Clone(got)
			after = func(rest []readAnswer) { late(append(early, rest...)) }
		}
		finishLater(n, answers, q.pending(), cancel, after)
		return got, nil
	}
	cancel()
	return got, fmt.Errorf("read: %d of %d replicas answered: %w: %w",
		q.countOK(), len(p.nodes), httpapi.ErrUnavailable, q.err())
}

// settle makes sure that newest, the record a read found newest among the
// answers got, is on replicas − read quorum + 1 of the active deployment's
// replicas before the read answers with it: replicas whose answer did not
// show it (or that did not answer yet) are sent it, and settle waits until
// enough hold it (or a newer record). Every later read quorum meets one of
// them, and so does the first phase of every later write: reads never go
// back in time, and a version seen once is never hidden again by an older
// one. With a majority read quorum that is never more replicas than the
// read itself needs.
func (n *Node) settle(ctx context.Context, p placement, key []byte, newest store.Record, got []readAnswer) error {
	q := newQuorumWait(p, needSettled)
	held := make([]bool, len(p.nodes))
	for _, a := range got {
		if a.err == nil && a.found && store.Compare(a.rec, newest) >= 0 {
			held[a.i] = true
		}
	}
	var missing []int
	for i := range p.nodes {
		if held[i] {
			q.answered(i, nil)
		} else {
			missing = append(missing, i)
		}
	}
	if q.satisfied() {
		return nil
	}
	send, answers, cancel := n.putSender(ctx, p, key, newest)
	for _, i := range missing {
		send(i, false)
	}
	for q.pending() > 0 {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(n, answers, q.pending(), cancel, nil)
			return ctx.Err()
		}
		// Written, unchanged or stale: the replica holds newest or newer.
		q.answered(a.i, a.err)
		if q.satisfied() {
			n.metrics.readRepairs.WithLabelValues("blocking").Inc()
			finishLater(n, answers, q.pending(), cancel, nil)
			return nil
		}
		for _, i := range q.resend() {
			send(i, true)
		}
	}
	cancel()
	n.metrics.readRepairs.WithLabelValues("failed").Inc()
	return fmt.Errorf("read: the newest version is on too few replicas, and %d of %d took it when it was written back: %w: %w",
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
