package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// Background repair (anti-entropy). Every background_repair_interval a node
// makes one pass: for every peer it shares keys with, it compares digests
// of the hash ranges they share (sharedRanges), and only where a digest
// differs does it narrow the range down (splitting it and comparing the
// parts' digests) until the range is small enough to exchange its keys'
// fingerprints, then sends the peer the records it lacks or holds older,
// and fetches the records this node lacks or holds older. Replicas that
// agree cost one digest per shared range and peer: no round trip per key.
// The pass is spread over the interval.
const (
	// digestChunk is how many ranges one OpDigest asks about.
	digestChunk = 1024
	// summaryThreshold is the record count (both sides together) under
	// which a differing range is reconciled key by key instead of split.
	summaryThreshold = 32
	// splitWays is how many parts a differing range is split into.
	splitWays = 16
	// recordBatch is how many records one OpBatch pushes or pulls.
	recordBatch = 64
)

// maxRefillRetries is how many refills in a row may leave units failed
// before a repair pass runs anyway (it brings their records key by key).
const maxRefillRetries = 10

// passStats counts one pass, for the log line and the metrics.
type passStats struct {
	peers, peersSkipped      int
	ranges, differed         int
	keysCompared             uint64
	keysSent, keysReceived   int
	bytesSent, bytesReceived int
	messages                 int
}

// runRepair makes background repair passes until ctx ends.
func (n *Node) runRepair(ctx context.Context) {
	// A node that started on an empty store first finds out whether the
	// cluster is new (newcluster.go). The first pass waits a little, so
	// that a cluster starting up does not meet peers that are not
	// listening yet.
	begun := time.Now()
	n.judgeAtStart(ctx, 2*time.Second)
	if !n.waitToRepair(ctx, begun, 2*time.Second) {
		return
	}
	// refillRetries counts the refills in a row that left units failed.
	refillRetries := 0
	for {
		cfg := n.cfg.Load()
		d := n.settings(cfg)
		start := time.Now()
		rec := n.recovery.Load()
		recovering := rec != nil
		startEpoch := n.epoch.Load()
		if (d.BackgroundRepair || recovering) && n.Ready() {
			pace := d.BackgroundRepairInterval
			gen := 0
			if recovering && !n.judgeEmptyStart(ctx) {
				// Too few nodes answered whether the cluster holds data
				// (newcluster.go): ask again before refilling.
				if !n.waitToRepair(ctx, time.Now(), 0) {
					return
				}
				continue
			}
			if rec != n.recovery.Load() {
				continue // judged new: nothing to recover
			}
			if recovering {
				pace = 0 // recover as fast as possible
				gen = rec.generation()
				// Stream the lost ranges first; the pass then brings
				// what the sources lacked.
				err := n.refill(ctx, cfg, rec)
				switch {
				case err != nil && ctx.Err() == nil && refillRetries < maxRefillRetries:
					// A source that was down (a restart) may be back in a
					// moment: the refill resumes the failed units where
					// they stopped, before a repair pass would bring their
					// records key by key.
					refillRetries++
					n.logger.Warn("refill incomplete: it resumes the failed units where they stopped in a moment",
						"node", n.id, "attempt", refillRetries, "err", err)
					if !n.waitToRepair(ctx, time.Now(), 0) {
						return
					}
					continue
				case err != nil && ctx.Err() == nil:
					refillRetries = 0
					n.logger.Warn("refill incomplete again: a repair pass brings what is missing, and the next refill resumes the failed units",
						"node", n.id, "err", err)
				default:
					refillRetries = 0
				}
				if ctx.Err() != nil {
					return
				}
			}
			stats, err := n.repairPass(ctx, cfg, pace)
			if ctx.Err() != nil {
				return
			}
			n.logPass(stats, time.Since(start), err)
			clean := err == nil && stats.peersSkipped == 0 && cfg == n.cfg.Load()
			ended := recovering && clean && n.endRecovery(rec, gen)
			if clean && (!recovering || ended) {
				// Every key this node held when the pass began is now on
				// every replica it shares with a peer, under this epoch.
				// A node still recovering has not synced: it may hold
				// suspect records its refill has not merged yet, and the
				// coordinator must not promote a migration on its word.
				n.metrics.repairSyncedEpoch.Set(float64(startEpoch))
			}
			if clean {
				if !recovering {
					gc, err := n.collectGarbage(ctx, cfg)
					if gc.notOwned+gc.tombstones+gc.expired+gc.handedOff > 0 || err != nil {
						n.logger.Info("garbage collection", "node", n.id, "dropped_not_owned", gc.notOwned,
							"dropped_tombstones", gc.tombstones, "dropped_expired", gc.expired, "handed_off", gc.handedOff, "err", err)
					}
				}
			}
			if ended {
				n.logger.Info("node recovered: its lost ranges are refilled and a repair pass with every peer has finished", "node", n.id,
					"repair_keys_received", stats.keysReceived, "took", time.Since(start).Round(time.Millisecond),
					"recovering_since", rec.state.Started.Format(time.RFC3339))
			}
		}
		if !n.waitToRepair(ctx, start, 0) {
			return
		}
	}
}

