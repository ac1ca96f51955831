package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// metricValue reads one unlabelled metric from a process's /metrics.
func metricValue(base, name string) float64 {
	code, _, body, err := httpDo(context.Background(), "GET", base+"/metrics", nil, nil)
	if err != nil || code != 200 {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// TestBackgroundRepairRefillsWipedNodesWithoutReads is the original
// README's disaster test with no read in between: load values, stop every
// node, wipe the disks of a whole bucket (n1, n2) and of n5 and n10,
// restart, and let background repair alone (a 1 s interval) bring the data
// back. Then the other nodes are stopped, and every key that one of the
// wiped nodes holds is read from the wiped nodes alone.
func TestBackgroundRepairRefillsWipedNodesWithoutReads(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7", "n8"}, {"n9", "n10"}}, 2,
		"    background_repair_interval: 1s\n    read_quorum: one\n")
	cfg, err := config.Load(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	values := map[string][]byte{}
	for i := range 600 {
		k := fmt.Sprintf("disaster/%d", i)
		v := randomValue(r)
		values[k] = v
		if code, _, body, err := httpDo(ctx, "POST", c.base+"/values/"+k, v, nil); err != nil || code != 200 {
			t.Fatalf("POST %s: %d %v %s", k, code, err, body)
		}
	}
	for id, p := range c.nodes {
		if err := p.stop(t); err != nil {
			t.Fatalf("stopping %s: %v", id, err)
		}
	}
	wiped := []string{"n1", "n2", "n5", "n10"}
	for _, id := range wiped {
		os.RemoveAll(c.dataDir(id))
	}
	for id := range c.http {
		c.startNode(id)
	}
	for id, p := range c.nodes {
		waitHealthy(t, p, c.http[id])
	}
	// How many keys each wiped node must get back.
	want := map[string]int{}
	for k := range values {
		for _, nd := range cfg.Replicas(nil, []byte(k)) {
			want[nd.ID]++
		}
	}
	start := time.Now()
	waitFor(t, "background repair to refill the wiped nodes", func() bool {
		for _, id := range wiped {
			if got := metricValue(c.http[id], "tako_store_keys"); int(got) < want[id] {
				return false
			}
		}
		return true
	})
	t.Logf("background repair refilled %v in %v (keys wanted: %v)", wiped, time.Since(start).Round(time.Millisecond), want)

	// Only the wiped nodes are left: every key they hold reads back whole.
	for id, p := range c.nodes {
		if !slices.Contains(wiped, id) {
			if err := p.stop(t); err != nil {
				t.Fatal(err)
			}
		}
	}
	checked := 0
	for k, v := range values {
		var holder string
		for _, nd := range cfg.Replicas(nil, []byte(k)) {
			if slices.Contains(wiped, nd.ID) {
				holder = nd.ID
				break
			}
		}
		if holder == "" {
			continue
		}
		code, _, body, err := httpDo(ctx, "GET", c.http[holder]+"/values/"+k, nil, nil)
		if err != nil || code != 200 || !bytes.Equal(body, v) {
			t.Fatalf("%s from the wiped %s: %d %v, %d bytes, want %d", k, holder, code, err, len(body), len(v))
		}
		checked++
	}
	t.Logf("read %d keys back from the wiped nodes alone", checked)
}

// TestDeletedKeyStaysDeletedThroughRepair deletes a key while one replica
// is down with the old value, wipes another replica, and lets repair run
// several passes: the key never comes back, on any replica.
func TestDeletedKeyStaysDeletedThroughRepair(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}, {"n4"}}, 4,
		"    background_repair_interval: 1s\n    read_quorum: one\n")
	ctx := context.Background()
	if code, _, _, err := httpDo(ctx, "POST", c.base+"/values/gone", []byte("old value"), nil); err != nil || code != 200 {
		t.Fatalf("POST: %d %v", code, err)
	}
	time.Sleep(200 * time.Millisecond) // every replica has it
	// n3 goes down holding the value; the delete reaches the others.
	if err := c.nodes["n3"].stop(t); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := httpDo(ctx, "DELETE", c.base+"/values/gone", nil, nil); err != nil || code/100 != 2 {
		t.Fatalf("DELETE: %d %v", code, err)
	}
	// n4 loses its disk.
	if err := c.nodes["n4"].stop(t); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(c.dataDir("n4"))
	c.restartNode("n3")
	c.restartNode("n4")
	time.Sleep(5 * time.Second) // several repair passes
	// Each replica alone says the key is deleted.
	for _, alone := range []string{"n1", "n2", "n3", "n4"} {
		for id, p := range c.nodes {
			if id != alone {
				p.stop(t)
			}
		}
		code, h, body, err := httpDo(ctx, "GET", c.http[alone]+"/stat/gone", nil, nil)
		if err != nil || code != 404 || h.Get("X-Timestamp") == "" {
			t.Fatalf("%s alone: stat %d %v %q, want 404 with the tombstone's timestamp", alone, code, err, body)
		}
		for id := range c.http {
			if id != alone {
				c.restartNode(id)
			}
		}
	}
}
