// Package sim runs a whole Tako cluster in one process and drives it from a
// seed (issue 18; docs/simulator-design.md): the seed chooses the
// cluster's shape, the clients' requests and the faults; the nodes are the
// real ones (internal/node, Pebble on an in-memory file system), talking
// the real wire protocol over an in-memory network (internal/simnet), and
// the clients are the coordinating Go client; the history of every request
// is checked as the container suite checks its own (internal/history).
//
// Run natively, the seed fixes the shape, the requests and the faults but
// not the interleaving of goroutines: the Go scheduler chooses that. Under
// the deterministic host of sim/feasibility (wasip1, seeded randomness,
// virtual clocks) the same seed also fixes the interleaving; that is the
// next step.
package sim

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/history"
	"github.com/takodb/tako/internal/node"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/simnet"
	"github.com/takodb/tako/internal/wire"
)

// Options configure a run.
type Options struct {
	// Seed chooses everything the run chooses.
	Seed uint64
	// Clients is how many clients send requests at once; 0 means 4.
	Clients int
	// Requests is how many requests each client sends; 0 means 40.
	Requests int
	// Logger receives the nodes' logs; nil discards them.
	Logger *slog.Logger
	// Patience is how long the cluster has to settle once every fault has
	// healed (a migration to converge, replicas to agree, a tombstone to
	// be collected once its grace is over) before Run reports what did
	// not (Result.Unsettled). 0 means 15 s: fifteen repair passes. A
	// seed that settles ends as soon as it has, so patience costs only
	// the seeds that fail; it is generous because natively a loaded
	// machine (a long run, 20 seeds at once on 2 cores) slows every pass.
	Patience time.Duration
	// Trace, when not nil, receives a line for every message that crosses
	// the network (who sent it to whom, and what it carries:
	// wire.DescribeFrame) and for every fault, as they happen.
	Trace io.Writer
}

// Result is what a run did and what the check of its history found.
type Result struct {
	// Config is the cluster's configuration, as YAML.
	Config string
	// Faults lists the faults injected, in order.
	Faults []string
	// Ops is the history, the final reads included.
	Ops []history.Op
	// Verdict is the check of Ops.
	Verdict history.Verdict
	// Unsettled lists what was wrong once the faults had healed and the
	// cluster had time to settle (see Run): replicas of a key that still
	// disagreed, a replica that settled on another version than the final
	// read returned (a deleted key back), a tombstone that garbage
	// collection left past its grace; and what the expiring keys showed
	// (expiry.go): a value read after its expiry, a key read or held once
	// every expiry had passed. Empty when all is well.
	Unsettled []string
	// Expiring says what the workload of the expiring keys did.
	Expiring string
}

// OK reports whether the run found nothing wrong.
func (r Result) OK() bool { return r.Verdict.OK() && len(r.Unsettled) == 0 }

// The keys of a run: the cluster stamps the writes of hotKeys, the clients
// stamp those of stampedKeys (PutAt, DeleteAt), so that newest timestamp
// wins is checked beside the linearizable register.
var (
	hotKeys     = []string{"hot0", "hot1", "hot2"}
	stampedKeys = []string{"ts0", "ts1"}
)

const (
	// repairInterval and tombstoneGrace are the simulated deployment's,
	// short so that repair, refill and garbage collection run many
	// times in a run.
	repairInterval = 50 * time.Millisecond
	//
	// The grace is above the widest spread of the hosts' clocks (twice
	// maxClockOffset): a tombstone collected by a node whose clock is
	// ahead could otherwise let a write stamped by a clock behind it be
	// ordered before the delete, on the replicas that had not collected
	// it yet (seed 6284 of a long run; docs/contract-notes.md, "what it
	// assumes of clocks").
	tombstoneGrace = 1000 * time.Millisecond
	// repairSpacing is the least time between a node's repair passes,
	// whatever the interval (node.waitToRepair).
	repairSpacing = time.Second
	// maxClockOffset bounds how far a host's clock jumps from the true
	// time, either way.
	maxClockOffset = 400 * time.Millisecond
)

