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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/history"
	"github.com/takodb/tako/internal/node"
	"github.com/takodb/tako/internal/simnet"
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
}

// Run builds the cluster of opts.Seed, runs its requests and faults, heals
// every fault, reads every key once more, and checks the history. It fails
// when the cluster cannot be built or ctx ends; a history with anomalies
// is a Result whose Verdict is not OK.
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
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7a6b0))
	var res Result
	ids, yaml := shape(rng)
	res.Config = yaml
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return res, fmt.Errorf("sim: seed %d: the configuration it chose: %w", opts.Seed, err)
	}

	network := simnet.New()
	c := &cluster{cfg: cfg, network: network, logger: opts.Logger, nodes: map[string]*simNode{}}
	defer c.stopAll()
	for _, id := range ids {
		if err := c.start(ctx, id, vfs.NewCrashableMem()); err != nil {
			return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
		}
	}

	keys := []string{"hot0", "hot1", "hot2"}
	clients := make([]*client.Client, opts.Clients+1) // the last one makes the final reads
	for i := range clients {
		clients[i] = client.New(cfg, client.Options{Dial: network.Host(fmt.Sprintf("client%d", i)).Dial})
		defer clients[i].Close()
	}
	if err := waitServing(ctx, clients[0]); err != nil {
		return res, fmt.Errorf("sim: seed %d: the cluster did not start: %w", opts.Seed, err)
	}

	rec := &history.Recorder{}
	var work sync.WaitGroup
	for id := range opts.Clients {
		crng := rand.New(rand.NewPCG(opts.Seed, uint64(id)+1))
		work.Go(func() {
			for seq := range opts.Requests {
				o := history.Op{Client: id, Key: keys[crng.IntN(len(keys))]}
				switch r := crng.IntN(10); {
				case r < 5:
					o.Kind = history.Read
				case r < 9:
					o.Kind, o.Value = history.Write, fmt.Sprintf("c%d-%d", id, seq)
				default:
					o.Kind = history.Delete
				}
				apply(ctx, clients[id], &o)
				rec.Add(o)
				time.Sleep(time.Duration(crng.IntN(2000)) * time.Microsecond) // think time
			}
		})
	}

	// Faults while the clients run: a node cut off from every other host,
	// or the links of a random pair, then healed.
	done := make(chan struct{})
	go func() {
		work.Wait()
		close(done)
	}()
	hosts := append(append([]string(nil), ids...), clientHosts(len(clients))...)
	c.hosts = hosts
	var cut [][2]string
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
		switch r := rng.IntN(8); {
		case r < 2 && len(cut) > 0:
			for _, l := range cut {
				network.Heal(l[0], l[1])
			}
			res.Faults = append(res.Faults, "heal every link")
			cut = nil
		case r < 4:
			victim := ids[rng.IntN(len(ids))]
			for _, h := range hosts {
				if h != victim {
					network.Cut(victim, h)
					cut = append(cut, [2]string{victim, h})
				}
			}
			res.Faults = append(res.Faults, "cut "+victim+" off")
		case r < 5:
			a, b := hosts[rng.IntN(len(hosts))], hosts[rng.IntN(len(hosts))]
			if a != b {
				network.Cut(a, b)
				cut = append(cut, [2]string{a, b})
				res.Faults = append(res.Faults, "cut "+a+" from "+b)
			}
		case r < 6:
			// A crash: the node stops at once and comes back on what
			// its file system had synced at that instant.
			victim := ids[rng.IntN(len(ids))]
			if !c.down(victim) {
				if err := c.crash(ctx, victim); err != nil {
					return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
				}
				res.Faults = append(res.Faults, "crash "+victim)
			}
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
				res.Faults = append(res.Faults, "restart "+victim)
			}
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
	}

	// Every key read once more, with every link healed: what was
	// acknowledged must be there.
	final := clients[len(clients)-1]
	for i, key := range keys {
		o := history.Op{Client: opts.Clients + 1 + i, Kind: history.Read, Key: key, Final: true}
		for attempt := 0; attempt < 20; attempt++ {
			apply(ctx, final, &o)
			if o.Outcome != history.Failed {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		rec.Add(o)
	}
	res.Ops = rec.Ops()
	res.Verdict = history.Check(res.Ops)
	if err := c.stopAll(); err != nil {
		return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, err)
	}
	return res, nil
}

// cluster is the nodes of a run, each of which can crash and restart.
type cluster struct {
	cfg     *config.Config
	network *simnet.Network
	logger  *slog.Logger

	mu    sync.Mutex
	nodes map[string]*simNode
	errs  []error  // of nodes that stopped with an error
	hosts []string // every host of the network, set once the clients are
}

// simNode is one node's process and disk.
type simNode struct {
	fs   *vfs.MemFS
	stop context.CancelFunc // nil while the node is down
	done chan struct{}      // closed when its Run returned
}

// start runs node id on fs.
func (c *cluster) start(ctx context.Context, id string, fs *vfs.MemFS) error {
	nd, err := node.New(node.Options{ID: id, Config: c.cfg, DataDir: "/" + id, FS: fs,
		Logger: c.logger.With("node", id), Network: c.network.Host(id)})
	if err != nil {
		return fmt.Errorf("node %s: %w", id, err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	sn := &simNode{fs: fs, stop: stop, done: make(chan struct{})}
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
	synced := sn.fs.CrashClone(vfs.CrashCloneCfg{})
	sn.stop()
	select {
	case <-sn.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	c.nodes[id] = &simNode{fs: synced}
	c.mu.Unlock()
	return nil
}

// restart starts node id again on the disk its crash left, with its links
// healed.
func (c *cluster) restart(ctx context.Context, id string) error {
	c.mu.Lock()
	fs := c.nodes[id].fs
	c.mu.Unlock()
	for _, h := range c.hosts {
		c.network.Heal(id, h)
	}
	return c.start(ctx, id, fs)
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

// shape chooses the cluster: 3 to 5 buckets of one node each, each key on
// 2 or 3 of them, default quorums, short timeouts and repair intervals.
func shape(rng *rand.Rand) (ids []string, yaml string) {
	n := 3 + rng.IntN(3)
	perKey := 2 + rng.IntN(2)
	var b strings.Builder
	fmt.Fprintf(&b, "active_deployment: sim\ndeployments:\n  sim:\n    request_timeout: 200ms\n    hash: {buckets_per_key: %d}\n    buckets:\n", perKey)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		ids = append(ids, id)
		fmt.Fprintf(&b, "      b%d: {%s: [%s, 1]}\n", i, id, id)
	}
	return ids, b.String()
}

// clientHosts names the clients' hosts on the network.
func clientHosts(n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("client%d", i)
	}
	return hosts
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
func Apply(ctx context.Context, c *client.Client, o *history.Op) {
	var (
		res client.WriteResult
		ver client.Version
		err error
	)
	o.Start = time.Now()
	switch o.Kind {
	case history.Read:
		ver, err = c.Get(ctx, []byte(o.Key))
	case history.Write:
		res, err = c.Put(ctx, []byte(o.Key), []byte(o.Value))
	case history.Delete:
		res, err = c.Delete(ctx, []byte(o.Key))
	}
	o.End = time.Now()
	switch {
	case o.Kind == history.Read && err == nil:
		o.Outcome, o.Value, o.Timestamp = history.OK, string(ver.Value), ver.Timestamp
	case o.Kind == history.Read && errors.Is(err, client.ErrNotFound):
		o.Outcome, o.Timestamp = history.Absent, ver.Timestamp
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
func apply(ctx context.Context, c *client.Client, o *history.Op) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	Apply(ctx, c, o)
}
