package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/store"
)

func TestComplementAndSelfRanges(t *testing.T) {
	full := []hashRange{{0, ^uint32(0)}}
	if got := complement(full); len(got) != 0 {
		t.Fatalf("complement of everything = %v", got)
	}
	if got := complement(nil); len(got) != 1 || got[0] != full[0] {
		t.Fatalf("complement of nothing = %v", got)
	}
	got := complement([]hashRange{{10, 20}, {30, ^uint32(0)}})
	want := []hashRange{{0, 9}, {21, 29}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("complement = %v, want %v", got, want)
	}
	cfg, err := config.Parse([]byte("active_deployment: a\ndeployments:\n  a:\n    buckets:\n      b1: {n1: [h, 1, 2]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := selfRanges(cfg, "n1"); len(got) != 1 || got[0] != full[0] {
		t.Fatalf("a one-node cluster's node owns %v, want everything", got)
	}
}

// TestGarbageCollectionHandsOffThenDrops grows a cluster from two buckets to
// three without a migration: the old nodes first hand the keys they no
// longer replicate to the new node, and drop them only once it holds them.
func TestGarbageCollectionHandsOffThenDrops(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 1, "    background_repair_interval: 1s\n")
	ctx := context.Background()
	// First only b1 and b2.
	two := reconfigure(t, c, [][]string{{"n1"}, {"n2"}}, 1, "    background_repair_interval: 1s\n")
	for _, n := range c.nodes {
		n.SetConfig(two, 2)
	}
	waitFor(t, "recovery after the change", func() bool { return !c.nodes["n1"].Recovering() && !c.nodes["n2"].Recovering() })
	for i := range 200 {
		if _, err := c.nodes["n1"].Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Then all three: n3 takes a share, from n1 and n2.
	for _, n := range c.nodes {
		n.SetConfig(c.cfg, 3)
	}
	waitFor(t, "every key on exactly its one replica", func() bool {
		for i := range 200 {
			k := fmt.Sprintf("k%d", i)
			owner := c.replicaIDs(k)[0]
			for id := range c.nodes {
				_, found := c.localRecord(t, id, k)
				if found != (id == owner) {
					return false
				}
			}
		}
		return true
	})
}

// TestTombstonesAreDroppedOnlyOnceEveryReplicaHasThem keeps a tombstone past
// its grace while a replica is down, and drops it once that replica holds it.
func TestTombstonesAreDroppedOnlyOnceEveryReplicaHasThem(t *testing.T) {
	extra := "    background_repair_interval: 1s\n    tombstone_grace: 1s\n"
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, extra)
	ctx := context.Background()
	if _, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	c.stop(t, "n3") // n3 keeps the value
	if _, err := c.nodes["n1"].Delete(ctx, []byte("k"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // well past the grace, several passes
	for _, id := range []string{"n1", "n2"} {
		if rec, found := c.localRecord(t, id, "k"); !found || !rec.Tombstone {
			t.Fatalf("%s dropped the tombstone while n3 (with the old value) was down: %+v %v", id, rec, found)
		}
	}
	c.start(t, "n3")
	waitFor(t, "the tombstone dropped everywhere", func() bool {
		for _, id := range []string{"n1", "n2", "n3"} {
			_, err := c.nodes[id].store.Get(ctx, []byte("k"))
			if !errors.Is(err, store.ErrNotFound) {
				return false
			}
		}
		return true
	})
	// And the key is not back.
	if v, err := c.nodes["n3"].Get(ctx, []byte("k")); err == nil && !v.Deleted {
		t.Fatalf("the deleted key came back: %+v", v)
	}
}

// TestATombstoneWaitsForNodesThatAreNotReplicas: a node that is not a
// replica of a key but still holds an older value of it (it was one before
// a configuration change) hands that value to the replicas that lack it.
// If the replicas dropped the key's tombstone without asking that node,
// its hand-off brought the deleted key back (found by the simulator,
// internal/sim). Now a tombstone waits for every node of the cluster.
func TestATombstoneWaitsForNodesThatAreNotReplicas(t *testing.T) {
	extra := "    background_repair_interval: 1s\n    tombstone_grace: 1s\n"
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, extra)
	ctx := context.Background()
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("k%d", i); !contains(c.replicaIDs(k), "n3") {
			key = k
		}
	}
	// The key's old value on every node, n3 (not a replica) included.
	old := store.Record{Timestamp: time.Now().Add(-time.Minute).UnixMicro(), Value: []byte("old")}
	for _, id := range []string{"n1", "n2", "n3"} {
		if _, err := c.nodes[id].store.Put(ctx, []byte(key), old); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(t, "n3") // before its collection hands the value over or drops it
	if _, err := c.nodes["n1"].Delete(ctx, []byte(key), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // past the grace, two passes
	for _, id := range []string{"n1", "n2"} {
		if rec, found := c.localRecord(t, id, key); !found || !rec.Tombstone {
			t.Fatalf("%s dropped the tombstone while n3 (with an older value, not a replica) was down: %+v %v", id, rec, found)
		}
	}
	c.start(t, "n3")
	waitFor(t, "the key gone from every node", func() bool {
		gone := true
		for _, id := range []string{"n1", "n2", "n3"} {
			rec, found := c.localRecord(t, id, key)
			if found && !rec.Tombstone && id != "n3" {
				t.Fatalf("the deleted key came back on %s: %+v", id, rec)
			}
			gone = gone && !found
		}
		return gone
	})
	time.Sleep(2 * time.Second) // two more passes: nothing hands the value back
	for _, id := range []string{"n1", "n2"} {
		if v, err := c.nodes[id].Get(ctx, []byte(key)); err == nil && !v.Deleted {
			t.Fatalf("the deleted key came back on %s: %+v", id, v)
		}
	}
}

// reconfigure returns a configuration with the same nodes (same ports) as
// c, laid out in the given buckets.
func reconfigure(t *testing.T, c *testCluster, buckets [][]string, bpk int, extra string) *config.Config {
	t.Helper()
	nodes := map[string]config.Node{}
	for _, nd := range c.cfg.Nodes() {
		nodes[nd.ID] = nd
	}
	s := fmt.Sprintf("active_deployment: test\ndeployments:\n  test:\n%s    hash:\n      buckets_per_key: %d\n    buckets:\n", extra, bpk)
	for i, ids := range buckets {
		s += fmt.Sprintf("      b%d:\n", i+1)
		for _, id := range ids {
			s += fmt.Sprintf("        %s: [127.0.0.1, %d, %d]\n", id, nodes[id].HTTPPort, nodes[id].BinaryPort)
		}
	}
	cfg, err := config.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRecoveringNodeSaysSoAndDoesNotCountNotFound: a recovering node's
// /health says so (still 200), tako_node_recovering is 1, and its own
// "not found" is an error rather than an answer; read through, it is one.
func TestRecoveringNodeSaysSoAndDoesNotCountNotFound(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	n := c.nodes["n1"]
	n.startRecovering("a test says so", replicatedRanges(n.Config(), "n1"), false)
	base := "http://" + n.HTTPAddr().String()
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "recovering") {
		t.Fatalf("/health of a recovering node: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "tako_node_recovering 1") {
		t.Fatal("tako_node_recovering is not 1")
	}
	if _, _, err := n.local.getLocal(context.Background(), []byte("absent")); !errors.Is(err, errRecovering) {
		t.Fatalf("a recovering node's local miss: %v, want errRecovering", err)
	}
	// Read through: n2, which is not recovering and is in every write
	// quorum of the key (2 of 2), says it has no such key, so n1 may too.
	if _, found, err := n.local.Get(context.Background(), []byte("absent")); err != nil || found {
		t.Fatalf("a recovering node's read-through of an absent key: found %v, %v; want not found", found, err)
	}
	// The repair loop recovers it (its peer is up), and the pass's bytes
	// are counted.
	waitFor(t, "recovery", func() bool { return !n.Recovering() })
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"tako_repair_bytes_total{direction=\"sent\"}", "tako_repair_bytes_total{direction=\"received\"}", "tako_build_info{program=\"tako-node\""} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if strings.Contains(string(metrics), "tako_repair_bytes_total{direction=\"received\"} 0\n") {
		t.Error("a repair pass with a peer received 0 bytes")
	}
}
