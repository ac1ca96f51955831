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
	runCtx, stop := context.WithCancel(ctx)
	var nodes sync.WaitGroup
	var nodeErrs []error
	var errMu sync.Mutex
	defer func() {
		stop()
		nodes.Wait()
	}()
	for _, id := range ids {
		nd, err := node.New(node.Options{ID: id, Config: cfg, DataDir: "/" + id, FS: vfs.NewMem(), NoSync: true,
			Logger: opts.Logger.With("node", id), Network: network.Host(id)})
		if err != nil {
			return res, fmt.Errorf("sim: seed %d: node %s: %w", opts.Seed, id, err)
		}
		nodes.Go(func() {
			if err := nd.Run(runCtx); err != nil {
				errMu.Lock()
				nodeErrs = append(nodeErrs, fmt.Errorf("node %s: %w", id, err))
				errMu.Unlock()
			}
		})
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
	for c := range opts.Clients {
		crng := rand.New(rand.NewPCG(opts.Seed, uint64(c)+1))
		work.Go(func() {
			for seq := range opts.Requests {
				o := history.Op{Client: c, Key: keys[crng.IntN(len(keys))]}
				switch r := crng.IntN(10); {
				case r < 5:
					o.Kind = history.Read
				case r < 9:
					o.Kind, o.Value = history.Write, fmt.Sprintf("c%d-%d", c, seq)
				default:
					o.Kind = history.Delete
				}
				do(ctx, clients[c], &o)
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
	var cut [][2]string
	for faulting := true; faulting; {
		select {
		case <-done:
			faulting = false
			continue
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Duration(2+rng.IntN(10)) * time.Millisecond):
		}
		switch {
		case len(cut) > 0 && rng.IntN(2) == 0:
			for _, l := range cut {
				network.Heal(l[0], l[1])
			}
			res.Faults = append(res.Faults, "heal every link")
			cut = nil
		case rng.IntN(2) == 0:
			victim := ids[rng.IntN(len(ids))]
			for _, h := range hosts {
				if h != victim {
					network.Cut(victim, h)
					cut = append(cut, [2]string{victim, h})
				}
			}
			res.Faults = append(res.Faults, "cut "+victim+" off")
		default:
			a, b := hosts[rng.IntN(len(hosts))], hosts[rng.IntN(len(hosts))]
			if a != b {
				network.Cut(a, b)
				cut = append(cut, [2]string{a, b})
				res.Faults = append(res.Faults, "cut "+a+" from "+b)
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
			do(ctx, final, &o)
			if o.Outcome != history.Failed {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		rec.Add(o)
	}
	res.Ops = rec.Ops()
	res.Verdict = history.Check(res.Ops)
	stop()
	nodes.Wait()
	errMu.Lock()
	defer errMu.Unlock()
	if len(nodeErrs) > 0 {
		return res, fmt.Errorf("sim: seed %d: %w", opts.Seed, errors.Join(nodeErrs...))
	}
	return res, nil
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

// do sends o through c and records its outcome in o.
func do(ctx context.Context, c *client.Client, o *history.Op) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var (
		res client.WriteResult
		ver client.Version
		err error
	)
	o.Start = time.Now()
	switch o.Kind {
	case history.Read:
		ver, err = c.Get(cctx, []byte(o.Key))
	case history.Write:
		res, err = c.Put(cctx, []byte(o.Key), []byte(o.Value))
	case history.Delete:
		res, err = c.Delete(cctx, []byte(o.Key))
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