// waitToRepair waits until the next pass is due: one repair interval after
// the last one started (or first, when that is shorter and not 0), never
// sooner than Options.MinRepairSpacing after it; at once (after 200 ms)
// when recovery starts; re-reading the interval whenever the configuration
// changes. It returns false when ctx ends.
func (n *Node) waitToRepair(ctx context.Context, last time.Time, first time.Duration) bool {
	for {
		interval := n.settings(n.cfg.Load()).BackgroundRepairInterval
		if first > 0 {
			interval = min(interval, first)
		}
		wait := max(interval, n.repairSpacing) - time.Since(last)
		if n.Recovering() {
			wait = min(wait, 200*time.Millisecond)
		}
		if wait <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
			return true
		case <-n.repairWake:
			// Recovery started: loop to wait the short delay that gives
			// the configuration a moment to reach the peers too.
		case <-n.configChanged:
			// The interval may have changed: wait again from last.
		}
	}
}

func (n *Node) logPass(s passStats, took time.Duration, err error) {
	n.metrics.repairPasses.Inc()
	n.metrics.repairLastPass.Set(took.Seconds())
	n.metrics.repairBytes.WithLabelValues("sent").Add(float64(s.bytesSent))
	n.metrics.repairBytes.WithLabelValues("received").Add(float64(s.bytesReceived))
	level := "repair pass done"
	args := []any{"node", n.id, "took", took.Round(time.Millisecond), "peers", s.peers, "peers_skipped", s.peersSkipped,
		"ranges", s.ranges, "ranges_differed", s.differed, "keys_compared", s.keysCompared,
		"keys_sent", s.keysSent, "keys_received", s.keysReceived,
		"bytes_sent", s.bytesSent, "bytes_received", s.bytesReceived, "messages", s.messages}
	if err != nil {
		n.logger.Warn(level+" with errors; the next pass retries", append(args, "err", err)...)
		return
	}
	if s.keysSent+s.keysReceived > 0 || s.peersSkipped > 0 {
		n.logger.Info(level, args...)
	} else {
		n.logger.Debug(level, args...)
	}
}

