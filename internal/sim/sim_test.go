package sim

import (
	"bytes"
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
//	SIM_LOGDIR=DIR        writes the nodes' logs of each seed that fails to
//	                      DIR/seed-N.log, ending with its faults and verdict
//	                      (a long run reproduces its own failures: natively
//	                      the schedule, and so a seed's faults, depend on
//	                      the machine's load)
//	SIM_TRACEDIR=DIR      writes the trace (Options.Trace: every message and
//	                      fault) of each seed that fails to DIR/seed-N.trace
//	SIM_PROGRESS=1        prints a line every 1,000 seeds (a long run)
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

	seeds := make([]uint64, count)
	for i := range seeds {
		seeds[i] = first + uint64(i)
	}
	runSeeds(t, seeds, parallel, patience, logger)
}

// seedsThatFoundBugs are the seeds whose runs found a bug in the product
// (docs/simulator-design.md, "Found"), kept as regression tests. Natively
// a seed fixes the cluster, the requests and the faults, not the
// interleaving of goroutines, so a seed does not fail every time on the
// code before its fix; it still runs the story that found the bug.
var seedsThatFoundBugs = []uint64{
	25, 78, 161, 206, 339, 498, // the first runs of the full fault mix
	1791, 3819, 6284, 12170, 14478, // the long runs of 2026-12-03 afternoon
	62389, 65856, 67977, // a lost disk and a configuration change
	9656, 18424, 19757, 20645, 22516, 28842, 31617, 31769, // a read of a write not yet synced
	72577, // a read by the migration's configuration after the promotion
}

// TestSeedsThatFoundBugs runs seedsThatFoundBugs (natively only: CI's
// simulator step runs it; under -race it would take minutes).
func TestSeedsThatFoundBugs(t *testing.T) {
	if raceDetector || testing.Short() {
		t.Skip("the seeds that found bugs run natively, without -short (CI's simulator step)")
	}
	runSeeds(t, seedsThatFoundBugs, 8, 0, nil)
}

// runSeeds runs seeds, parallel at once, each with patience (0: Run's
// default) and logger (nil: none), and fails t on every anomaly (see
// TestSeedsPassTheChecks).
func runSeeds(t *testing.T, seeds []uint64, parallel int, patience time.Duration, logger *slog.Logger) {
	count := uint64(len(seeds))
	// Each seed is judged as it ends and only its verdict kept, so that a
	// long run does not hold every history in memory.
	var (
		mu                 sync.Mutex
		failed, idle, done int
		started            = time.Now()
	)
	judge := func(seed uint64, res Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		done++
		if progress := os.Getenv("SIM_PROGRESS"); progress != "" && done%1000 == 0 {
			fmt.Fprintf(os.Stderr, "sim: %d of %d seeds done, %d failed, %.1f seeds/s\n", done, count, failed, float64(done)/time.Since(started).Seconds())
		}
		if err != nil {
			t.Errorf("seed %d: %v", seed, err)
			failed++
			return
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
			t.Logf("seed %d: %d requests, %d writes acknowledged, %d failed; %s; faults: %s", seed, len(res.Ops), acked, failedOps, res.Expiring, strings.Join(res.Faults, ", "))
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
	slots := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, seed := range seeds {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			opts := Options{Seed: seed, Logger: logger, Patience: patience}
			dir, traceDir := os.Getenv("SIM_LOGDIR"), os.Getenv("SIM_TRACEDIR")
			var logs, trace lockedBuffer
			if dir != "" {
				opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			if traceDir != "" {
				opts.Trace = &trace
			}
			res, err := Run(ctx, opts)
			if err != nil || !res.OK() {
				ending := fmt.Sprintf("seed %d: faults: %s\nerror: %v\nverdict: %s\nunsettled: %q\n", opts.Seed, strings.Join(res.Faults, ", "), err, res.Verdict, res.Unsettled)
				for _, keep := range []struct {
					dir, ext string
					buf      *lockedBuffer
				}{{dir, "log", &logs}, {traceDir, "trace", &trace}} {
					if keep.dir == "" {
						continue
					}
					fmt.Fprint(keep.buf, ending)
					if werr := os.WriteFile(fmt.Sprintf("%s/seed-%d.%s", keep.dir, opts.Seed, keep.ext), keep.buf.Bytes(), 0o644); werr != nil {
						t.Errorf("seed %d: keeping its %s: %v", opts.Seed, keep.ext, werr)
					}
				}
			}
			judge(opts.Seed, res, err)
		})
	}
	wg.Wait()

	if idle > 0 && uint64(idle)*4 >= count {
		t.Errorf("%d of %d seeds acknowledged no write or injected no fault: the simulator exercises nothing", idle, count)
	}
	t.Logf("%d seeds from %d, %d failed", count, seeds[0], failed)
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

// lockedBuffer is a bytes.Buffer that the nodes of a seed may write their
// logs to at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns what was written so far.
func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// TestScenarios runs every scripted scenario (scenario.go) natively, each
// on a lab of its own.
func TestScenarios(t *testing.T) {
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			var logger *slog.Logger
			if os.Getenv("SIM_LOG") != "" {
				logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			if err := RunScenario(ctx, s.Name, logger); err != nil {
				t.Fatal(err)
			}
			t.Logf("took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}
