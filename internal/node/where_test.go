package node

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
)

// getWhere asks node id's HTTP port where key lives.
func getWhere(t *testing.T, c *testCluster, id, escapedKey string) httpapi.Placement {
	t.Helper()
	resp, err := http.Get("http://" + c.nodes[id].HTTPAddr().String() + "/where/" + escapedKey)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /where/%s via %s: %d", escapedKey, id, resp.StatusCode)
	}
	var p httpapi.Placement
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("decoding /where: %v", err)
	}
	return p
}

// replicaStates flattens a placement's answers by node id, checking that
// every bucket is one the ring gives the key, in ring order.
func replicaStates(t *testing.T, c *testCluster, p httpapi.Placement) map[string]httpapi.ReplicaState {
	t.Helper()
	if len(p.Deployments) != 1 || p.Deployments[0].Name != "test" || p.Deployments[0].Role != "active" {
		t.Fatalf("deployments %+v, want the active one only", p.Deployments)
	}
	d := c.cfg.Active
	want := d.Ring.LookupHash(nil, p.Hash, d.BucketsPerKey)
	got := p.Deployments[0].Buckets
	if len(got) != len(want) {
		t.Fatalf("%d buckets, want %d", len(got), len(want))
	}
	states := map[string]httpapi.ReplicaState{}
	for i, b := range got {
		if b.Name != d.Buckets[want[i]].Name {
			t.Errorf("bucket %d is %s, want %s (ring order)", i, b.Name, d.Buckets[want[i]].Name)
		}
		for _, s := range b.Nodes {
			states[s.ID] = s
		}
	}
	return states
}

func TestWhereShowsEveryReplicasRecord(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "")
	ctx := context.Background()
	key := "a/b c"
	if _, err := c.nodes["n1"].Put(ctx, []byte(key), []byte("v"), 1_000_000, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	replicas := c.replicaIDs(key)
	waitFor(t, "the write on both replicas", func() bool {
		for _, id := range replicas {
			if _, found := c.localRecord(t, id, key); !found {
				return false
			}
		}
		return true
	})
	// A newer version on one replica only: the other is stale.
	fresh, stale := replicas[0], replicas[1]
	if _, err := c.nodes[fresh].local.Put(ctx, []byte(key), store.Record{Timestamp: 2_000_000, Value: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	var other string
	for id := range c.nodes {
		if !contains(replicas, id) {
			other = id
		}
	}
	// Asked through a replica (its own store, and a peer) and through the
	// node that is no replica (two peers), the answer is the same.
	for _, via := range []string{fresh, stale, other} {
		p := getWhere(t, c, via, "a/b%20c")
		if p.Key != key || p.Hash != keyhash.Sum([]byte(key)) {
			t.Errorf("via %s: key %q hash %d", via, p.Key, p.Hash)
		}
		states := replicaStates(t, c, p)
		if len(states) != 2 {
			t.Fatalf("via %s: %d replicas, want 2: %+v", via, len(states), states)
		}
		if s := states[fresh]; !s.Found || s.Timestamp != 2_000_000 || s.Deleted || s.Error != "" {
			t.Errorf("via %s: the fresh replica %s: %+v", via, fresh, s)
		}
		if s := states[stale]; !s.Found || s.Timestamp != 1_000_000 || s.Error != "" {
			t.Errorf("via %s: the stale replica %s: %+v", via, stale, s)
		}
		nd, _, _ := c.cfg.Node(fresh)
		if states[fresh].Binary != nd.BinaryAddr() {
			t.Errorf("via %s: binary %q, want %q", via, states[fresh].Binary, nd.BinaryAddr())
		}
	}
	// /where repairs nothing: the stale replica is still stale.
	if rec, _ := c.localRecord(t, stale, key); rec.Timestamp != 1_000_000 {
		t.Errorf("the stale replica was repaired to %d by /where", rec.Timestamp)
	}
}

func TestWhereReportsDeletedMissingAndDownReplicas(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "    request_timeout: 500ms\n")
	ctx := context.Background()
	key := "gone"
	replicas := c.replicaIDs(key)
	if _, err := c.nodes[replicas[0]].local.Put(ctx, []byte(key), store.Record{Timestamp: 3_000_000, Tombstone: true}); err != nil {
		t.Fatal(err)
	}
	var other string
	for id := range c.nodes {
		if !contains(replicas, id) {
			other = id
		}
	}
	states := replicaStates(t, c, getWhere(t, c, other, key))
	if s := states[replicas[0]]; !s.Found || !s.Deleted || s.Timestamp != 3_000_000 {
		t.Errorf("the replica with the tombstone: %+v", s)
	}
	if s := states[replicas[1]]; s.Found || s.Error != "" {
		t.Errorf("the replica without the key: %+v", s)
	}
	c.stop(t, replicas[1])
	start := time.Now()
	states = replicaStates(t, c, getWhere(t, c, other, key))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("/where with a replica down took %v", d)
	}
	if s := states[replicas[1]]; s.Found || s.Error == "" {
		t.Errorf("the stopped replica: %+v, want an error", s)
	}
	if s := states[replicas[0]]; !s.Deleted {
		t.Errorf("the replica that is up: %+v", s)
	}
}
