package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// Refill: see recovery.go for the design.
const (
	// refillBatchBytes is about how many bytes of keys and values one
	// OpRangeStream response carries.
	refillBatchBytes = 4 << 20
	// refillStreams is how many units a node refills at once, each from
	// its own source: enough to keep the sender's reads, the network and
	// the receiver's writes busy together.
	refillStreams = 4
	// applyKeys and applyBytes bound one PutMany of a received batch, so
	// that a client's write of one of its keys waits briefly.
	applyKeys  = 256
	applyBytes = 1 << 20
	// refillReportEvery is how often a running refill logs its progress.
	refillReportEvery = 10 * time.Second
	// refillStallWait is the longest a refill batch waits for the store
	// to end a write stall before it writes anyway.
	refillStallWait = 5 * time.Second
)

// refillUnits cuts lost into units: the parts of the rings' arcs (whose
// keys all have the same replicas under cfg) that self holds together
// with at least one peer, merging neighbours that have the same peers.
func refillUnits(cfg *config.Config, self string, lost []hashRange) []refillUnit {
	var units []refillUnit
	var lastPeers []string
	var buf []config.Node
	forEachArc(cfg, func(r hashRange, owner uint32) {
		buf = cfg.ReplicasOfHash(buf[:0], owner)
		if len(buf) < 2 || !slices.ContainsFunc(buf, func(n config.Node) bool { return n.ID == self }) {
			return
		}
		peers := make([]string, 0, len(buf))
		for _, nd := range buf {
			peers = append(peers, nd.ID)
		}
		for _, part := range intersect([]hashRange{r}, lost) {
			if n := len(units); n > 0 && units[n-1].Hi != ^uint32(0) && units[n-1].Hi+1 == part.lo && slices.Equal(peers, lastPeers) {
				units[n-1].Hi = part.hi
				continue
			}
			units = append(units, refillUnit{Lo: part.lo, Hi: part.hi})
			lastPeers = peers
		}
	})
	return units
}

// refillProgress counts a refill for the metrics and the log lines.
type refillProgress struct {
	active        atomic.Bool
	receivedBytes atomic.Int64 // this run
	receivedKeys  atomic.Int64
	// remaining holds, per unit, the estimate of what is still to come:
	// keys and bytes, from the unit's last response (or its first
	// estimate).
	mu        sync.Mutex // guards remaining, rate, lastBytes, lastAt
	remaining map[int][2]uint64
	rate      float64 // bytes per second over the last report period
	lastBytes int64
	lastAt    time.Time
}

func (p *refillProgress) setRemaining(unit int, keys, bytes uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.remaining[unit] = [2]uint64{keys, bytes}
}

// left returns the estimates of keys and bytes still to come. Once some
// hundred records have arrived, the bytes are the keys still to come times
// the average size of those received, which is closer than the senders'
// estimates from their disk usage.
func (p *refillProgress) left() (keys, bytes uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.remaining {
		keys += r[0]
		bytes += r[1]
	}
	if got := p.receivedKeys.Load(); got >= 100 {
		bytes = uint64(float64(keys) * float64(p.receivedBytes.Load()) / float64(got))
	}
	return keys, bytes
}

// tick updates the rate from the bytes received since the last tick.
func (p *refillProgress) tick(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	got := p.receivedBytes.Load()
	if !p.lastAt.IsZero() {
		if dt := now.Sub(p.lastAt).Seconds(); dt > 0 {
			p.rate = float64(got-p.lastBytes) / dt
		}
	}
	p.lastBytes, p.lastAt = got, now
	return p.rate
}

func (p *refillProgress) currentRate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// eta estimates the time left at the current rate; 0 when unknown.
func (p *refillProgress) eta() time.Duration {
	_, bytes := p.left()
	rate := p.currentRate()
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(bytes) / rate * float64(time.Second))
}

// refillCollectors returns the refill's metrics.
func refillCollectors(p *refillProgress, m recoveryMetrics) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_refill_active", Help: "1 while the node refills lost ranges by streaming them from its peers, else 0.",
		}, func() float64 {
			if p.active.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_refill_keys_remaining", Help: "Estimated records still to come in the running refill (0 when none runs).",
		}, func() float64 {
			k, _ := p.left()
			return float64(k)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_refill_bytes_remaining", Help: "Estimated bytes still to come in the running refill, as the senders store them (0 when none runs).",
		}, func() float64 {
			_, b := p.left()
			return float64(b)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_refill_bytes_per_second", Help: "Rate of the running refill over the last 10 s.",
		}, p.currentRate),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_refill_eta_seconds", Help: "Estimated seconds the running refill still takes at its current rate (0: unknown, or none runs).",
		}, func() float64 { return p.eta().Seconds() }),
		m.batches, m.totalBytes, m.totalKeys, m.readThroughs, m.suspectsDropped,
	}
}