// Run builds the cluster of opts.Seed, runs its requests and faults, heals
// every fault, reads every key once more, and checks the history. Then it
// lets the cluster settle and checks that every replica of every key holds
// the version the final read returned, and that garbage collection removed
// every tombstone of it within two repair passes after its grace. It fails
// when the cluster cannot be built or ctx ends; a run that found an anomaly
// is a Result that is not OK.
//
// The faults: a node cut off from every other host, a link between two
// hosts cut (both ways, or one way), a link slowed, a node's disk slowed
// (its syncs), all healed; a node crashed (it loses what it had not
// synced) and restarted; once, one node's disk lost (it restarts empty and
// refills from its peers: the contract promises to survive the loss of any
// one node's disk), whatever else is down or cut; a host's clock jumping forward or back, by at most maxClockOffset
// from the true time. The shape: 3 to 5 nodes, each key on 2 or 3, read
// and write quorums chosen at random (write quorum at least 2, so that one
// lost disk loses nothing acknowledged; a majority read quorum); once,
// a migration that adds or removes a node, started while the faults go
// on, then promoted once converged, or abandoned.
func Run(ctx context.Context, opts Options) (Result, error) {
	if opts.Clients == 0 {
		opts.Clients = 4
	}
	if opts.Requests == 0 {
		opts.Requests = 40
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Patience == 0 {
		opts.Patience = 15 * repairSpacing
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7a6b0))
	var res Result
	first := shape(rng)
	active := first                                 // the active deployment, as settings changes and the migration leave it
	spare := fmt.Sprintf("n%d", len(first.nodes)+1) // the node a migration may add
	ids := append([]string(nil), first.nodes...)    // the nodes of the configuration
	res.Config = configYAML(first, nil)
	cfg, err := config.Parse([]byte(res.Config))
	if err != nil {
		return res, fmt.Errorf("sim: seed %d: the configuration it chose: %w", opts.Seed, err)
	}

	network := simnet.New()
	tr := newTracer(opts.Trace)
	if tr != nil {
		network.SetTrace(tr.message)
	}
	clientIDs := clientHosts(opts.Clients + 1) // the last one makes the final reads
	hosts := append(append(append([]string(nil), ids...), spare), clientIDs...)
	c := &cluster{cfg: cfg, network: network, logger: opts.Logger, nodes: map[string]*simNode{},
		hosts: hosts, clocks: newClocks(hosts), disks: map[string]*atomic.Int64{}}
	for _, h := range hosts {
		c.disks[h] = new(atomic.Int64)
	}
	defer c.stopAll()
	for _, id := range ids {
		if err := c.start(ctx, id, vfs.NewCrashableMem()); err != nil {
			return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
		}
	}

	clients := make([]*client.Client, len(clientIDs))
	for i, h := range clientIDs {
		clients[i] = client.New(cfg, client.Options{Dial: network.Host(h).Dial, Wall: c.clocks.wall(h)})
		defer clients[i].Close()
	}
	c.clients = clients
	// Every node of the new cluster first finds that no node holds any
	// record, so that none recovers, before anything is written: a node
	// that asked only after the first write would recover like a lost
	// disk (docs/operations.md, "A new cluster does not recover").
	if err := c.waitNew(ctx, ids); err != nil {
		return res, fmt.Errorf("sim: seed %d: the cluster did not start: %w", opts.Seed, err)
	}
	if err := waitServing(ctx, clients[0]); err != nil {
		return res, fmt.Errorf("sim: seed %d: the cluster did not start: %w", opts.Seed, err)
	}
	expiring := newExpiryWorkload(clients[0], opts.Seed)
	if err := expiring.seed(ctx); err != nil {
		return res, fmt.Errorf("sim: seed %d: the cluster did not start: %w", opts.Seed, err)
	}

	// Each client sends opts.Requests requests while the faults go on,
	// then more (up to four times as many in all: a longer history can take
	// Porcupine too long) while the faults heal and a
	// migration under way converges and is promoted or abandoned.
	rec := &history.Recorder{}
	var work, reached sync.WaitGroup
	var more atomic.Bool
	more.Store(true)
	reached.Add(opts.Clients)
	for id := range opts.Clients {
		crng := rand.New(rand.NewPCG(opts.Seed, uint64(id)+1))
		wall := c.clocks.wall(clientIDs[id])
		work.Go(func() {
			counted := false
			defer func() {
				if !counted {
					reached.Done()
				}
			}()
			for seq := 0; seq < opts.Requests || more.Load() && seq < 4*opts.Requests; seq++ {
				if seq == opts.Requests {
					reached.Done()
					counted = true
				}
				o := history.Op{Client: id}
				stamped := crng.IntN(5) == 0
				if stamped {
					o.Key = stampedKeys[crng.IntN(len(stampedKeys))]
				} else {
					o.Key = hotKeys[crng.IntN(len(hotKeys))]
				}
				switch r := crng.IntN(10); {
				case r < 5:
					o.Kind = history.Read
				case r < 9:
					o.Kind, o.Value = history.Write, fmt.Sprintf("c%d-%d", id, seq)
				default:
					o.Kind = history.Delete
				}
				var ts int64
				if stamped && o.Kind != history.Read {
					// Its own clock, up to 2 ms off, so that clients
					// race and some writes lose.
					ts = wall().UnixMicro() + crng.Int64N(4000) - 2000
					o.ClientTimestamp = true
				}
				applyAt(ctx, clients[id], &o, ts)
				rec.Add(o)
				time.Sleep(time.Duration(crng.IntN(2000)) * time.Microsecond) // think time
			}
		})
	}
	work.Go(func() { expiring.run(ctx, more.Load) })
	defer work.Wait()
	defer more.Store(false)

	done := make(chan struct{})
	go func() {
		reached.Wait()
		close(done)
	}()
	var cut [][2]string
	var slowed []string // nodes whose disks are slow
	lostDisk := ""      // the node that lost its disk, once one has (one per run)
	var mig *migration  // the migration under way, if any
	migrated := false   // one migration per run
	// finish promotes the migration under way, or abandons it.
	finish := func(abandon bool) (string, error) {
		final, leaving, what := mig.to, mig.removed, "promote "+mig.String()
		if abandon {
			final, leaving, what = mig.from, mig.added, "abandon "+mig.String()
		}
		active = final
		if err := c.configure(ctx, rng, configYAML(final, nil)); err != nil {
			return "", err
		}
		if leaving != "" {
			ids = slices.DeleteFunc(ids, func(id string) bool { return id == leaving })
			if err := c.stop(ctx, leaving); err != nil {
				return "", err
			}
		}
		mig = nil
		return what, nil
	}
	for faulting := true; faulting; {
		select {
		case <-done:
			faulting = false
			continue
		case <-ctx.Done():
			<-done // the clients' requests fail at once with ctx
			return res, ctx.Err()
		case <-time.After(time.Duration(2+rng.IntN(10)) * time.Millisecond):
		}
		var fault string
		switch r := rng.IntN(18); {
		case r == 17 && mig == nil:
			// A change of settings: other quorums and another request
			// timeout for the active deployment, handed to the nodes
			// and clients one at a time like any configuration.
			next := resettle(rng, active)
			if err := c.configure(ctx, rng, configYAML(next, nil)); err != nil {
				return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
			}
			active = next
			fault = fmt.Sprintf("change the settings: write quorum %s, read quorum %s, request timeout %v", next.write, next.read, next.timeout)
		case r == 16:
			// A slow disk: the node's syncs, and so its acknowledged
			// writes, take 1-20 ms longer until healed.
			victim := ids[rng.IntN(len(ids))]
			d := time.Duration(1+rng.IntN(20)) * time.Millisecond
			c.disks[victim].Store(int64(d))
			slowed = append(slowed, victim)
			fault = fmt.Sprintf("slow the disk of %s by %v", victim, d)
		case r == 14:
			a, b := hosts[rng.IntN(len(hosts))], hosts[rng.IntN(len(hosts))]
			if a != b {
				network.CutOneWay(a, b)
				cut = append(cut, [2]string{a, b})
				fault = "cut " + a + " -> " + b + " one way"
			}
		case r == 15:
			a, b := hosts[rng.IntN(len(hosts))], hosts[rng.IntN(len(hosts))]
			if a != b {
				d := time.Duration(1+rng.IntN(30)) * time.Millisecond
				network.SetDelay(a, b, d)
				cut = append(cut, [2]string{a, b})
				fault = fmt.Sprintf("slow the link %s - %s by %v", a, b, d)
			}
		case r == 12 && mig == nil && !migrated:
			mig = newMigration(rng, active, spare)
			if mig == nil {
				break
			}
			migrated = true
			if err := c.configure(ctx, rng, configYAML(mig.from, &mig.to)); err != nil {
				return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
			}
			mig.epoch = c.epoch
			if mig.added != "" {
				ids = append(ids, mig.added)
				if err := c.start(ctx, mig.added, vfs.NewCrashableMem()); err != nil {
					return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
				}
			}
			fault = "start " + mig.String()
		case r == 13 && mig != nil:
			// Promote once every node finished a clean repair pass under
			// the migration (as the coordinator requires), or, a third
			// of the time, abandon it whatever its progress.
			abandon := rng.IntN(3) == 0
			if !abandon && !c.converged(ids, mig.epoch) {
				break
			}
			if fault, err = finish(abandon); err != nil {
				return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
			}
		case r < 2 && len(cut)+len(slowed) > 0:
			for _, l := range cut {
				network.Heal(l[0], l[1])
				network.SetDelay(l[0], l[1], 0)
			}
			for _, id := range slowed {
				c.disks[id].Store(0)
			}
			fault, cut, slowed = "heal every link and disk", nil, nil
		case r < 4:
			victim := ids[rng.IntN(len(ids))]
			for _, h := range hosts {
				if h != victim {
					network.Cut(victim, h)
					cut = append(cut, [2]string{victim, h})
				}
			}
			fault = "cut " + victim + " off"
		case r < 5:
			a, b := hosts[rng.IntN(len(hosts))], hosts[rng.IntN(len(hosts))]
			if a != b {
				network.Cut(a, b)
				cut = append(cut, [2]string{a, b})
				fault = "cut " + a + " from " + b
			}
		case r < 6:
			// A crash: the node stops at once and comes back on what
			// its file system had synced at that instant.
			if victim := ids[rng.IntN(len(ids))]; !c.down(victim) {
				if err := c.crash(ctx, victim); err != nil {
					return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
				}
				fault = "crash " + victim
			}
		case r < 7:
			// One lost disk per run: the node stops, and comes back
			// (at its restart) on an empty one, whatever else is down
			// or cut.
			if victim := ids[rng.IntN(len(ids))]; lostDisk == "" && !c.down(victim) {
				if err := c.crash(ctx, victim); err != nil {
					return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
				}
				c.loseDisk(victim)
				lostDisk, fault = victim, "lose the disk of "+victim
			}
		case r < 8:
			h := hosts[rng.IntN(len(hosts))]
			to := time.Duration(rng.Int64N(int64(2*maxClockOffset))) - maxClockOffset
			fault = fmt.Sprintf("clock of %s jumps by %v to %v", h, c.clocks.set(h, to), to)
		default:
			var down []string
			for _, id := range ids {
				if c.down(id) {
					down = append(down, id)
				}
			}
			if len(down) > 0 {
				victim := down[rng.IntN(len(down))]
				if err := c.restart(ctx, victim); err != nil {
					return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
				}
				fault = "restart " + victim
			}
		}
		if fault != "" {
			res.Faults = append(res.Faults, fault)
			tr.event(fault)
		}
	}
	for _, id := range ids {
		if c.down(id) {
			if err := c.restart(ctx, id); err != nil {
				return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
			}
		}
	}
	for _, l := range cut {
		network.Heal(l[0], l[1])
		network.SetDelay(l[0], l[1], 0)
	}
	for _, id := range slowed {
		c.disks[id].Store(0)
	}
	healed := time.Now()

	// With every fault healed, a migration under way converges (every
	// node finishes a clean repair pass under it) while the clients go
	// on, and is promoted, or a third of the time abandoned.
	if mig != nil {
		deadline := time.Now().Add(2 * opts.Patience)
		for !c.converged(ids, mig.epoch) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(repairInterval / 2)
		}
		if c.converged(ids, mig.epoch) {
			fault, err := finish(rng.IntN(3) == 0)
			if err != nil {
				return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
			}
			res.Faults = append(res.Faults, fault+" (faults healed)")
			tr.event(fault + " (faults healed)")
		} else {
			res.Unsettled = append(res.Unsettled, fmt.Sprintf("%s did not converge within %v of every fault healing", mig, 2*opts.Patience))
		}
	}
	more.Store(false)
	work.Wait()

	// Every key read once more, with every link healed: what was
	// acknowledged must be there.
	final := clients[len(clients)-1]
	keys := append(append([]string(nil), hotKeys...), stampedKeys...)
	finals := map[string]history.Op{}
	for i, key := range keys {
		o := history.Op{Client: opts.Clients + 1 + i, Kind: history.Read, Key: key, Final: true}
		// Retried until the cluster's patience runs out: a replica may
		// still be refilling a lost disk.
		for deadline := time.Now().Add(opts.Patience); ; time.Sleep(50 * time.Millisecond) {
			apply(ctx, final, &o)
			if o.Outcome != history.Failed || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		rec.Add(o)
		finals[key] = o
	}
	res.Ops = rec.Ops()
	res.Verdict = history.Check(res.Ops)
	failedWrites := map[string]bool{}
	for _, o := range res.Ops {
		if o.Kind != history.Read && o.Outcome == history.Failed {
			failedWrites[o.Key] = true
		}
	}
	res.Unsettled = append(res.Unsettled, settle(ctx, final, keys, finals, failedWrites, healed, opts.Patience)...)
	for _, problem := range expiring.check(ctx, final, opts.Patience) {
		res.Unsettled = append(res.Unsettled, "expiry: "+problem)
	}
	res.Expiring = expiring.String()
	if err := c.stopAll(); err != nil {
		return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
	}
	return res, nil
}