// repairPass runs one pass with every peer under cfg, spread over interval.
func (n *Node) repairPass(ctx context.Context, cfg *config.Config, interval time.Duration) (passStats, error) {
	var stats passStats
	shared := sharedRanges(cfg, n.id)
	peers := make([]string, 0, len(shared))
	total := 0
	for id, rs := range shared {
		peers = append(peers, id)
		total += len(rs)
	}
	sort.Strings(peers)
	nodes := map[string]config.Node{}
	for _, nd := range cfg.Nodes() {
		nodes[nd.ID] = nd
	}
	start := time.Now()
	lastLog := start
	done := 0
	var errs []error
	for _, id := range peers {
		peer := n.remote(nodes[id])
		// A peer marked down is skipped, except when its probe is due:
		// then the pass is the probe. (Nothing else may call a peer that
		// no client request needs, and a pass that skips a peer is not
		// clean: a recovering node would wait for ever.)
		if up, _ := peer.health.Up(); !up {
			if !peer.health.Allow() {
				stats.peersSkipped++
				done += len(shared[id])
				continue
			}
			peer.force = true
		}
		stats.peers++
		ranges := shared[id]
		for len(ranges) > 0 {
			chunk := ranges[:min(digestChunk, len(ranges))]
			ranges = ranges[len(chunk):]
			if err := n.repairRanges(ctx, peer, chunk, &stats); err != nil {
				errs = append(errs, fmt.Errorf("with %s: %w", id, err))
				done += len(ranges) + len(chunk)
				break
			}
			done += len(chunk)
			n.metrics.repairProgress.Set(float64(done) / float64(max(total, 1)))
			if time.Since(lastLog) >= time.Minute {
				lastLog = time.Now()
				elapsed := time.Since(start)
				eta := time.Duration(float64(elapsed) * float64(total-done) / float64(max(done, 1)))
				n.logger.Info("repair pass in progress", "node", n.id, "ranges_done", done, "ranges", total,
					"keys_compared", stats.keysCompared, "keys_sent", stats.keysSent, "keys_received", stats.keysReceived,
					"elapsed", elapsed.Round(time.Second), "eta", eta.Round(time.Second))
			}
			// Pace the pass: the share of the interval that the share of
			// the ranges done so far deserves.
			due := time.Duration(float64(interval) * 0.9 * float64(done) / float64(max(total, 1)))
			if wait := due - time.Since(start); wait > 0 {
				select {
				case <-ctx.Done():
					return stats, ctx.Err()
				case <-time.After(wait):
				case <-n.repairWake:
					// Recovery started: finish this pass unpaced, and
					// leave the wake-up for the loop to pass again
					// under the new configuration.
					interval = 0
					select {
					case n.repairWake <- struct{}{}:
					default:
					}
				case <-n.configChanged:
					// Pace the rest by the new configuration's interval.
					interval = n.settings(n.cfg.Load()).BackgroundRepairInterval
				}
			}
		}
	}
	n.metrics.repairProgress.Set(1)
	return stats, errors.Join(errs...)
}

// repairPeer runs one unpaced pass with a single peer (for measurements).
func (n *Node) repairPeer(ctx context.Context, cfg *config.Config, id string) (passStats, error) {
	var stats passStats
	nd, _, ok := cfg.Node(id)
	if !ok {
		return stats, fmt.Errorf("no node %s", id)
	}
	stats.peers = 1
	err := n.repairRanges(ctx, n.remote(nd), sharedRanges(cfg, n.id)[id], &stats)
	return stats, err
}

// repairRanges brings the given ranges into agreement with peer.
func (n *Node) repairRanges(ctx context.Context, peer remoteReplica, ranges []hashRange, stats *passStats) error {
	queue := ranges
	for len(queue) > 0 {
		chunk := queue[:min(digestChunk, len(queue))]
		queue = queue[len(chunk):]
		req := &wire.Request{Op: wire.OpDigest, Ranges: make([]wire.HashRange, len(chunk))}
		for i, r := range chunk {
			req.Ranges[i] = wire.HashRange{Lo: r.lo, Hi: r.hi}
		}
		resp, err := n.peerCall(ctx, peer, req, stats)
		if err != nil {
			return err
		}
		if len(resp.Digests) != len(chunk) {
			return fmt.Errorf("peer %s answered %d digests for %d ranges", peer.node.ID, len(resp.Digests), len(chunk))
		}
		stats.bytesSent += 8 * len(chunk)
		stats.bytesReceived += 16 * len(chunk)
		for i, r := range chunk {
			local, err := n.store.RangeDigest(ctx, r.lo, r.hi)
			if err != nil {
				return err
			}
			remote := resp.Digests[i]
			stats.ranges++
			stats.keysCompared += max(local.Count, remote.Count)
			n.metrics.repairRanges.WithLabelValues("compared").Inc()
			if local.XOR == remote.XOR && local.Count == remote.Count {
				continue
			}
			stats.differed++
			n.metrics.repairRanges.WithLabelValues("differed").Inc()
			if local.Count+remote.Count <= summaryThreshold || r.lo == r.hi {
				more, err := n.reconcile(ctx, peer, r, stats)
				if err != nil {
					return err
				}
				queue = append(queue, more...)
				continue
			}
			queue = append(queue, split(r, splitWays)...)
		}
	}
	return nil
}

// split cuts r into at most ways parts of about equal width.
func split(r hashRange, ways int) []hashRange {
	width := uint64(r.hi) - uint64(r.lo) + 1
	step := max(width/uint64(ways), 1)
	var out []hashRange
	for lo := uint64(r.lo); lo <= uint64(r.hi); lo += step {
		hi := min(lo+step-1, uint64(r.hi))
		if uint64(r.hi)-hi < step && hi != uint64(r.hi) {
			hi = uint64(r.hi) // fold a short tail into the last part
		}
		out = append(out, hashRange{uint32(lo), uint32(hi)})
		if hi == uint64(r.hi) {
			break
		}
	}
	return out
}

