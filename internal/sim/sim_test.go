package sim

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/history"
)

// TestSeedsPassTheChecks runs the cluster of several seeds, each with
// faults, and fails on any anomaly of their histories: a lost write, a
// stale read, a key that is not a linearizable register, a 409 on a
// write the cluster stamped.
func TestSeedsPassTheChecks(t *testing.T) {
	first, count := uint64(1), uint64(6)
	if testing.Short() {
		count = 2
	}
	// SIM_SEEDS=FIRST-LAST runs those seeds instead (a longer run).
	if r := os.Getenv("SIM_SEEDS"); r != "" {
		if _, err := fmt.Sscanf(r, "%d-%d", &first, &count); err != nil || count < first {
			t.Fatalf("SIM_SEEDS=%q: want FIRST-LAST", r)
		}
		count = count - first + 1
	}
	for seed := first; seed < first+count; seed++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		res, err := Run(ctx, Options{Seed: seed})
		cancel()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		acked, failed := 0, 0
		for _, o := range res.Ops {
			switch {
			case o.Kind != history.Read && o.Outcome == history.OK:
				acked++
			case o.Outcome == history.Failed:
				failed++
			}
		}
		if acked == 0 || len(res.Faults) == 0 {
			t.Errorf("seed %d: %d writes acknowledged, %d faults: the run exercised nothing", seed, acked, len(res.Faults))
		}
		if count <= 10 || !res.Verdict.OK() {
			t.Logf("seed %d: %d requests, %d writes acknowledged, %d failed; faults: %s", seed, len(res.Ops), acked, failed, strings.Join(res.Faults, ", "))
		}
		if !res.Verdict.OK() {
			t.Errorf("seed %d (cluster:\n%s): %s", seed, res.Config, res.Verdict)
		}
	}
}