// settle waits, once every fault has healed, until the replicas of every
// key agree on the version that the key's final read returned (repair
// brings the laggards; a newer one only when a write of the key failed),
// and until garbage collection removed it from every replica when it is a
// tombstone. Each key has patience from
// when the faults healed, or from when its tombstone's grace ended
// (give or take the clocks' offsets), whichever is later. It returns what
// was still wrong then.
func settle(ctx context.Context, c *client.Client, keys []string, finals map[string]history.Op, failedWrites map[string]bool, healed time.Time, patience time.Duration) []string {
	wrong := make([]string, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		f := finals[key]
		if f.Outcome == history.Failed {
			wrong[i] = fmt.Sprintf("%s: the final read failed: %s", key, f.Note)
			continue
		}
		// A tombstone is collected once its grace has passed on the
		// clock of the replica that collects it, which may be behind by
		// maxClockOffset while the tombstone was stamped by a clock
		// ahead by as much.
		from := healed
		if f.Outcome == history.Absent && f.Timestamp != 0 {
			if due := time.UnixMicro(f.Timestamp).Add(tombstoneGrace + 2*maxClockOffset); due.After(from) {
				from = due
			}
		}
		by := from.Add(patience)
		wg.Go(func() {
			for {
				problem, tombstone := unsettled(ctx, c, key, f, failedWrites[key])
				if problem == "" {
					return
				}
				// A newer tombstone (a failed delete that took effect
				// later) has a grace of its own.
				if tombstone != 0 {
					if due := time.UnixMicro(tombstone).Add(tombstoneGrace + 2*maxClockOffset + patience); due.After(by) {
						by = due
					}
				}
				if time.Now().After(by) || ctx.Err() != nil {
					wrong[i] = key + ": " + problem
					return
				}
				time.Sleep(repairInterval)
			}
		})
	}
	wg.Wait()
	return slices.DeleteFunc(wrong, func(w string) bool { return w == "" })
}

