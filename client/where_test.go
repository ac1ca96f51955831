package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/testcluster"
)

func TestWhere(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2, Extra: []string{"request_timeout: 500ms"}})
	c := client.New(cl.Config, client.Options{})
	defer c.Close()
	ctx := context.Background()
	key := []byte("where/am i")
	res, err := c.PutAt(ctx, key, []byte("v"), 1_700_000_000_000_000)
	if err != nil {
		t.Fatal(err)
	}
	d := cl.Config.Active
	wantBuckets := d.Ring.LookupHash(nil, keyhash.Sum(key), d.BucketsPerKey)
	check := func(down string) {
		t.Helper()
		p, err := c.Where(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if string(p.Key) != string(key) || p.Hash != keyhash.Sum(key) || len(p.Deployments) != 1 || p.Deployments[0].Role != "active" {
			t.Fatalf("placement %+v", p)
		}
		buckets := p.Deployments[0].Buckets
		if len(buckets) != 2 {
			t.Fatalf("%d buckets, want 2", len(buckets))
		}
		for i, b := range buckets {
			if b.Name != d.Buckets[wantBuckets[i]].Name || len(b.Replicas) != 1 {
				t.Fatalf("bucket %d: %+v, want %s in ring order", i, b, d.Buckets[wantBuckets[i]].Name)
			}
			r := b.Replicas[0]
			nd, _, _ := cl.Config.Node(r.NodeID)
			if r.Addr != nd.BinaryAddr() {
				t.Errorf("%s: addr %q, want %q", r.NodeID, r.Addr, nd.BinaryAddr())
			}
			if r.NodeID == down {
				if r.Err == nil || r.Found {
					t.Errorf("the stopped replica %s: %+v, want an error", down, r)
				}
				continue
			}
			if r.Err != nil || !r.Found || r.Timestamp != res.Timestamp || r.Deleted {
				t.Errorf("replica %s: %+v, want the write at %d", r.NodeID, r, res.Timestamp)
			}
		}
	}
	// The quorum (2 of 2) acknowledged the write, so both replicas hold it.
	check("")
	down := d.Buckets[wantBuckets[1]].Nodes[0].ID
	if err := cl.StopNode(down); err != nil {
		t.Fatal(err)
	}
	check(down)
	if _, err := c.Where(ctx, nil); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("Where of an empty key: %v, want ErrBadRequest", err)
	}
}
