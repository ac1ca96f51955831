// Package coord coordinates one request over a key's replicas: it sends
// it to every replica at once, waits for the quorum of every deployment
// that counts, stamps writes that the cluster stamps, puts what a read
// returns on enough replicas before answering (settle) and writes the
// newest version back to replicas that lag (read repair).
//
// It reaches replicas only through the Replica interface: a node's own
// store, a peer over the binary protocol, or, in tests, anything else.
// The node (for its HTTP and binary ports), the Go client and through it
// the proxy coordinate with it, so a request costs the same hops whichever
// entry it takes.
package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/record"
)

// Replica is one copy of a key's data as a coordinator sees it.
type Replica interface {
	// Get returns the replica's record of key; found is false when it has
	// none.
	Get(ctx context.Context, key []byte) (rec record.Record, found bool, err error)
	// Stat returns the replica's record of key as Get does, without its
	// value: what a write stamped by the cluster asks first.
	Stat(ctx context.Context, key []byte) (rec record.Record, found bool, err error)
	// Put offers rec to the replica, which keeps the winner.
	Put(ctx context.Context, key []byte, rec record.Record) (record.PutResult, error)
}

// ErrNotSent is wrapped by a Replica's error when the request never
// reached the replica: it is marked down, or its address is in dial
// backoff. The coordinator sends such a request again, forced, when the
// quorum cannot be made without that replica.
var ErrNotSent = errors.New("coord: request not sent to the replica")

// ErrStaleView is wrapped by a Replica's error when the replica refused
// the request because it places keys by a newer configuration than the
// one the request was placed by: the coordinator is behind. A write that
// meets it before it sent anything answers it at once, without stamping.
var ErrStaleView = errors.New("coord: the replica places keys by a newer configuration")

// ErrShuttingDown is what a request answers when its Env refuses the
// background work it needs.
var ErrShuttingDown = errors.New("coord: shutting down")

// Env is what a Coordinator needs of the process it runs in.
type Env struct {
	// Replica returns the replica behind nd. Forced, a peer is called
	// even while it is marked down or its address is in backoff.
	Replica func(nd config.Node, forced bool) Replica
	// Now returns the timestamp of a write the cluster stamps (a hybrid
	// clock's reading: never the same twice).
	Now func() int64
	// Stored checks the timestamp of a record already stored against the
	// timestamp rule; a record that breaks it is served as it is but never
	// spread (no settle, no read repair), and no write is stamped after
	// it. Nil admits every timestamp.
	Stored func(ts int64) error
	// Go runs f as background work of the process (late answers, read
	// repair), with a context that ends when the process stops; it reports
	// false, without running f, once the process is stopping.
	Go func(f func(ctx context.Context)) bool
	// Observer counts what requests did; nil counts nothing.
	Observer Observer
	// Logger logs failed read repairs at debug level; nil discards.
	Logger *slog.Logger
}

// Observer counts what a coordinator's requests did.
type Observer interface {
	// Read is called once per read with its outcome ("ok",
	// "unavailable") and how long it took.
	Read(outcome string, took time.Duration)
	// Write is called once per write with its outcome ("ok",
	// "superseded", "no_space", "unavailable") and how long it took, and
	// with "stamped_without_quorum" when a write goes on stamped without
	// hearing from a read quorum.
	Write(outcome string, took time.Duration)
	// ReadRepair is called per replica a read wrote back to ("ok",
	// "failed"), and with "blocking" when a read had to settle first.
	ReadRepair(outcome string)
}

type noObserver struct{}

func (noObserver) Read(string, time.Duration)  {}
func (noObserver) Write(string, time.Duration) {}
func (noObserver) ReadRepair(string)           {}

// Coordinator coordinates requests over replicas reached through its Env.
// It is safe for concurrent use.
type Coordinator struct {
	env Env
}