// unsettled says what keeps key from having settled: a replica that did
// not answer, replicas that disagree, a version older than the one its
// final read f returned (or newer, or f's value gone, unless a write or
// delete of the key failed: a failed one may take effect later), or a
// tombstone not yet collected. Empty once settled. tombstone is the
// timestamp of the newest tombstone a replica holds, 0 when none.
func unsettled(ctx context.Context, c *client.Client, key string, f history.Op, failedWrites bool) (problem string, tombstone int64) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	p, err := c.Where(ctx, []byte(key))
	if err != nil {
		return "where: " + err.Error(), 0
	}
	var agreed *replicaState
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, r := range b.Replicas {
				if r.Err != nil {
					return fmt.Sprintf("%s did not answer: %v", r.NodeID, r.Err), tombstone
				}
				if r.Found && r.Deleted {
					tombstone = max(tombstone, r.Timestamp)
				}
				st := replicaState{Node: r.NodeID, Found: r.Found, Timestamp: r.Timestamp, Deleted: r.Deleted}
				if agreed == nil {
					agreed = &st
				} else if st.Found != agreed.Found || st.Timestamp != agreed.Timestamp || st.Deleted != agreed.Deleted {
					problem = fmt.Sprintf("replicas disagree: %s holds %v, %s holds %v", agreed.Node, *agreed, st.Node, st)
				}
			}
		}
	}
	if problem != "" {
		return problem, tombstone
	}
	switch {
	case agreed == nil:
		return "", 0
	case agreed.Found && agreed.Timestamp < f.Timestamp:
		return fmt.Sprintf("every replica holds %v, older than what the final read returned (%v at %d)", *agreed, f.Outcome, f.Timestamp), tombstone
	case agreed.Found && agreed.Timestamp > f.Timestamp && !failedWrites:
		return fmt.Sprintf("every replica holds %v, newer than what the final read returned (%v at %d), and no write of the key failed", *agreed, f.Outcome, f.Timestamp), tombstone
	case !agreed.Found && f.Outcome == history.OK && !failedWrites:
		return fmt.Sprintf("no replica holds the version %d that the final read returned, and no delete of the key failed", f.Timestamp), tombstone
	case agreed.Found && agreed.Deleted:
		return fmt.Sprintf("every replica still holds the tombstone %d past its grace", agreed.Timestamp), tombstone
	}
	return "", tombstone
}

