package node

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takodb/tako/internal/store"
)

// TestRepairCostBetweenTwoReplicas measures one background repair pass
// between two replicas that hold the same keys, then with 1% of the keys
// newer on one side. TAKO_REPAIR_KEYS sets the number of keys (the figure
// in docs/performance.md uses 1,000,000; CI runs 50,000).
func TestRepairCostBetweenTwoReplicas(t *testing.T) {
	keys := 50_000
	if s := os.Getenv("TAKO_REPAIR_KEYS"); s != "" {
		keys, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		keys = 5_000
	}
	// Three buckets, two per key: n1 and n2 share about a third of the
	// hash space, in a few hundred arcs of the ring, as two replicas of a
	// real cluster do. The keys are ones both hold.
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "    background_repair: no\n")
	ctx := context.Background()
	var names []string
	for i := 0; len(names) < keys; i++ {
		k := fmt.Sprintf("key/%d", i)
		ids := c.replicaIDs(k)
		if contains(ids, "n1") && contains(ids, "n2") {
			names = append(names, k)
		}
	}
	load := func(id string, from, to int, ts int64) {
		var wg sync.WaitGroup
		const writers = 16
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += writers {
					rec := store.Record{Timestamp: ts, Value: []byte(fmt.Sprintf("value-%d-%d-%s", i, ts, "0123456789012345678901234567890123456789012345678901234567890123456789"))}
					if _, err := c.nodes[id].store.Put(ctx, []byte(names[i]), rec); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	start := time.Now()
	load("n1", 0, keys, 1000)
	load("n2", 0, keys, 1000)
	t.Logf("loaded %d keys into each replica in %v", keys, time.Since(start).Round(time.Millisecond))

	pass := func(what string) passStats {
		start := time.Now()
		stats, err := c.nodes["n1"].repairPeer(ctx, c.cfg, "n2")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v; %d messages, %d bytes sent, %d bytes received, %d ranges compared (%d differed), %d keys sent, %d received",
			what, time.Since(start).Round(time.Millisecond), stats.messages, stats.bytesSent, stats.bytesReceived,
			stats.ranges, stats.differed, stats.keysSent, stats.keysReceived)
		return stats
	}
	same := pass("replicas agree")
	if same.keysSent+same.keysReceived != 0 || same.differed != 0 {
		t.Fatalf("replicas that agree exchanged keys: %+v", same)
	}
	if b := same.bytesSent + same.bytesReceived; b > 1<<20 {
		t.Errorf("a pass between agreeing replicas cost %d bytes, over 1 MB", b)
	}
	if same.keysCompared != uint64(keys) {
		t.Errorf("the pass compared %d keys, want %d", same.keysCompared, keys)
	}

	// 1% of the keys get a newer version on n2.
	changed := keys / 100
	for i := 0; i < changed; i++ {
		k := i * 100
		load("n2", k, k+1, 2000)
	}
	diff := pass("1% of the keys newer on n2")
	if diff.keysReceived != changed || diff.keysSent != 0 {
		t.Fatalf("repair received %d keys and sent %d, want %d and 0", diff.keysReceived, diff.keysSent, changed)
	}
	for i := 0; i < changed; i++ {
		rec, err := c.nodes["n1"].store.Get(ctx, []byte(names[i*100]))
		if err != nil || rec.Timestamp != 2000 {
			t.Fatalf("%s on n1 after repair: %+v %v", names[i*100], rec, err)
		}
	}
	if again := pass("after repair"); again.differed != 0 {
		t.Fatalf("replicas still differ after a repair pass: %+v", again)
	}
}

// TestRepairPassWithRefusedRecordsIsNotClean: a record that the peer
// refuses (here one with a timestamp below 1, which no door accepts) makes
// the pass unclean: it is counted, and the pass gives no credit to garbage
// collection or to a migration's convergence (tako_repair_synced_epoch
// stays where it was).
func TestRepairPassWithRefusedRecordsIsNotClean(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "    background_repair: no\n")
	n1 := c.nodes["n1"]
	ctx := context.Background()
	if _, err := n1.store.Put(ctx, []byte("fine"), store.Record{Timestamp: 10, Value: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.store.Put(ctx, []byte("poisoned"), store.Record{Timestamp: -5, Value: []byte("bad")}); err != nil {
		t.Fatal(err)
	}
	stats, err := n1.repairPass(ctx, c.cfg, 0)
	if err == nil {
		t.Fatalf("a pass with a refused record is clean: %+v", stats)
	}
	if got := testutil.ToFloat64(n1.metrics.repairItemErrors); got != 1 {
		t.Errorf("tako_repair_item_errors_total = %v, want 1", got)
	}
	if _, found := c.localRecord(t, "n2", "fine"); !found {
		t.Error("the record n2 accepts did not reach it")
	}
	t.Logf("the pass's error: %v", err)
}