// New returns a Coordinator over env. Replica, Now and Go are required.
func New(env Env) *Coordinator {
	if env.Observer == nil {
		env.Observer = noObserver{}
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Stored == nil {
		env.Stored = func(int64) error { return nil }
	}
	return &Coordinator{env: env}
}

// WriteResult is what a write did.
type WriteResult struct {
	// Timestamp is the written version's, or, when Superseded, the newer
	// version's.
	Timestamp int64
	// Superseded says a newer version of the key exists (only for a write
	// with the client's own timestamp): the write lost.
	Superseded bool
}

// answer is one replica's answer to a read.
type answer struct {
	i     int
	rec   record.Record
	found bool
	err   error
}

type writeAnswer struct {
	i   int
	res record.PutResult
	err error
}

// Read asks every replica of key under cfg at once and answers with the
// newest record once the read quorum of every deployment answered (the
// active's and, during a migration, the target's: NeedRead),
// and, for quorum reads, once that record is on enough replicas that every
// later read quorum meets one of them: when the answers do not show that
// yet (a write in progress, a replica behind), it is written back first
// (blocking read repair, settle), so that no read that starts later
// returns an older one. The answers that arrive later join the comparison
// in the background; then, when repair is set, every replica that
// answered with an older record, or none, gets the newest one written back
// (read repair).
func (c *Coordinator) Read(ctx context.Context, cfg *config.Config, key []byte, repair bool) (record.Record, bool, error) {
	p := PlacementOf(cfg, key)
	start := time.Now()
	var late func(context.Context, []answer)
	if repair {
		late = func(ctx context.Context, all []answer) { c.readRepair(ctx, key, p, all) }
	}
	got, err := c.ask(ctx, p, key, false, NeedRead, late)
	if err != nil {
		c.env.Observer.Read("unavailable", time.Since(start))
		return record.Record{}, false, err
	}
	newest, found := newestOf(got)
	if found && c.env.Stored(newest.Timestamp) == nil && p.QuorumReads() {
		if err := c.settle(ctx, p, key, newest, got); err != nil {
			c.env.Observer.Read("unavailable", time.Since(start))
			return record.Record{}, false, err
		}
	}
	c.env.Observer.Read("ok", time.Since(start))
	return newest, found, nil
}

// Write stores rec for key on its replicas under cfg. When it fails after
// it sent the record, the result's Timestamp is the record's (stamped).
//
// A write that the cluster stamps (rec.Timestamp 0) first asks enough of
// the key's replicas for their versions' timestamps to see every version
// a client may have seen (NeedStamp: Group.SeenNeed, never more than a
// read quorum), and stamps itself above all of them and above the clock
// (for this key alone: the clock does not move). So every version
// acknowledged (or returned by a read) before this write started is below
// it: the write is ordered after everything that finished before
// it, even when the clock that stamped those versions runs ahead. A
// replica that holds a newer version then (Stale) holds a write concurrent
// with this one, ordered after it: the write counts that replica toward
// its quorum and succeeds, overwritten. So such a write is sent once with
// one timestamp, is never visible, hidden, then visible again, and never
// answers Superseded. It fails with record.ErrUnavailable when too few
// replicas answer either round (with a read quorum that is a majority; with
// a smaller one the first round's shortfall only stamps the write by the
// clock, see Write's body), or when the key's current version breaks the timestamp
// rule (only tako purge removes it).
//
// A write with the client's own timestamp (which the caller held to the
// timestamp rule) keeps it, and loses (Superseded) to a newer version.
func (c *Coordinator) Write(ctx context.Context, cfg *config.Config, key []byte, rec record.Record) (WriteResult, error) {
	p := PlacementOf(cfg, key)
	if rec.Timestamp != 0 {
		return c.writeOnce(ctx, p, key, rec, false)
	}
	got, err := c.ask(ctx, p, key, true, NeedStamp, nil)
	switch {
	case ctx.Err() != nil:
		return WriteResult{}, ctx.Err()
	case errors.Is(err, ErrStaleView):
		return WriteResult{}, fmt.Errorf("write: nothing sent: %w", err)
	case err != nil && p.QuorumReads():
		// Too few replicas could say what they hold (down, or refilling
		// what they lost) to be sure to see every version a client may
		// have seen: stamped by the clock, the write could be ordered
		// before one of them, and the key would not behave as a
		// register. It fails, as a read would, and nothing is sent.
		c.env.Observer.Write("unavailable", 0)
		return WriteResult{}, fmt.Errorf("write: %w: too few replicas could say what they hold to order the write after the versions before it: %w", record.ErrNothingWritten, err)
	case err != nil:
		// A read quorum that is not a majority: the operator chose
		// availability over that promise. The write goes on, stamped by
		// the clock above what those that answered hold, and is then
		// ordered after the writes that finished before it as far as the
		// clocks agree.
		c.env.Observer.Write("stamped_without_quorum", 0)
	}
	rec.Timestamp = c.env.Now()
	if top, found := newestOf(got); found {
		if err := c.env.Stored(top.Timestamp); err != nil {
			c.env.Observer.Write("unavailable", 0)
			return WriteResult{}, fmt.Errorf("%w: %q holds a version that breaks the timestamp rule (%v), which a write stamped by the cluster cannot follow; `tako purge` removes it",
				record.ErrUnavailable, key, err)
		}
		rec.Timestamp = max(rec.Timestamp, top.Timestamp+1)
	}
	return c.writeOnce(ctx, p, key, rec, true)
}

// ask asks every replica of p for its record of key (only the timestamp
// with statOnly) and returns the answers once the replicas of every
// deployment meet need (NeedRead or NeedStamp); or the answers it got and an
// error when they cannot. The answers still to come are awaited in the
// background (each bounded by the request timeout); then, when the quorum
// was met, late gets every answer, early and late.
func (c *Coordinator) ask(ctx context.Context, p Placement, key []byte, statOnly bool, need Need, late func(ctx context.Context, all []answer)) ([]answer, error) {
	// Room for every replica twice: one send, and one forced send again.
	answers := make(chan answer, 2*len(p.Nodes))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.Timeout)
	send := func(i int, forced bool) {
		r := c.env.Replica(p.Nodes[i], forced)
		if !c.env.Go(func(context.Context) {
			a := answer{i: i}
			if statOnly {
				a.rec, a.found, a.err = r.Stat(rctx, key)
			} else {
				a.rec, a.found, a.err = r.Get(rctx, key)
			}
			answers <- a
		}) {
			answers <- answer{i: i, err: ErrShuttingDown}
		}
	}
	for i := range p.Nodes {
		send(i, false)
	}
	q := newQuorumWait(p, need)
	got := make([]answer, 0, len(p.Nodes))
	for q.pending() > 0 {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(&c.env, answers, q.pending(), cancel, nil)
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
		var after func(context.Context, []answer)
		if late != nil {
			early := slices.Clone(got)
			after = func(ctx context.Context, rest []answer) { late(ctx, append(early, rest...)) }
		}
		finishLater(&c.env, answers, q.pending(), cancel, after)
		return got, nil
	}
	cancel()
	return got, fmt.Errorf("read: %d of %d replicas answered: %w: %w",
		q.countOK(), len(p.Nodes), record.ErrUnavailable, q.err())
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
func (c *Coordinator) settle(ctx context.Context, p Placement, key []byte, newest record.Record, got []answer) error {
	q := newQuorumWait(p, NeedSettled)
	held := make([]bool, len(p.Nodes))
	for _, a := range got {
		if a.err == nil && a.found && record.Compare(a.rec, newest) >= 0 {
			held[a.i] = true
		}
	}
	var missing []int
	for i := range p.Nodes {
		if held[i] {
			q.answered(i, nil)
		} else {
			missing = append(missing, i)
		}
	}
	if q.satisfied() {
		return nil
	}
	send, answers, cancel := c.putSender(ctx, p, key, newest)
	for _, i := range missing {
		send(i, false)
	}
	for q.pending() > 0 {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(&c.env, answers, q.pending(), cancel, nil)
			return ctx.Err()
		}
		// Written, unchanged or stale: the replica holds newest or newer.
		q.answered(a.i, a.err)
		if q.satisfied() {
			c.env.Observer.ReadRepair("blocking")
			finishLater(&c.env, answers, q.pending(), cancel, nil)
			return nil
		}
		for _, i := range q.resend() {
			send(i, true)
		}
	}
	cancel()
	c.env.Observer.ReadRepair("failed")
	return fmt.Errorf("read: the newest version is on too few replicas, and %d of %d took it when it was written back: %w: %w",
		q.countOK(), len(p.Nodes), record.ErrUnavailable, q.err())
}