// replicaState is what one replica holds of a key, as settle compares it.
type replicaState struct {
	Node      string
	Found     bool
	Timestamp int64
	Deleted   bool
	ExpiresAt int64
}

func (s replicaState) String() string {
	switch {
	case !s.Found:
		return "no record"
	case s.Deleted:
		return fmt.Sprintf("the tombstone %d", s.Timestamp)
	case s.ExpiresAt != 0:
		return fmt.Sprintf("the value %d expiring at %d", s.Timestamp, s.ExpiresAt)
	}
	return fmt.Sprintf("the value %d", s.Timestamp)
}

// cluster is the nodes of a run, each of which can crash and restart.
type cluster struct {
	// cfg and epoch are the configuration every node and client follows
	// (the coordinator's, had the run one): a node starts with them.
	cfg     *config.Config
	epoch   int64
	clients []*client.Client
	network *simnet.Network
	logger  *slog.Logger

	hosts  []string // every host of the network: nodes and clients
	clocks *clocks
	// disks are how much longer each node's syncs take (nanoseconds; a
	// fault sets them); the map is read-only.
	disks map[string]*atomic.Int64
	// repairSpacing is the nodes' node.Options.MinRepairSpacing; 0: a
	// node's own.
	repairSpacing time.Duration

	mu    sync.Mutex
	nodes map[string]*simNode
	errs  []error // of nodes that stopped with an error
}

// clocks is every host's clock: the true time plus an offset that a fault
// sets.
type clocks struct {
	offsets map[string]*atomic.Int64 // nanoseconds; the map is read-only
}

func newClocks(hosts []string) *clocks {
	k := &clocks{offsets: map[string]*atomic.Int64{}}
	for _, h := range hosts {
		k.offsets[h] = new(atomic.Int64)
	}
	return k
}

// wall returns host's clock.
func (k *clocks) wall(host string) func() time.Time {
	off := k.offsets[host]
	return func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
}

// set puts host's clock at offset from the true time, and returns by how
// much it jumped.
func (k *clocks) set(host string, offset time.Duration) time.Duration {
	return offset - time.Duration(k.offsets[host].Swap(int64(offset)))
}

// simNode is one node's process and disk.
type simNode struct {
	fs       *vfs.MemFS
	node     *node.Node
	registry *prometheus.Registry
	stop     context.CancelFunc // nil while the node is down
	done     chan struct{}      // closed when its Run returned
}

// start runs node id on fs, under the cluster's configuration.
func (c *cluster) start(ctx context.Context, id string, fs *vfs.MemFS) error {
	c.mu.Lock()
	cfg, epoch := c.cfg, c.epoch
	c.mu.Unlock()
	return c.startWith(ctx, id, fs, cfg, epoch)
}