// recoveryMetrics are the counters of read-throughs and refills.
type recoveryMetrics struct {
	batches      *prometheus.CounterVec
	totalBytes   prometheus.Counter
	totalKeys    prometheus.Counter
	readThroughs *prometheus.CounterVec
	// suspectsDropped counts the suspect records a refill deleted.
	suspectsDropped prometheus.Counter
}

func newRecoveryMetrics() recoveryMetrics {
	return recoveryMetrics{
		readThroughs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_read_throughs_total",
			Help: "Reads of a key in a lost range that this recovering node answered by asking the key's other replicas first, by outcome (found; not_found: enough replicas that are not recovering said so; unavailable: too few could answer).",
		}, []string{"outcome"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_refill_batches_total",
			Help: "Batches of records a refill asked for, by result (ok; refused: the peer is recovering there itself; error: the call failed or the batch was corrupt).",
		}, []string{"result"}),
		totalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tako_refill_received_bytes_total", Help: "Bytes of keys and values received by refills.",
		}),
		totalKeys: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tako_refill_received_keys_total", Help: "Records received by refills.",
		}),
		suspectsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tako_refill_suspects_dropped_total",
			Help: "Records of ranges this node came back to (or of a store it was told may be an old copy, -recover) that no source held any more, deleted by the refill so that they never bring a deleted key back.",
		}),
	}
}

// errNoSource says that no peer could stream a unit.
var errNoSource = errors.New("no peer that holds the range could stream it")