// newestOf returns the winning record among the answers that succeeded.
func newestOf(answers []answer) (record.Record, bool) {
	var newest record.Record
	found := false
	for _, a := range answers {
		if a.err != nil || !a.found {
			continue
		}
		if !found || record.Compare(a.rec, newest) > 0 {
			newest, found = a.rec, true
		}
	}
	return newest, found
}

// readRepair writes the newest record back to every replica that answered
// with an older one or none. It runs as background work after the read was
// answered.
func (c *Coordinator) readRepair(bg context.Context, key []byte, p Placement, answers []answer) {
	newest, found := newestOf(answers)
	if !found || c.env.Stored(newest.Timestamp) != nil {
		return // nothing to repair, or nothing that may be spread
	}
	for _, a := range answers {
		if a.err != nil || (a.found && record.Compare(a.rec, newest) >= 0) {
			continue
		}
		nd := p.Nodes[a.i]
		ctx, cancel := context.WithTimeout(bg, p.Timeout)
		_, err := c.env.Replica(nd, false).Put(ctx, key, newest)
		cancel()
		if err != nil {
			c.env.Observer.ReadRepair("failed")
			c.env.Logger.Debug("read repair failed", "key", string(key), "replica", nd.ID, "err", err)
			continue
		}
		c.env.Observer.ReadRepair("ok")
	}
}

