package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/simnet"
)

// A Scenario is a scripted story told to a simulated cluster: the nodes of
// Run (real nodes on in-memory Pebble, over the in-memory network), the
// steps a test takes (write, stop a node, change the configuration, wait
// for repair passes) and checks of what each node holds. Scenarios replace
// node tests that waited on the wall clock: their nodes run repair passes
// repairInterval apart (a node's own floor is a second), and under the
// deterministic host (scripts/sim-replay.sh scenarios) their waits take no
// real time and a run is the same every time.
type Scenario struct {
	// Name is how the guest and the tests name it.
	Name string
	// Run tells the story on a lab and returns what went wrong; nil when
	// everything held.
	Run func(ctx context.Context, l *Lab) error
}

// Scenarios are every scenario, in a fixed order.
func Scenarios() []Scenario {
	return []Scenario{
		{"a-tombstone-waits-for-a-replica-that-is-down", tombstoneWaitsForADownReplica},
		{"a-tombstone-waits-for-a-node-that-is-not-a-replica", tombstoneWaitsForANonReplica},
		{"collection-hands-off-then-drops", collectionHandsOffThenDrops},
		{"an-expired-value-waits-for-a-replica-that-is-down", expiredValueWaitsForADownReplica},
	}
}

// RunScenario runs the scenario called name on a lab of its own, with the
// nodes' logs going to logger (nil discards them).
func RunScenario(ctx context.Context, name string, logger *slog.Logger) error {
	i := slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == name })
	if i < 0 {
		return fmt.Errorf("sim: no scenario %q", name)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Lab{logger: logger, rng: rand.New(rand.NewPCG(uint64(i), 0x5ce4a))}
	defer l.close()
	if err := Scenarios()[i].Run(ctx, l); err != nil {
		return fmt.Errorf("scenario %s: %w", name, err)
	}
	return nil
}

// Lab is the cluster a scenario runs on, with a client that follows its
// configuration, and the means to look at what each node holds.
type Lab struct {
	logger *slog.Logger
	rng    *rand.Rand // the order in which nodes and clients follow a configuration
	c      *cluster
	d      deployment // the configuration's one deployment
	client *client.Client
	nodes  []string // every node started, in or out of d
}

// deploy starts the nodes of d, each on a new disk, and waits until every
// one of them judged its store new and a write succeeds. Nodes started
// before and not in d keep running.
func (l *Lab) deploy(ctx context.Context, d deployment) error {
	if l.c == nil {
		cfg, err := config.Parse([]byte(configYAML(d, nil)))
		if err != nil {
			return fmt.Errorf("the lab's configuration: %w", err)
		}
		// Hosts for every node a scenario may add (n1 to n9) and one
		// client.
		var hosts []string
		for i := 1; i <= 9; i++ {
			hosts = append(hosts, fmt.Sprintf("n%d", i))
		}
		hosts = append(hosts, "client0")
		l.c = &cluster{cfg: cfg, network: simnet.New(), logger: l.logger, nodes: map[string]*simNode{},
			hosts: hosts, clocks: newClocks(hosts), disks: map[string]*atomic.Int64{}, repairSpacing: repairInterval}
		for _, h := range hosts {
			l.c.disks[h] = new(atomic.Int64)
		}
		l.client = client.New(cfg, client.Options{Dial: l.c.network.Host("client0").Dial})
		l.c.clients = []*client.Client{l.client}
	} else if err := l.c.configure(ctx, l.rng, configYAML(d, nil)); err != nil {
		return err
	}
	l.d = d
	var started []string
	for _, id := range d.nodes {
		if !slices.Contains(l.nodes, id) {
			if err := l.c.start(ctx, id, vfs.NewCrashableMem()); err != nil {
				return err
			}
			l.nodes = append(l.nodes, id)
			started = append(started, id)
		}
	}
	if len(started) == len(d.nodes) {
		if err := l.c.waitNew(ctx, started); err != nil {
			return err
		}
	}
	return waitServing(ctx, l.client)
}

func (l *Lab) close() {
	if l.client != nil {
		l.client.Close()
	}
	if l.c != nil {
		if err := l.c.stopAll(); err != nil {
			l.logger.Error("sim: a node of the lab stopped with an error", "err", err)
		}
	}
}