// refill streams every pending unit of rec from a peer, refillStreams at
// once, and returns once each unit is done or failed with every peer that
// holds it. A unit that no peer could stream because they all recover it
// too is marked done: the repair pass brings what they have.
func (n *Node) refill(ctx context.Context, cfg *config.Config, rec *recovery) error {
	pending := rec.pending()
	if len(pending) == 0 {
		return nil
	}
	p := &n.refillProgress
	p.mu.Lock()
	p.remaining = map[int][2]uint64{}
	p.lastAt, p.lastBytes, p.rate = time.Time{}, 0, 0
	p.mu.Unlock()
	p.receivedBytes.Store(0)
	p.receivedKeys.Store(0)
	p.active.Store(true)
	defer func() {
		// What an interrupted or incomplete refill left is the repair
		// pass's, or the next refill's, to report.
		p.mu.Lock()
		p.remaining = map[int][2]uint64{}
		p.rate = 0
		p.mu.Unlock()
		p.active.Store(false)
	}()

	start := time.Now()
	n.estimateRefill(ctx, cfg, rec, pending)
	pending = rec.pending()
	keys, bytes := p.left()
	n.logger.Info("refill started: streaming the lost ranges from the peers that hold them", "node", n.id,
		"units", len(pending), "keys_estimated", keys, "bytes_estimated", bytes,
		"repair_bandwidth", n.settings(cfg).RepairBandwidth)

	reportCtx, stopReports := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		n.reportRefill(reportCtx, start)
	}()
	defer func() { stopReports(); <-reported }()

	queue := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	failed, noSource := 0, 0
	for range refillStreams {
		wg.Go(func() {
			for i := range queue {
				err := n.refillUnit(ctx, cfg, rec, i)
				switch {
				case errors.Is(err, errNoSource):
					mu.Lock()
					noSource++
					mu.Unlock()
				case err != nil:
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, i := range pending {
		select {
		case queue <- i:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	saveErr := rec.save()
	took := time.Since(start)
	got := p.receivedBytes.Load()
	n.logger.Info("refill finished", "node", n.id, "took", took.Round(time.Millisecond),
		"keys_received", p.receivedKeys.Load(), "bytes_received", got,
		"rate_mb_per_s", fmt.Sprintf("%.1f", float64(got)/1e6/max(took.Seconds(), 1e-9)),
		"units", len(pending), "units_without_source", noSource, "units_failed", failed)
	if failed > 0 {
		return errors.Join(fmt.Errorf("%d of %d units failed, the first: %w", failed, len(pending), firstErr), saveErr)
	}
	return saveErr
}

// reportRefill logs the refill's progress every refillReportEvery, and
// keeps the rate up to date, until ctx ends.
func (n *Node) reportRefill(ctx context.Context, start time.Time) {
	p := &n.refillProgress
	p.tick(time.Now())
	t := time.NewTicker(refillReportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rate := p.tick(now)
			keys, bytes := p.left()
			n.logger.Info("refill in progress", "node", n.id, "elapsed", now.Sub(start).Round(time.Second),
				"keys_received", p.receivedKeys.Load(), "bytes_received", p.receivedBytes.Load(),
				"keys_remaining", keys, "bytes_remaining", bytes,
				"rate_mb_per_s", fmt.Sprintf("%.1f", rate/1e6), "eta", p.eta().Round(time.Second))
		}
	}
}

// estimateRefill asks the peers, one batch per peer, how much each pending
// unit holds, for the progress reports, and marks done the units that
// hold nothing. Failures only leave the estimates unknown until the units'
// first batches arrive.
func (n *Node) estimateRefill(ctx context.Context, cfg *config.Config, rec *recovery, pending []int) {
	byPeer := map[string][]int{}
	nodes := map[string]config.Node{}
	for _, i := range pending {
		u := rec.unit(i)
		if srcs := n.refillSources(cfg, u); len(srcs) > 0 {
			byPeer[srcs[0].ID] = append(byPeer[srcs[0].ID], i)
			nodes[srcs[0].ID] = srcs[0]
		}
	}
	marked := false // units found empty, to save once at the end
	for id, units := range byPeer {
		if up, _ := n.peers.Peer(id).Up(); !up {
			continue
		}
		for len(units) > 0 {
			part := units[:min(len(units), wire.MaxBatch)]
			units = units[len(part):]
			req := &wire.Request{Op: wire.OpBatch}
			for _, i := range part {
				u := rec.unit(i)
				req.Batch = append(req.Batch, wire.Request{Op: wire.OpRangeStream, Ranges: []wire.HashRange{{Lo: u.Lo, Hi: u.Hi}}, After: u.After})
			}
			var scratch passStats
			resp, err := n.peerCall(ctx, n.remote(nodes[id]), req, &scratch)
			if err != nil {
				continue
			}
			for j, r := range resp.Batch {
				if r.Err != nil {
					continue
				}
				n.refillProgress.setRemaining(part[j], r.RemainingKeys, r.RemainingBytes)
				if r.RemainingKeys == 0 {
					// Nothing to stream: what is written there from now
					// on reaches this node directly, and the repair
					// pass brings the rest. The source holds none of
					// the unit's suspect records: they go.
					u := rec.unit(part[j])
					merged := !u.suspect()
					if !merged {
						merged = n.dropSuspects(ctx, u, nil, nil) == nil
					}
					rec.markEmpty(part[j], merged)
					marked = true
				}
			}
		}
	}
	if marked {
		if err := rec.save(); err != nil {
			n.logger.Warn("saving the recovery state failed: a restart looks at the empty parts of the lost ranges again", "node", n.id, "err", err)
		}
	}
}

// refillSources returns the peers that hold unit u under cfg, in an order
// that spreads the units over them.
func (n *Node) refillSources(cfg *config.Config, u refillUnit) []config.Node {
	all := cfg.ReplicasOfHash(nil, u.Lo)
	out := make([]config.Node, 0, len(all))
	for _, nd := range all {
		if nd.ID != n.id {
			out = append(out, nd)
		}
	}
	if len(out) > 1 {
		k := int(u.Lo % uint32(len(out)))
		out = append(out[k:], out[:k]...)
	}
	return out
}

// refillUnit streams unit i from the first of its sources that can, from
// where it stopped. It returns errNoSource when every source refused
// because it recovers the unit too (the unit is then marked done), and an
// error when they failed otherwise (the unit stays pending, for the next
// attempt).
func (n *Node) refillUnit(ctx context.Context, cfg *config.Config, rec *recovery, i int) error {
	u := rec.unit(i)
	sources := n.refillSources(cfg, u)
	var errs []error
	refused := 0
	for _, src := range sources {
		if up, _ := n.peers.Peer(src.ID).Up(); !up {
			errs = append(errs, fmt.Errorf("from %s: %w", src.ID, errPeerDown))
			continue
		}
		err := n.streamUnit(ctx, cfg, rec, i, src)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, wire.ErrUnavailable) || errors.Is(err, wire.ErrUnknownOp) {
			refused++
			n.metrics.refill.batches.WithLabelValues("refused").Inc()
		} else {
			n.metrics.refill.batches.WithLabelValues("error").Inc()
		}
		errs = append(errs, fmt.Errorf("from %s: %w", src.ID, err))
	}
	if refused == len(sources) {
		n.refillProgress.setRemaining(i, 0, 0)
		return errors.Join(errNoSource, rec.advance(i, nil, true, false))
	}
	return fmt.Errorf("refilling [%#08x, %#08x]: %w", u.Lo, u.Hi, errors.Join(errs...))
}

// streamUnit streams unit i from src, batch by batch, until src says the
// unit has no more records. It asks for the next batch before it applies
// the one it has, so that the sender reads while this node writes.
func (n *Node) streamUnit(ctx context.Context, cfg *config.Config, rec *recovery, i int, src config.Node) error {
	peer := n.remote(src)
	ask := func(after []byte) <-chan streamReply {
		u := rec.unit(i)
		req := &wire.Request{Op: wire.OpRangeStream, Ranges: []wire.HashRange{{Lo: u.Lo, Hi: u.Hi}}, After: after, Limit: refillBatchBytes}
		reply := make(chan streamReply, 1)
		go func() {
			var scratch passStats
			resp, err := n.peerCall(ctx, peer, req, &scratch)
			reply <- streamReply{resp, err}
		}()
		return reply
	}
	next := ask(rec.unit(i).After)
	for {
		r := <-next
		if r.err != nil {
			return r.err
		}
		resp := r.resp
		if resp.Truncated && len(resp.Stream) == 0 {
			return fmt.Errorf("peer %s answered an empty batch with more to come", src.ID)
		}
		if resp.Truncated {
			next = ask(resp.Stream[len(resp.Stream)-1].Key)
		}
		u := rec.unit(i)
		_, last, err := n.applyStream(ctx, u, resp.Stream)
		if err == nil && u.suspect() {
			// The unit's suspect records up to this batch's last key (to
			// the unit's end after its last batch) that the source does
			// not hold go.
			upTo := last
			if !resp.Truncated {
				upTo = nil
			}
			err = n.dropSuspects(ctx, u, resp.Stream, upTo)
		}
		if err != nil {
			if resp.Truncated {
				<-next // the call in flight ends with ctx or its timeout
			}
			return fmt.Errorf("applying a batch: %w", err)
		}
		n.metrics.refill.batches.WithLabelValues("ok").Inc()
		n.refillProgress.setRemaining(i, resp.RemainingKeys, resp.RemainingBytes)
		if err := rec.advance(i, last, !resp.Truncated, !resp.Truncated); err != nil {
			if resp.Truncated {
				<-next
			}
			return err
		}
		if !resp.Truncated {
			return nil
		}
	}
}

// dropSuspects deletes the node's suspect records of unit u (older than
// u.SuspectBefore) after u's cursor and up to upTo included (to the
// unit's end when upTo is nil), except those of the keys in stream: what
// a source streamed of that span, which the source holds. A record
// written since it was read is left alone (Remove compares).
func (n *Node) dropSuspects(ctx context.Context, u refillUnit, stream []wire.StreamEntry, upTo []byte) error {
	held := make(map[string]bool, len(stream))
	for _, e := range stream {
		held[string(e.Key)] = true
	}
	type doomed struct {
		key []byte
		rec store.Record
	}
	var drop []doomed
	err := n.store.ScanAfter(ctx, u.Lo, u.Hi, u.After, func(key []byte, rec store.Record) error {
		if upTo != nil && keyHashOrder(key, upTo) > 0 {
			return errPastSpan
		}
		if rec.Timestamp < u.SuspectBefore && !held[string(key)] {
			drop = append(drop, doomed{bytes.Clone(key), rec.Clone()})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPastSpan) {
		return fmt.Errorf("looking for suspect records: %w", err)
	}
	for _, d := range drop {
		removed, err := n.store.Remove(ctx, d.key, d.rec)
		if err != nil {
			return fmt.Errorf("deleting the suspect record of %q: %w", d.key, err)
		}
		if removed {
			n.metrics.refill.suspectsDropped.Inc()
		}
	}
	return nil
}

// errPastSpan stops dropSuspects' scan at the end of its span.
var errPastSpan = errors.New("node: past the span")

// streamReply is the answer to one OpRangeStream.
type streamReply struct {
	resp *wire.Response
	err  error
}

// applyStream checks that the records of a batch belong to unit u after
// its cursor, in order, and writes them, a few hundred at a time, synced
// once at the end. It returns the bytes received and the last key applied.
func (n *Node) applyStream(ctx context.Context, u refillUnit, stream []wire.StreamEntry) (int, []byte, error) {
	if len(stream) == 0 {
		return 0, nil, nil
	}
	prev := u.After
	entries := make([]store.Entry, 0, min(len(stream), applyKeys))
	size, total := 0, 0
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		// Clients first: every part of a batch counts against the
		// bandwidth (a quarter of it while the node serves clients), and
		// while the store stalls its writes (its memtables or level 0 are
		// full), the refill waits for it to catch up.
		if err := n.repairLimiter.wait(ctx, size, n.backgroundRate()); err != nil {
			return err
		}
		if err := n.store.WaitUnstalled(ctx, refillStallWait); err != nil {
			return err
		}
		if _, err := n.store.PutManyUnsynced(ctx, entries); err != nil {
			return err
		}
		entries, size = entries[:0], 0
		return nil
	}
	for _, e := range stream {
		h := keyhash.Sum(e.Key)
		if h < u.Lo || h > u.Hi {
			return total, nil, fmt.Errorf("record %q hashes to %#08x, outside [%#08x, %#08x]", e.Key, h, u.Lo, u.Hi)
		}
		if len(prev) > 0 && keyHashOrder(e.Key, prev) <= 0 {
			return total, nil, fmt.Errorf("record %q does not follow %q", e.Key, prev)
		}
		prev = e.Key
		if n.admit(doorRefill, e.Record.Timestamp) != nil {
			// Counted; the source keeps it until an operator purges it.
			continue
		}
		entries = append(entries, store.Entry{Key: e.Key, Record: e.Record})
		size += len(e.Key) + len(e.Record.Value)
		if len(entries) == applyKeys || size >= applyBytes {
			if err := flush(); err != nil {
				return total, nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return total, nil, err
	}
	// One sync for the whole batch, before the cursor moves past it.
	if err := n.store.Sync(ctx); err != nil {
		return total, nil, err
	}
	for _, e := range stream {
		total += len(e.Key) + len(e.Record.Value)
	}
	n.refillProgress.receivedBytes.Add(int64(total))
	n.refillProgress.receivedKeys.Add(int64(len(stream)))
	n.metrics.refill.totalBytes.Add(float64(total))
	n.metrics.refill.totalKeys.Add(float64(len(stream)))
	return total, bytes.Clone(prev), nil
}

// serveRangeStream answers an OpRangeStream from the local store: the
// records of the range after the cursor, up to about the limit's bytes (at
// least one), and estimates of what is left. A node that recovers any of
// the range refuses (CodeUnavailable): it may lack records, and the
// receiver asks another peer.
func (n *Node) serveRangeStream(ctx context.Context, req *wire.Request) *wire.Response {
	r := req.Ranges[0]
	if lost := n.lostRanges(); lost.overlaps(hashRange{r.Lo, r.Hi}) {
		return &wire.Response{Err: &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("node %s is recovering part of [%#08x, %#08x] itself", n.id, r.Lo, r.Hi)}}
	}
	resp := &wire.Response{Op: wire.OpRangeStreamResponse}
	budget := min(int(req.Limit), n.frame-(64<<10))
	size := 0
	var last []byte
	if req.Limit > 0 {
		err := n.store.ScanAfter(ctx, r.Lo, r.Hi, req.After, func(key []byte, rec store.Record) error {
			s := len(key) + len(rec.Value) + 16
			if len(resp.Stream) > 0 && (size+s > budget || len(resp.Stream) == wire.MaxStreamEntries) {
				resp.Truncated = true
				return errSummaryFull
			}
			size += s
			last = bytes.Clone(key)
			resp.Stream = append(resp.Stream, wire.StreamEntry{Key: last, Record: rec.Clone()})
			return nil
		})
		if err != nil && !errors.Is(err, errSummaryFull) {
			return errorResponse(err)
		}
	} else {
		resp.Truncated = true
	}
	// What is left: from the last record's hash (or the cursor's) on,
	// less the records of that hash already sent, which are few.
	from := r.Lo
	switch {
	case last != nil:
		from = keyhash.Sum(last)
	case len(req.After) > 0:
		from = max(r.Lo, keyhash.Sum(req.After))
	}
	if resp.Truncated && from <= r.Hi {
		keys, size, err := n.store.EstimateRange(ctx, from, r.Hi)
		if err == nil {
			resp.RemainingKeys, resp.RemainingBytes = keys, size
		}
	}
	return resp
}

// rateLimiter spreads work so that it goes no faster than a rate: each
// call books its bytes after those booked before, and waits until its
// booking ends.
type rateLimiter struct {
	mu   sync.Mutex // guards next
	next time.Time  // when the bytes booked so far are due
}

// wait books n bytes at rate bytes per second and waits until they are
// due. It returns ctx's error if ctx ends first.
func (l *rateLimiter) wait(ctx context.Context, n int, rate int64) error {
	if rate <= 0 || n <= 0 {
		return nil
	}
	now := time.Now()
	l.mu.Lock()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	due := l.next
	l.mu.Unlock()
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