// putSender returns send, which offers rec for key to replica i of p
// (forced past its health and dial backoff when asked) as background
// work, and answers, where each answer arrives (room for every replica
// twice: one send, and one forced send again). The puts outlive the
// request: a replica slower than the quorum still gets the record, up to
// the request timeout; cancel ends them sooner.
func (c *Coordinator) putSender(ctx context.Context, p Placement, key []byte, rec record.Record) (send func(i int, forced bool), answers chan writeAnswer, cancel context.CancelFunc) {
	answers = make(chan writeAnswer, 2*len(p.Nodes))
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.Timeout)
	send = func(i int, forced bool) {
		r := c.env.Replica(p.Nodes[i], forced)
		if !c.env.Go(func(context.Context) {
			res, err := r.Put(wctx, key, rec)
			answers <- writeAnswer{i: i, res: res, err: err}
		}) {
			answers <- writeAnswer{i: i, err: ErrShuttingDown}
		}
	}
	return send, answers, cancel
}

// writeOnce sends rec to every replica of p at once and answers once the
// quorum of every deployment holds it durably, or, unless overwritable, a
// replica reports a newer record (superseded). An overwritable write (one
// the cluster stamped, see Write) counts a replica that holds a newer
// record toward its quorum. Replicas that have not answered by then keep
// their request, as background work bounded by the request timeout.
func (c *Coordinator) writeOnce(ctx context.Context, p Placement, key []byte, rec record.Record, overwritable bool) (WriteResult, error) {
	start := time.Now()
	send, answers, cancel := c.putSender(ctx, p, key, rec)
	for i := range p.Nodes {
		send(i, false)
	}
	q := newQuorumWait(p, NeedWrite)
	for q.pending() > 0 {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			finishLater(&c.env, answers, q.pending(), cancel, nil)
			return WriteResult{}, ctx.Err()
		}
		if a.err == nil && a.res.Outcome == record.Stale && !overwritable {
			// A newer write or delete exists: this one lost everywhere
			// once repair has run, so answer now.
			q.answered(a.i, nil)
			c.env.Observer.Write("superseded", time.Since(start))
			finishLater(&c.env, answers, q.pending(), cancel, nil)
			return WriteResult{Timestamp: a.res.Current.Timestamp, Superseded: true}, nil
		}
		q.answered(a.i, a.err)
		if q.satisfied() {
			c.env.Observer.Write("ok", time.Since(start))
			finishLater(&c.env, answers, q.pending(), cancel, nil)
			return WriteResult{Timestamp: rec.Timestamp}, nil
		}
		for _, i := range q.resend() {
			send(i, true)
		}
	}
	cancel()
	if errs := q.err(); errors.Is(errs, record.ErrInsufficientStorage) {
		c.env.Observer.Write("no_space", time.Since(start))
		return WriteResult{Timestamp: rec.Timestamp}, fmt.Errorf("write of %d bytes: %d of %d replicas took it, too few: some lack disk space: %w: %w",
			len(rec.Value), q.countOK(), len(p.Nodes), record.ErrInsufficientStorage, errs)
	}
	c.env.Observer.Write("unavailable", time.Since(start))
	return WriteResult{Timestamp: rec.Timestamp}, fmt.Errorf("write of %d bytes: %d of %d replicas answered: %w: %w",
		len(rec.Value), q.countOK(), len(p.Nodes), record.ErrUnavailable, q.err())
}

// finishLater hands the answers still to come for a request to background
// work of env, which waits for them (each bounded by the request timeout),
// passes them to after (when set) and then releases the request's
// context.
func finishLater[T any](env *Env, answers <-chan T, remaining int, cancel context.CancelFunc, after func(ctx context.Context, late []T)) {
	if !env.Go(func(ctx context.Context) {
		defer cancel()
		late := make([]T, 0, remaining)
		for range remaining {
			late = append(late, <-answers)
		}
		if after != nil {
			after(ctx, late)
		}
	}) {
		cancel()
	}
}
