// Command guest runs one seed of the simulator (internal/sim) and prints
// what happened: the faults, every request with its outcome, and the
// verdict. Built for wasip1 and run under the deterministic host
// (sim/feasibility/host; scripts/sim-replay.sh), the same seed prints the
// same bytes; natively it runs the same seed with the Go scheduler's
// interleaving.
//
//	guest SEED [-trace | scenarios]
//
// -trace writes every message and fault to stderr as they happen
// (sim.Options.Trace). "scenarios" runs every scripted scenario
// (sim.Scenarios) instead of the seed's run, one after the other, and
// prints a line for each (under the host, SEED then only seeds the
// host's randomness).
package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"

	"github.com/takodb/tako/internal/sim"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 || len(os.Args) == 3 && os.Args[2] != "-trace" && os.Args[2] != "scenarios" {
		fmt.Fprintln(os.Stderr, "usage: guest SEED [-trace | scenarios]")
		os.Exit(2)
	}
	seed, err := strconv.ParseUint(os.Args[1], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest: SEED:", err)
		os.Exit(2)
	}
	if len(os.Args) == 3 && os.Args[2] == "scenarios" {
		os.Exit(runScenarios())
	}
	opts := sim.Options{Seed: seed}
	if len(os.Args) == 3 {
		opts.Trace = os.Stderr
	}
	res, err := sim.Run(context.Background(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest:", err)
		os.Exit(1)
	}
	h := fnv.New64a()
	for _, f := range res.Faults {
		fmt.Fprintln(h, f)
	}
	for _, o := range res.Ops {
		fmt.Fprintf(h, "%d %v %s %q %v %d %v %v\n", o.Client, o.Kind, o.Key, o.Value, o.Outcome, o.Timestamp, o.Start.UnixNano(), o.End.UnixNano())
	}
	for _, u := range res.Unsettled {
		fmt.Fprintln(h, u)
	}
	fmt.Printf("seed %d: %d requests, %d faults, history %016x, ok %v\n", seed, len(res.Ops), len(res.Faults), h.Sum64(), res.OK())
	if !res.OK() {
		fmt.Println("faults:", strings.Join(res.Faults, ", "))
		fmt.Println(res.Verdict)
		for _, u := range res.Unsettled {
			fmt.Println("once settled:", u)
		}
		os.Exit(3)
	}
}

// runScenarios runs every scenario and returns the exit code: 3 when one
// failed.
func runScenarios() int {
	code := 0
	for _, s := range sim.Scenarios() {
		if err := sim.RunScenario(context.Background(), s.Name, nil); err != nil {
			fmt.Printf("scenario %s: FAILED: %v\n", s.Name, err)
			code = 3
			continue
		}
		fmt.Printf("scenario %s: ok\n", s.Name)
	}
	return code
}