// startWith runs node id on fs, starting from cfg at epoch (a node that
// was down while the configuration changed starts from the one it had).
func (c *cluster) startWith(ctx context.Context, id string, fs *vfs.MemFS, cfg *config.Config, epoch int64) error {
	registry := prometheus.NewRegistry()
	nd, err := node.New(node.Options{ID: id, Config: cfg, Epoch: epoch, DataDir: "/" + id, FS: slowDisk{FS: fs, delay: c.disks[id]},
		Logger: c.logger.With("node", id), Network: c.network.Host(id), Wall: c.clocks.wall(id),
		Registry: registry, MinRepairSpacing: c.repairSpacing})
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	sn := &simNode{fs: fs, node: nd, registry: registry, stop: stop, done: make(chan struct{})}
	c.mu.Lock()
	c.nodes[id] = sn
	c.mu.Unlock()
	go func() {
		defer close(sn.done)
		if err := nd.Run(runCtx); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("node %s: %w", id, err))
			c.mu.Unlock()
		}
	}()
	return nil
}

// down reports whether node id is crashed.
func (c *cluster) down(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].stop == nil
}

// crash cuts node id off, takes what its disk has synced, stops it, and
// keeps that copy of the disk for its restart: nothing it acknowledged
// (a node acknowledges a write once it is synced) is missing from the
// copy, and nothing it does after the copy is seen by anyone. A node
// already down stays down.
func (c *cluster) crash(ctx context.Context, id string) error {
	c.mu.Lock()
	sn := c.nodes[id]
	c.mu.Unlock()
	if sn.stop == nil {
		return nil
	}
	for _, h := range c.hosts {
		if h != id {
			c.network.Cut(id, h)
		}
	}
	return c.halt(ctx, id, sn, sn.fs.CrashClone(vfs.CrashCloneCfg{}))
}