type summary struct {
	fp uint64
	ts int64
}

// reconcile compares the keys of range r with peer's, fingerprint by
// fingerprint, pushes what the peer lacks or holds older and pulls what
// this node lacks or holds older. A range with more keys than one summary
// carries is returned split, for the caller to queue.
func (n *Node) reconcile(ctx context.Context, peer remoteReplica, r hashRange, stats *passStats) ([]hashRange, error) {
	resp, err := n.peerCall(ctx, peer, &wire.Request{Op: wire.OpRangeSummary, Ranges: []wire.HashRange{{Lo: r.lo, Hi: r.hi}}, Limit: 4096}, stats)
	if err != nil {
		return nil, err
	}
	if resp.Truncated && r.lo != r.hi {
		return split(r, splitWays), nil
	}
	theirs := make(map[string]summary, len(resp.Entries))
	for _, e := range resp.Entries {
		theirs[string(e.Key)] = summary{e.Fingerprint, e.Timestamp}
		stats.bytesReceived += len(e.Key) + 18
	}
	ours := map[string]summary{}
	if err := n.store.Fingerprints(ctx, r.lo, r.hi, func(key []byte, fp uint64, ts int64) error {
		ours[string(key)] = summary{fp, ts}
		return nil
	}); err != nil {
		return nil, err
	}
	var push, pull []string
	for k, o := range ours {
		t, ok := theirs[k]
		switch {
		case !ok:
			push = append(push, k)
		case o.fp != t.fp:
			// Equal timestamps with different bytes: both directions, and
			// each side keeps the winner.
			if o.ts >= t.ts {
				push = append(push, k)
			}
			if t.ts >= o.ts {
				pull = append(pull, k)
			}
		}
	}
	for k := range theirs {
		if _, ok := ours[k]; !ok {
			pull = append(pull, k)
		}
	}
	// Old tombstones, and values expired for longer than the grace, are
	// not spread to replicas that have no record of the key (see gc.go):
	// they cannot bring it back, and garbage collection is dropping them.
	now := n.clock.Wall()
	oldest := now - n.settings(n.cfg.Load()).TombstoneGrace.Microseconds()
	push = slices.DeleteFunc(push, func(k string) bool {
		_, theyHave := theirs[k]
		return !theyHave && ours[k].ts < oldest && n.goneLocally(ctx, k, now, oldest)
	})
	pull = slices.DeleteFunc(pull, func(k string) bool {
		_, weHave := ours[k]
		return !weHave && theirs[k].ts < oldest && n.goneAtPeer(ctx, peer, k, now, oldest)
	})
	sort.Strings(push)
	sort.Strings(pull)
	if err := n.pushRecords(ctx, peer, push, stats); err != nil {
		return nil, err
	}
	return nil, n.pullRecords(ctx, peer, pull, stats)
}

func (n *Node) pushRecords(ctx context.Context, peer remoteReplica, keys []string, stats *passStats) error {
	for len(keys) > 0 {
		batch := keys[:min(recordBatch, len(keys))]
		keys = keys[len(batch):]
		req := &wire.Request{Op: wire.OpBatch}
		for _, k := range batch {
			rec, found, suspect, err := n.readOwn(ctx, []byte(k), keyhash.Sum([]byte(k)))
			if err != nil {
				return err
			}
			if !found || suspect {
				continue // removed meanwhile, or the refill merges it first (recovery.go)
			}
			req.Batch = append(req.Batch, wire.Request{Op: wire.OpReplicaPut, Key: []byte(k), Record: rec})
			stats.bytesSent += len(k) + len(rec.Value) + 16
		}
		if len(req.Batch) == 0 {
			continue
		}
		resp, err := n.peerCall(ctx, peer, req, stats)
		if err != nil {
			return err
		}
		if err := n.repairLimiter.wait(ctx, requestBytes(req), n.backgroundRate()); err != nil {
			return err
		}
		var failed []error
		for i, r := range resp.Batch {
			if r.Err != nil {
				failed = append(failed, fmt.Errorf("%q: %w", req.Batch[i].Key, r.Err))
				continue
			}
			stats.keysSent++
			n.metrics.repairKeys.WithLabelValues("sent").Inc()
		}
		if err := n.itemErrors(peer, "sending", failed); err != nil {
			return err
		}
	}
	return nil
}

