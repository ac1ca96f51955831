package config

import (
	"fmt"
	"slices"
	"testing"
)

// naiveReplicas computes a key's replicas in d from the ring's bucket order
// alone, the way the package documentation describes them.
func naiveReplicas(d *Deployment, key []byte) []string {
	var ids []string
	for _, bi := range d.Ring.Lookup(nil, key, d.BucketsPerKey) {
		for _, n := range d.Buckets[bi].Nodes {
			ids = append(ids, n.ID)
		}
	}
	return ids
}

func ids(nodes []Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func TestDeploymentReplicas(t *testing.T) {
	c := mustParse(t, migration)
	for _, d := range []*Deployment{c.Active, c.Target} {
		t.Run(d.Name, func(t *testing.T) {
			for i := range 1000 {
				key := []byte(fmt.Sprintf("key-%d", i))
				got := ids(d.Replicas(nil, key))
				if want := naiveReplicas(d, key); !slices.Equal(got, want) {
					t.Fatalf("Replicas(%q) = %v, want %v", key, got, want)
				}
				// The primary bucket's nodes come first.
				primary := d.Buckets[d.Ring.Lookup(nil, key, 1)[0]]
				if !slices.Equal(got[:len(primary.Nodes)], ids(primary.Nodes)) {
					t.Fatalf("Replicas(%q) = %v does not start with primary bucket %q", key, got, primary.Name)
				}
				if len(got) < d.MinReplicas() {
					t.Fatalf("Replicas(%q) = %v, fewer than MinReplicas %d", key, got, d.MinReplicas())
				}
			}
		})
	}
}

func TestConfigReplicasDuringMigration(t *testing.T) {
	c := mustParse(t, migration)
	sawShared, sawNew := false, false
	for i := range 1000 {
		key := []byte(fmt.Sprintf("key-%d", i))
		active := ids(c.Active.Replicas(nil, key))
		target := ids(c.Target.Replicas(nil, key))
		// The union: the active replicas in order, then the target's
		// that are new, in order.
		want := slices.Clone(active)
		for _, id := range target {
			if slices.Contains(active, id) {
				sawShared = true
			} else {
				sawNew = true
				want = append(want, id)
			}
		}
		prefix := []Node{{ID: "dst"}}
		got := c.Replicas(prefix, key)
		if got[0].ID != "dst" {
			t.Fatalf("Replicas overwrote dst: %v", got)
		}
		if !slices.Equal(ids(got[1:]), want) {
			t.Fatalf("Replicas(%q) = %v, want %v (active %v, target %v)", key, ids(got[1:]), want, active, target)
		}
	}
	if !sawShared || !sawNew {
		t.Errorf("keys never had a replica in both deployments (%v) or one only in the target (%v)", sawShared, sawNew)
	}
}

func TestConfigReplicasWithoutMigration(t *testing.T) {
	c := mustParse(t, `
active_deployment: d
deployments:
  d:
    hash: {buckets_per_key: 2}
    buckets: {b1: {n1: [h, 1]}, b2: {n2: [h, 2]}, b3: {n3: [h, 3]}}
`)
	for i := range 100 {
		key := []byte(fmt.Sprintf("%d", i))
		if got, want := ids(c.Replicas(nil, key)), ids(c.Active.Replicas(nil, key)); !slices.Equal(got, want) {
			t.Fatalf("Replicas(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestMinReplicas(t *testing.T) {
	tests := []struct {
		name          string
		sizes         []int
		bucketsPerKey int
		want          int
	}{
		{"one bucket", []int{3}, 1, 3},
		{"smallest bucket", []int{3, 1, 2}, 1, 1},
		{"two smallest buckets", []int{2, 3, 2}, 2, 4},
		{"more buckets per key than buckets", []int{2, 3}, 5, 5},
		{"every bucket", []int{1, 2, 3}, 3, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Deployment{BucketsPerKey: tt.bucketsPerKey}
			for i, size := range tt.sizes {
				d.Buckets = append(d.Buckets, Bucket{Name: fmt.Sprint(i), Nodes: make([]Node, size)})
			}
			if got := d.MinReplicas(); got != tt.want {
				t.Errorf("MinReplicas() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestBucketsPerKeyBeyondBuckets checks that a key lives on every bucket when
// buckets_per_key exceeds the number of buckets.
func TestBucketsPerKeyBeyondBuckets(t *testing.T) {
	c := mustParse(t, `
active_deployment: d
deployments:
  d:
    write_quorum: 3
    hash: {buckets_per_key: 10}
    buckets: {b1: {n1: [h, 1]}, b2: {n2: [h, 2]}, b3: {n3: [h, 3]}}
`)
	for i := range 100 {
		got := ids(c.Replicas(nil, []byte(fmt.Sprint(i))))
		slices.Sort(got)
		if !slices.Equal(got, []string{"n1", "n2", "n3"}) {
			t.Fatalf("replicas %v, want all three nodes", got)
		}
	}
}

func BenchmarkConfigReplicas(b *testing.B) {
	c, err := Parse([]byte(migration))
	if err != nil {
		b.Fatal(err)
	}
	key := []byte("some/key")
	dst := make([]Node, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		dst = c.Replicas(dst[:0], key)
	}
}