// halt stops sn, node id's process, and keeps fs as its disk while it is
// down.
func (c *cluster) halt(ctx context.Context, id string, sn *simNode, fs *vfs.MemFS) error {
	sn.stop()
	select {
	case <-sn.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	c.nodes[id] = &simNode{fs: fs}
	c.mu.Unlock()
	return nil
}

// stop stops node id for good (a migration took it out), if it is up.
func (c *cluster) stop(ctx context.Context, id string) error {
	c.mu.Lock()
	sn := c.nodes[id]
	c.mu.Unlock()
	if sn.stop == nil {
		return nil
	}
	return c.halt(ctx, id, sn, sn.fs)
}

// configure makes yaml the configuration, under the next epoch, and hands
// it to the nodes that are up and to the clients one at a time, in an
// order the seed chooses, as a coordinator's watchers would: for a while
// some follow the new one and the others the old.
func (c *cluster) configure(ctx context.Context, rng *rand.Rand, yaml string) error {
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return fmt.Errorf("the configuration it chose: %w\n%s", err, yaml)
	}
	c.mu.Lock()
	c.cfg, c.epoch = cfg, c.epoch+1
	epoch := c.epoch
	var follow []func()
	for _, sn := range c.nodes {
		if sn.stop != nil {
			follow = append(follow, func() { sn.node.SetConfig(cfg, epoch) })
		}
	}
	c.mu.Unlock()
	for _, cl := range c.clients {
		follow = append(follow, func() { cl.SetConfigAt(cfg, epoch) })
	}
	rng.Shuffle(len(follow), func(i, j int) { follow[i], follow[j] = follow[j], follow[i] })
	for _, f := range follow {
		f()
		select {
		case <-time.After(time.Duration(rng.IntN(3)) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// converged reports whether every node of ids is up and has finished a
// clean repair pass with its peers under epoch or a later one: what the
// coordinator asks of a migration before it promotes it.
func (c *cluster) converged(ids []string, epoch int64) bool {
	for _, id := range ids {
		c.mu.Lock()
		sn := c.nodes[id]
		c.mu.Unlock()
		if sn.stop == nil || syncedEpoch(sn.registry) < epoch {
			return false
		}
	}
	return true
}

// syncedEpoch reads tako_repair_synced_epoch from a node's registry.
func syncedEpoch(r *prometheus.Registry) int64 {
	families, err := r.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() == "tako_repair_synced_epoch" && len(f.GetMetric()) == 1 {
			return int64(f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return -1
}

// loseDisk gives node id, which must be down, an empty disk to restart on.
func (c *cluster) loseDisk(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[id] = &simNode{fs: vfs.NewCrashableMem()}
}

// restart starts node id again on the disk its crash left, with its links
// healed.
func (c *cluster) restart(ctx context.Context, id string) error {
	c.mu.Lock()
	cfg, epoch := c.cfg, c.epoch
	c.mu.Unlock()
	return c.restartWith(ctx, id, cfg, epoch)
}

// restartWith starts node id again on the disk its crash or stop left,
// with its links healed, from cfg at epoch rather than the cluster's
// configuration (see follow).
func (c *cluster) restartWith(ctx context.Context, id string, cfg *config.Config, epoch int64) error {
	c.mu.Lock()
	fs := c.nodes[id].fs
	c.mu.Unlock()
	for _, h := range c.hosts {
		c.network.Heal(id, h)
	}
	return c.startWith(ctx, id, fs, cfg, epoch)
}

// follow hands node id, which is up, the cluster's configuration.
func (c *cluster) follow(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[id].node.SetConfig(c.cfg, c.epoch)
}

// stopAll stops every node and returns the errors of those that stopped
// with one.
func (c *cluster) stopAll() error {
	c.mu.Lock()
	nodes := make([]*simNode, 0, len(c.nodes))
	for _, sn := range c.nodes {
		nodes = append(nodes, sn)
	}
	c.mu.Unlock()
	for _, sn := range nodes {
		if sn.stop != nil {
			sn.stop()
			<-sn.done
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.errs...)
}

// tracer writes the trace of a run (Options.Trace): every message, as the
// frames written on each connection decode, and every fault.
type tracer struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
	// partial holds, per connection and direction, the bytes of a frame
	// not yet whole.
	partial map[traceStream][]byte
}

type traceStream struct {
	conn uint64
	from string
}

// newTracer returns a tracer writing to w; nil when w is.
func newTracer(w io.Writer) *tracer {
	if w == nil {
		return nil
	}
	return &tracer{w: w, start: time.Now(), partial: map[traceStream][]byte{}}
}

// message is the network's simnet.Tracer.
func (t *tracer) message(conn uint64, from, to string, p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at := ms(time.Since(t.start))
	k := traceStream{conn, from}
	buf := append(t.partial[k], p...)
	for {
		desc, n := wire.DescribeFrame(buf)
		if n == 0 {
			break
		}
		fmt.Fprintf(t.w, "%10.3f ms  %s -> %s  conn %d  %s\n", at, from, to, conn, desc)
		buf = buf[n:]
	}
	if len(buf) == 0 {
		delete(t.partial, k)
	} else {
		t.partial[k] = bytes.Clone(buf)
	}
}

// event writes a fault; a nil tracer writes nothing.
func (t *tracer) event(what string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%10.3f ms  fault: %s\n", ms(time.Since(t.start)), what)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// deployment is one layout of the simulated cluster: a bucket of one node
// per node, each key on perKey of them.
type deployment struct {
	name        string
	nodes       []string
	perKey      int
	w, r        int    // the quorums
	write, read string // the quorums, as the configuration writes them
	timeout     time.Duration
	noRepair    bool          // background_repair: no (scenarios only)
	grace       time.Duration // tombstone_grace; 0: tombstoneGrace (scenarios, whose clocks do not jump, use less)
}

// yaml writes d as a deployment of the configuration.
func (d deployment) yaml(b *strings.Builder) {
	fmt.Fprintf(b, "  %s:\n    request_timeout: %v\n", d.name, d.timeout)
	fmt.Fprintf(b, "    background_repair_interval: %v\n    tombstone_grace: %v\n", repairInterval, cmp.Or(d.grace, tombstoneGrace))
	if d.noRepair {
		b.WriteString("    background_repair: no\n")
	}
	fmt.Fprintf(b, "    write_quorum: %s\n    read_quorum: %s\n", d.write, d.read)
	fmt.Fprintf(b, "    hash: {buckets_per_key: %d}\n    buckets:\n", d.perKey)
	for _, id := range d.nodes {
		fmt.Fprintf(b, "      b%s: {%s: [%s, 1]}\n", id, id, id)
	}
}

// configYAML is the configuration of active, migrating to target when it
// is not nil.
func configYAML(active deployment, target *deployment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "active_deployment: %s\n", active.name)
	if target != nil {
		fmt.Fprintf(&b, "target_deployment: %s\n", target.name)
	}
	b.WriteString("deployments:\n")
	active.yaml(&b)
	if target != nil {
		target.yaml(&b)
	}
	return b.String()
}

// shape chooses the cluster: 3 to 5 buckets of one node each, each key on
// 2 or 3 of them, a write quorum of at least 2 and a read quorum that is a
// majority (each named or given as a number): the contract's linearizable
// register needs a majority read quorum (docs/contract-notes.md: with a
// smaller one, reads may go back after a write that failed half-way).
func shape(rng *rand.Rand) deployment {
	n := 3 + rng.IntN(3)
	d := deployment{name: "d1", perKey: 2 + rng.IntN(2), timeout: 200 * time.Millisecond}
	d.w = 2 + rng.IntN(d.perKey-1)
	majority := d.perKey/2 + 1
	d.r = majority + rng.IntN(d.perKey-majority+1)
	d.write, d.read = quorumName(rng, d.w, d.perKey), quorumName(rng, d.r, d.perKey)
	for i := 1; i <= n; i++ {
		d.nodes = append(d.nodes, fmt.Sprintf("n%d", i))
	}
	return d
}

// resettle returns d with other settings: quorums that still meet d's
// both ways (while some nodes and clients follow d and others the new
// settings, a read under either meets a write under either), a write
// quorum of at least 2 and a majority read quorum as in shape, and a
// request timeout of 150 to 300 ms.
func resettle(rng *rand.Rand, d deployment) deployment {
	next := d
	var choices [][2]int
	for w := 2; w <= d.perKey; w++ {
		for r := d.perKey/2 + 1; r <= d.perKey; r++ {
			if r+d.w > d.perKey && d.r+w > d.perKey && r+w > d.perKey {
				choices = append(choices, [2]int{w, r})
			}
		}
	}
	c := choices[rng.IntN(len(choices))] // d's own quorums are always a choice
	next.w, next.r = c[0], c[1]
	next.write, next.read = quorumName(rng, next.w, d.perKey), quorumName(rng, next.r, d.perKey)
	next.timeout = time.Duration(150+50*rng.IntN(4)) * time.Millisecond
	return next
}

// quorumName writes q of a key's n replicas as the configuration may: by
// its name when it has one, half the time, else as a number.
func quorumName(rng *rand.Rand, q, n int) string {
	if rng.IntN(2) == 0 {
		switch {
		case q == 1:
			return "one"
		case q == n:
			return "all"
		case q == n/2+1:
			return "quorum"
		}
	}
	return strconv.Itoa(q)
}

// migration is a change of deployment: one node added or one removed.
type migration struct {
	from, to       deployment
	added, removed string // the node it adds or removes
	epoch          int64  // of the configuration that started it
}

// newMigration chooses a migration from d: add spare as a bucket of its
// own, or remove one node when enough stay for each key's replicas (and
// at least 3); nil when it chose to remove one and none can go.
func newMigration(rng *rand.Rand, d deployment, spare string) *migration {
	m := &migration{from: d, to: d}
	m.to.name = "d2"
	if rng.IntN(2) == 0 {
		m.added = spare
		m.to.nodes = append(slices.Clone(d.nodes), spare)
		return m
	}
	if len(d.nodes)-1 < max(3, d.perKey) {
		return nil
	}
	m.removed = d.nodes[rng.IntN(len(d.nodes))]
	m.to.nodes = slices.DeleteFunc(slices.Clone(d.nodes), func(id string) bool { return id == m.removed })
	return m
}

func (m *migration) String() string {
	if m.added != "" {
		return "the migration adding " + m.added
	}
	return "the migration removing " + m.removed
}

// clientHosts names the clients' hosts on the network.
func clientHosts(n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("client%d", i)
	}
	return hosts
}

// waitNew waits until no node of ids recovers: each judged its new store
// new.
func (c *cluster) waitNew(ctx context.Context, ids []string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		recovering := ""
		c.mu.Lock()
		for _, id := range ids {
			if c.nodes[id].node.Recovering() {
				recovering = id
			}
		}
		c.mu.Unlock()
		switch {
		case recovering == "":
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("node %s still recovers after 10 s", recovering)
		case ctx.Err() != nil:
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitServing waits until a write succeeds: every node is up and serving.
func waitServing(ctx context.Context, c *client.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Put(cctx, []byte("sim-start"), []byte("up"))
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Apply sends o (its Kind, Key and Value) through c, bounded by ctx, and
// records in o when it started and ended, its outcome, the timestamp the
// cluster reported and, when it failed, why (Note): one operation of a
// history (internal/history) done by the Go client.
func Apply(ctx context.Context, c *client.Client, o *history.Op) { ApplyAt(ctx, c, o, 0) }

// ApplyAt is Apply with the timestamp ts for a write or delete (PutAt,
// DeleteAt); 0 lets the cluster stamp it.
func ApplyAt(ctx context.Context, c *client.Client, o *history.Op, ts int64) {
	var (
		res client.WriteResult
		ver client.Version
		err error
	)
	o.Start = time.Now()
	switch k := o.Kind; {
	case k == history.Read:
		ver, err = c.Get(ctx, []byte(o.Key))
	case k == history.Write && ts != 0:
		res, err = c.PutAt(ctx, []byte(o.Key), []byte(o.Value), ts)
	case k == history.Write:
		res, err = c.Put(ctx, []byte(o.Key), []byte(o.Value))
	case k == history.Delete && ts != 0:
		res, err = c.DeleteAt(ctx, []byte(o.Key), ts)
	case k == history.Delete:
		res, err = c.Delete(ctx, []byte(o.Key))
	}
	o.End = time.Now()
	switch {
	case o.Kind == history.Read && err == nil:
		o.Outcome, o.Value, o.Timestamp = history.OK, string(ver.Value), ver.Timestamp
	case o.Kind == history.Read && errors.Is(err, client.ErrNotFound):
		o.Outcome, o.Timestamp = history.Absent, ver.Timestamp
	case o.Kind != history.Read && errors.Is(err, record.ErrNothingWritten):
		o.Outcome, o.Note = history.Refused, err.Error()
	case err != nil:
		o.Outcome, o.Note = history.Failed, err.Error()
	case res.Superseded:
		o.Outcome, o.Timestamp = history.LostRace, res.Timestamp
	default:
		o.Outcome, o.Timestamp = history.OK, res.Timestamp
	}
}

// apply is Apply bounded by 2 s: ten request timeouts of the simulated
// cluster.
func apply(ctx context.Context, c *client.Client, o *history.Op) { applyAt(ctx, c, o, 0) }

// applyAt is ApplyAt bounded by 2 s.
func applyAt(ctx context.Context, c *client.Client, o *history.Op, ts int64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ApplyAt(ctx, c, o, ts)
}