// put writes key through the lab's client.
func (l *Lab) put(ctx context.Context, key, value string) error {
	if _, err := l.client.Put(ctx, []byte(key), []byte(value)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// delete deletes key through the lab's client.
func (l *Lab) delete(ctx context.Context, key string) error {
	if _, err := l.client.Delete(ctx, []byte(key)); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// readAbsent checks that a read of key finds no value.
func (l *Lab) readAbsent(ctx context.Context, key string) error {
	v, err := l.client.Get(ctx, []byte(key))
	switch {
	case errors.Is(err, client.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", key, err)
	}
	return fmt.Errorf("the deleted key %s came back: the value %q at %d", key, v.Value, v.Timestamp)
}

// replicas are the nodes that hold key under the lab's configuration.
func (l *Lab) replicas(key string) []string {
	var ids []string
	for _, nd := range l.c.cfg.Replicas(nil, []byte(key)) {
		ids = append(ids, nd.ID)
	}
	return ids
}

// holds asks every node that is up what it holds of key, replica or not:
// through a client of its own whose configuration makes every node a
// replica of every key, so that its Where asks them all.
func (l *Lab) holds(ctx context.Context, key string) (map[string]replicaState, error) {
	var up []string
	for _, id := range l.nodes {
		if !l.c.down(id) {
			up = append(up, id)
		}
	}
	probe := deployment{name: "probe", nodes: up, perKey: len(up), write: "all", read: "all", timeout: time.Second}
	cfg, err := config.Parse([]byte(configYAML(probe, nil)))
	if err != nil {
		return nil, fmt.Errorf("the probe's configuration: %w", err)
	}
	c := client.New(cfg, client.Options{Dial: l.c.network.Host("client0").Dial})
	defer c.Close()
	p, err := c.Where(ctx, []byte(key))
	if err != nil {
		return nil, fmt.Errorf("where %s: %w", key, err)
	}
	held := map[string]replicaState{}
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, r := range b.Replicas {
				if r.Err != nil {
					return nil, fmt.Errorf("where %s: %s did not answer: %w", key, r.NodeID, r.Err)
				}
				held[r.NodeID] = replicaState{Node: r.NodeID, Found: r.Found, Timestamp: r.Timestamp, Deleted: r.Deleted, ExpiresAt: r.ExpiresAt}
			}
		}
	}
	return held, nil
}

// noValue checks that none of ids holds a value of key (a tombstone or
// nothing will do).
func (l *Lab) noValue(ctx context.Context, key string, ids ...string) error {
	held, err := l.holds(ctx, key)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if s := held[id]; s.Found && !s.Deleted {
			return fmt.Errorf("the deleted key %s is back on %s: %v", key, id, s)
		}
	}
	return nil
}

// stop stops node id cleanly; it keeps its disk for restart.
func (l *Lab) stop(ctx context.Context, id string) error { return l.c.stop(ctx, id) }

// restart starts node id again on its disk, under the lab's configuration.
func (l *Lab) restart(ctx context.Context, id string) error { return l.c.restart(ctx, id) }

// passes waits for n repair intervals: n passes of every node that is up.
func (l *Lab) passes(ctx context.Context, n int) error {
	select {
	case <-time.After(time.Duration(n) * repairInterval):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor waits until cond holds, checking every repair interval, for at
// most patience; its error says what did not happen and what cond last
// said.
func (l *Lab) waitFor(ctx context.Context, what string, patience time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(patience)
	for {
		ok, why := cond()
		switch {
		case ok:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%s: not within %v: %s", what, patience, why)
		}
		if err := l.passes(ctx, 1); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}

// labGrace is the tombstone grace of a lab's deployments: short, since a
// lab's clocks do not jump.
const labGrace = 150 * time.Millisecond

// threeNodes is a lab's first deployment: n1, n2, n3 in buckets of their
// own, each key on perKey, quorums of a majority.
func threeNodes(perKey int) deployment {
	return deployment{name: "d1", nodes: []string{"n1", "n2", "n3"}, perKey: perKey,
		write: "quorum", read: "quorum", timeout: 200 * time.Millisecond, grace: labGrace}
}

// holdsTombstone checks that each of ids holds a tombstone of key.
func (l *Lab) holdsTombstone(ctx context.Context, key string, ids ...string) error {
	held, err := l.holds(ctx, key)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if s := held[id]; !s.Found || !s.Deleted {
			return fmt.Errorf("%s holds %v of %s, want its tombstone", id, s, key)
		}
	}
	return nil
}

// heldEverywhere waits until n1, n2 and n3 each hold a record of key.
func (l *Lab) heldEverywhere(ctx context.Context, key string) error {
	return l.waitFor(ctx, "a record of "+key+" on n1, n2 and n3", 5*time.Second, func() (bool, string) {
		held, err := l.holds(ctx, key)
		if err != nil {
			return false, err.Error()
		}
		return held["n1"].Found && held["n2"].Found && held["n3"].Found, fmt.Sprint(held)
	})
}

// goneEverywhere waits until no node that is up holds any record of key.
func (l *Lab) goneEverywhere(ctx context.Context, key string) error {
	return l.waitFor(ctx, "the key "+key+" gone from every node", 5*time.Second, func() (bool, string) {
		held, err := l.holds(ctx, key)
		if err != nil {
			return false, err.Error()
		}
		var still []string
		for id, s := range held {
			if s.Found {
				still = append(still, fmt.Sprintf("%s holds %v", id, s))
			}
		}
		slices.Sort(still)
		return len(still) == 0, strings.Join(still, ", ")
	})
}

// tombstoneWaitsForADownReplica: a tombstone stays past its grace while a
// replica that holds the old value is down (dropped, the replica's value
// would come back through repair), and is dropped everywhere once that
// replica is back and holds it.
func tombstoneWaitsForADownReplica(ctx context.Context, l *Lab) error {
	if err := l.deploy(ctx, threeNodes(3)); err != nil {
		return err
	}
	const key = "k"
	if err := l.put(ctx, key, "v"); err != nil {
		return err
	}
	if err := l.heldEverywhere(ctx, key); err != nil {
		return err
	}
	if err := l.stop(ctx, "n3"); err != nil { // n3 keeps the value
		return err
	}
	if err := l.delete(ctx, key); err != nil {
		return err
	}
	// Well past the grace, many passes.
	if err := l.passes(ctx, int(labGrace/repairInterval)+10); err != nil {
		return err
	}
	if err := l.holdsTombstone(ctx, key, "n1", "n2"); err != nil {
		return fmt.Errorf("while n3 (with the old value) was down: %w", err)
	}
	if err := l.restart(ctx, "n3"); err != nil {
		return err
	}
	if err := l.goneEverywhere(ctx, key); err != nil {
		return err
	}
	return l.readAbsent(ctx, key)
}

// expiredValueWaitsForADownReplica: a value that expired is the newest
// version of its key, and garbage collection drops it as it drops a
// tombstone: past the grace, and only once every node holds it. While a
// replica that holds an older, permanent value is down, the expired value
// stays (dropped, the older value would come back through repair); once
// that replica is back, the expired value reaches it and is dropped
// everywhere, and the key stays absent (Riak's expiry brought such
// values back: riak_kv issue 1649).
func expiredValueWaitsForADownReplica(ctx context.Context, l *Lab) error {
	if err := l.deploy(ctx, threeNodes(3)); err != nil {
		return err
	}
	const key = "k"
	if err := l.put(ctx, key, "permanent"); err != nil {
		return err
	}
	if err := l.heldEverywhere(ctx, key); err != nil {
		return err
	}
	if err := l.stop(ctx, "n3"); err != nil { // n3 keeps the permanent value
		return err
	}
	const ttl = 50 * time.Millisecond
	if _, err := l.client.PutExpiring(ctx, []byte(key), []byte("expires"), 0, l.client.Now()+ttl.Microseconds()); err != nil {
		return fmt.Errorf("put %s with a TTL: %w", key, err)
	}
	// Well past the expiry and the grace, many passes.
	if err := l.passes(ctx, int((ttl+labGrace)/repairInterval)+10); err != nil {
		return err
	}
	if err := l.readAbsent(ctx, key); err != nil {
		return fmt.Errorf("after the expiry: %w", err)
	}
	held, err := l.holds(ctx, key)
	if err != nil {
		return err
	}
	for _, id := range []string{"n1", "n2"} {
		if s := held[id]; !s.Found || s.Deleted || s.ExpiresAt == 0 {
			return fmt.Errorf("while n3 (with the permanent value) was down, %s holds %v of %s, want the expired value", id, s, key)
		}
	}
	if err := l.restart(ctx, "n3"); err != nil {
		return err
	}
	if err := l.goneEverywhere(ctx, key); err != nil {
		return err
	}
	return l.readAbsent(ctx, key)
}

// tombstoneWaitsForANonReplica: a node that is no longer a replica of a key
// after a configuration change, but still holds an older value of it,
// hands that value to the replicas that lack it. Had the replicas dropped
// the key's tombstone without asking that node (down meanwhile), its
// hand-off would bring the deleted key back (found by the simulator). A
// tombstone waits for every node of the cluster.
func tombstoneWaitsForANonReplica(ctx context.Context, l *Lab) error {
	if err := l.deploy(ctx, threeNodes(3)); err != nil {
		return err
	}
	// A key that n3 holds now but is not a replica of once each key is on
	// two nodes.
	two := threeNodes(2)
	twoCfg, err := config.Parse([]byte(configYAML(two, nil)))
	if err != nil {
		return err
	}
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("k%d", i)
		if !slices.ContainsFunc(twoCfg.Replicas(nil, []byte(k)), func(nd config.Node) bool { return nd.ID == "n3" }) {
			key = k
		}
	}
	if err := l.put(ctx, key, "old"); err != nil {
		return err
	}
	if err := l.heldEverywhere(ctx, key); err != nil {
		return err
	}
	// n3 goes down before its collection hands the value over or drops
	// it, and the key moves off it.
	if err := l.stop(ctx, "n3"); err != nil {
		return err
	}
	if err := l.deploy(ctx, two); err != nil {
		return err
	}
	if err := l.delete(ctx, key); err != nil {
		return err
	}
	if err := l.passes(ctx, int(labGrace/repairInterval)+10); err != nil {
		return err
	}
	if err := l.holdsTombstone(ctx, key, "n1", "n2"); err != nil {
		return fmt.Errorf("while n3 (with an older value, not a replica) was down: %w", err)
	}
	// n3 comes back, but slow to run its own repair and collection (here:
	// switched off in its configuration for a while), so that the
	// replicas' passes with it are clean again before its collection
	// runs. Had they dropped the tombstone now without n3 holding it,
	// n3's collection would then hand them the old value back.
	slow := two
	slow.noRepair = true
	slowCfg, err := config.Parse([]byte(configYAML(slow, nil)))
	if err != nil {
		return err
	}
	if err := l.c.restartWith(ctx, "n3", slowCfg, l.c.epoch); err != nil {
		return err
	}
	if err := l.passes(ctx, 20); err != nil {
		return err
	}
	if err := l.noValue(ctx, key, "n1", "n2"); err != nil {
		return err
	}
	l.c.follow("n3")
	if err := l.goneEverywhere(ctx, key); err != nil {
		return err
	}
	// Many more passes: nothing hands the value back.
	if err := l.passes(ctx, 20); err != nil {
		return err
	}
	if err := l.noValue(ctx, key, l.nodes...); err != nil {
		return err
	}
	return l.readAbsent(ctx, key)
}

// collectionHandsOffThenDrops grows a cluster from two buckets to three
// without a migration: the old nodes first hand the keys they no longer
// replicate to the new node, and drop them only once it holds them. In
// the end every key is on exactly its one replica.
func collectionHandsOffThenDrops(ctx context.Context, l *Lab) error {
	d := deployment{name: "d1", nodes: []string{"n1", "n2"}, perKey: 1, write: "all", read: "all", timeout: 200 * time.Millisecond, grace: labGrace}
	if err := l.deploy(ctx, d); err != nil {
		return err
	}
	const keys = 200
	for i := range keys {
		if err := l.put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			return err
		}
	}
	// Then n3 joins: it takes a share, from n1 and n2.
	d.nodes = append(d.nodes, "n3")
	if err := l.deploy(ctx, d); err != nil {
		return err
	}
	return l.waitFor(ctx, "every key on exactly its one replica", 10*time.Second, func() (bool, string) {
		for i := range keys {
			k := fmt.Sprintf("k%d", i)
			owner := l.replicas(k)[0]
			held, err := l.holds(ctx, k)
			if err != nil {
				return false, err.Error()
			}
			for id, s := range held {
				if s.Found != (id == owner) || s.Deleted {
					return false, fmt.Sprintf("%s (on %s) held by %s: %v", k, owner, id, s)
				}
			}
		}
		return true, ""
	})
}
