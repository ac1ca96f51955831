package sim

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/history"
)

// TestSeedsPassTheChecks runs the cluster of many seeds, each with faults,
// and fails on any anomaly of their histories (a lost write, a stale read,
// a key that is not a linearizable register, a 409 on a write the cluster
// stamped) or of the cluster once settled (replicas that disagree, a
// deleted key back, a tombstone left past its grace). Seeds run several at
// once: a run mostly waits (think times, timeouts, repair passes).
//
//	SIM_SEEDS=FIRST-LAST  runs those seeds instead (a longer run)
//	SIM_PARALLEL=N        runs N at once (default 8; 2 under -race, which
//	                      also runs 6 seeds by default)
//	SIM_LOG=1             prints the nodes' logs (one seed at a time)
//	SIM_LOGDIR=DIR        writes each seed's nodes' logs to DIR/seed-N.log
func TestSeedsPassTheChecks(t *testing.T) {
	first, count := uint64(1), uint64(48)
	parallel := 8
	if testing.Short() {
		count = 8
	}
	var patience time.Duration // Run's default
	if raceDetector {
		count, parallel, patience = 6, 2, 30*time.Second
	}
	if r := os.Getenv("SIM_SEEDS"); r != "" {
		if _, err := fmt.Sscanf(r, "%d-%d", &first, &count); err != nil || count < first {
			t.Fatalf("SIM_SEEDS=%q: want FIRST-LAST", r)
		}
		count = count - first + 1
	}
	if p := os.Getenv("SIM_PARALLEL"); p != "" {
		if _, err := fmt.Sscanf(p, "%d", &parallel); err != nil || parallel < 1 {
			t.Fatalf("SIM_PARALLEL=%q: want a number above 0", p)
		}
	}
	var logger *slog.Logger
	if os.Getenv("SIM_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		parallel = 1
	}

	type outcome struct {
		res Result
		err error
	}
	results := make([]outcome, count)
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range results {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opts := Options{Seed: first + uint64(i), Logger: logger, Patience: patience}
			if dir := os.Getenv("SIM_LOGDIR"); dir != "" {
				f, err := os.Create(fmt.Sprintf("%s/seed-%d.log", dir, opts.Seed))
				if err != nil {
					results[i].err = err
					return
				}
				defer f.Close()
				opts.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			results[i].res, results[i].err = Run(ctx, opts)
		})
	}
	wg.Wait()

	failed, idle := 0, 0
	for i, r := range results {
		seed, res := first+uint64(i), r.res
		if r.err != nil {
			t.Errorf("seed %d: %v", seed, r.err)
			failed++
			continue
		}
		acked, failedOps := 0, 0
		for _, o := range res.Ops {
			switch {
			case o.Kind != history.Read && o.Outcome == history.OK:
				acked++
			case o.Outcome == history.Failed:
				failedOps++
			}
		}
		if acked == 0 || len(res.Faults) == 0 {
			// A seed may take away too much for any write to succeed
			// (a node cut off for the whole run with a write quorum of
			// all); many such seeds mean the simulator is broken.
			idle++
			t.Logf("seed %d: %d writes acknowledged, %d faults: the run exercised little", seed, acked, len(res.Faults))
		}
		if count <= 10 || !res.OK() {
			t.Logf("seed %d: %d requests, %d writes acknowledged, %d failed; faults: %s", seed, len(res.Ops), acked, failedOps, strings.Join(res.Faults, ", "))
		}
		if !res.OK() {
			failed++
			t.Errorf("seed %d (cluster:\n%s): %s", seed, res.Config, res.Verdict)
			for _, u := range res.Unsettled {
				t.Errorf("seed %d: once settled: %s", seed, u)
			}
			t.Logf("replay: SIM_SEEDS=%d-%d SIM_LOG=1 go test -count=1 -run TestSeedsPassTheChecks -v ./internal/sim", seed, seed)
		}
	}
	if idle > 0 && uint64(idle)*4 >= count {
		t.Errorf("%d of %d seeds acknowledged no write or injected no fault: the simulator exercises nothing", idle, count)
	}
	t.Logf("%d seeds from %d, %d failed", count, first, failed)
}

// TestTheTraceShowsEveryMessageAndFault runs seeds with a trace and finds
// in each the faults it injected and, across them, the messages of the
// replica logic, decoded. A background repair pass (the Digest) runs on its
// own schedule, so a short run may end before one: the test runs up to five
// seeds until every message has been seen.
func TestTheTraceShowsEveryMessageAndFault(t *testing.T) {
	want := []string{"client0 -> n", "FencedPut \"hot", "RecordResponse", "PutResponse written", "Digest"}
	seen := map[string]bool{}
	var first string
	for seed := uint64(1); seed <= 5 && len(seen) < len(want); seed++ {
		var trace strings.Builder
		res, err := Run(context.Background(), Options{Seed: seed, Trace: &trace})
		if err != nil {
			t.Fatal(err)
		}
		out := trace.String()
		if first == "" {
			first = out
		}
		for _, w := range want {
			if strings.Contains(out, w) {
				seen[w] = true
			}
		}
		for _, f := range res.Faults {
			if !strings.Contains(out, "fault: "+f) {
				t.Errorf("seed %d: the trace does not show the fault %q", seed, f)
			}
		}
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no trace of seeds 1-5 has %q", w)
		}
	}
	if t.Failed() {
		t.Logf("the first trace's first lines:\n%s", first[:min(len(first), 3000)])
	}
}