// requestBytes is the bytes of keys and values of a batch of puts.
func requestBytes(req *wire.Request) int {
	n := 0
	for _, r := range req.Batch {
		n += len(r.Key) + len(r.Record.Value)
	}
	return n
}

// itemErrors counts the records of a batch that peer refused, and makes
// them the pass's error: a pass that could not bring every record across
// is not clean, so it gives no credit to garbage collection or to a
// migration's convergence.
func (n *Node) itemErrors(peer remoteReplica, doing string, failed []error) error {
	if len(failed) == 0 {
		return nil
	}
	n.metrics.repairItemErrors.Add(float64(len(failed)))
	return fmt.Errorf("%s %d records with %s failed, the first: %w", doing, len(failed), peer.node.ID, failed[0])
}

func (n *Node) pullRecords(ctx context.Context, peer remoteReplica, keys []string, stats *passStats) error {
	for len(keys) > 0 {
		batch := keys[:min(recordBatch, len(keys))]
		keys = keys[len(batch):]
		req := &wire.Request{Op: wire.OpBatch}
		for _, k := range batch {
			req.Batch = append(req.Batch, wire.Request{Op: wire.OpReplicaGet, Key: []byte(k)})
			stats.bytesSent += len(k) + 4
		}
		resp, err := n.peerCall(ctx, peer, req, stats)
		if err != nil {
			return err
		}
		var failed []error
		for i, r := range resp.Batch {
			if r.Err != nil {
				failed = append(failed, fmt.Errorf("%q: %w", req.Batch[i].Key, r.Err))
				continue
			}
			if !r.Found {
				continue // removed meanwhile
			}
			rec := r.Record
			stats.bytesReceived += len(rec.Value) + 16
			if err := n.admit(doorRepair, rec.Timestamp); err != nil {
				failed = append(failed, fmt.Errorf("%q: %w", req.Batch[i].Key, err))
				continue
			}
			if _, err := n.store.Put(ctx, req.Batch[i].Key, rec); err != nil {
				return err
			}
			if err := n.repairLimiter.wait(ctx, len(rec.Value)+len(req.Batch[i].Key), n.backgroundRate()); err != nil {
				return err
			}
			stats.keysReceived++
			n.metrics.repairKeys.WithLabelValues("received").Inc()
		}
		if err := n.itemErrors(peer, "fetching", failed); err != nil {
			return err
		}
	}
	return nil
}

// goneBefore reports whether rec says its key holds nothing (a tombstone,
// or a value that expired) since before oldest, by the clock reading now:
// what garbage collection drops.
func goneBefore(rec record.Record, now, oldest int64) bool {
	since, ok := rec.GoneSince(now)
	return ok && since < oldest
}

// goneLocally reports whether the local record of key is gone since
// before oldest (goneBefore).
func (n *Node) goneLocally(ctx context.Context, key string, now, oldest int64) bool {
	rec, err := n.store.Get(ctx, []byte(key))
	return err == nil && goneBefore(rec, now, oldest)
}

// goneAtPeer reports whether peer's record of key is gone since before
// oldest (goneBefore). It costs a call, but only for old records this
// node lacks, which are rare outside garbage collection.
func (n *Node) goneAtPeer(ctx context.Context, peer remoteReplica, key string, now, oldest int64) bool {
	var scratch passStats
	resp, err := n.peerCall(ctx, peer, &wire.Request{Op: wire.OpReplicaGet, Key: []byte(key)}, &scratch)
	return err == nil && resp.Found && goneBefore(resp.Record, now, oldest)
}

// peerCall makes one repair call, bounded by the request timeout, and
// counts it.
func (n *Node) peerCall(ctx context.Context, peer remoteReplica, req *wire.Request, stats *passStats) (*wire.Response, error) {
	cfg := n.cfg.Load()
	cctx, cancel := context.WithTimeout(ctx, 4*n.settings(cfg).RequestTimeout)
	defer cancel()
	stats.messages++
	// Every call is one frame each way: a header before the bodies
	// counted by the callers.
	stats.bytesSent += wire.FrameHeaderSize
	stats.bytesReceived += wire.FrameHeaderSize
	n.metrics.repairMessages.Inc()
	return peer.call(cctx, req)
}
