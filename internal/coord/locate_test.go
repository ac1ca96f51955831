package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/record"
)

// TestLocateLaysOutEveryReplicaOfBothDeployments: during a migration
// Locate asks each replica of both deployments once, and shows each
// answer under its deployment and bucket: a record without its value, a
// tombstone, nothing, an error, a timestamp that breaks the rule.
func TestLocateLaysOutEveryReplicaOfBothDeployments(t *testing.T) {
	cfg, err := config.Parse([]byte(migration))
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]record.Record{
		"n1": rec(5, "v"),
		"n2": tombstone(7),
		"n4": rec(99, "far ahead"),
	}
	errN5 := errors.New("replica n5 at h:5: connection refused")
	var mu sync.Mutex
	asked := map[string]int{}
	ask := func(_ context.Context, nd config.Node, k []byte) (record.Record, bool, error) {
		if string(k) != string(key) {
			t.Errorf("asked %s for %q, want %q", nd.ID, k, key)
		}
		mu.Lock()
		asked[nd.ID]++
		mu.Unlock()
		if nd.ID == "n5" {
			return record.Record{}, false, errN5
		}
		r, ok := held[nd.ID]
		return r, ok, nil
	}
	stored := func(ts int64) error {
		if ts > 50 {
			return fmt.Errorf("%d is too far ahead", ts)
		}
		return nil
	}
	loc, err := Locate(context.Background(), cfg, key, time.Second, ask, stored)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	if len(loc.Deployments) != 2 || loc.Deployments[0].Role != RoleActive || loc.Deployments[0].Name != "old" ||
		loc.Deployments[1].Role != RoleTarget || loc.Deployments[1].Name != "new" {
		t.Fatalf("deployments %+v, want old (active) then new (target)", loc.Deployments)
	}
	seen := map[string]ReplicaLocation{}
	for _, d := range loc.Deployments {
		if len(d.Buckets) != 3 {
			t.Errorf("%s: %d buckets, want 3 (buckets_per_key)", d.Name, len(d.Buckets))
		}
		for _, b := range d.Buckets {
			if len(b.Replicas) != 1 || "b"+strings.TrimPrefix(b.Replicas[0].Node.ID, "n") != b.Name {
				t.Errorf("%s: bucket %s holds %+v", d.Name, b.Name, b.Replicas)
			}
			for _, r := range b.Replicas {
				seen[r.Node.ID] = r
			}
		}
	}
	for _, id := range []string{"n1", "n2", "n3", "n4", "n5", "n6"} {
		if asked[id] != 1 {
			t.Errorf("%s asked %d times, want once", id, asked[id])
		}
	}
	if r := seen["n1"]; !r.Found || r.Record.Timestamp != 5 || r.Record.Tombstone || r.Record.Value != nil || r.Err != nil || r.BrokenTimestamp != "" {
		t.Errorf("n1: %+v, want a value at 5 without its bytes", r)
	}
	if r := seen["n2"]; !r.Found || r.Record.Timestamp != 7 || !r.Record.Tombstone {
		t.Errorf("n2: %+v, want a tombstone at 7", r)
	}
	if r := seen["n3"]; r.Found || r.Err != nil {
		t.Errorf("n3: %+v, want nothing held", r)
	}
	if r := seen["n4"]; !r.Found || !strings.Contains(r.BrokenTimestamp, "too far ahead") {
		t.Errorf("n4: %+v, want its timestamp judged broken", r)
	}
	if r := seen["n5"]; r.Found || !errors.Is(r.Err, errN5) {
		t.Errorf("n5: %+v, want its error", r)
	}
}

// TestLocateBoundsEachReplicaAndFailsOnlyWithItsContext: a replica that
// does not answer costs the timeout and shows an error; the caller's
// context ending fails Locate.
func TestLocateBoundsEachReplicaAndFailsOnlyWithItsContext(t *testing.T) {
	cfg, err := config.Parse([]byte(threeReplicas))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(ctx context.Context, nd config.Node, _ []byte) (record.Record, bool, error) {
		if nd.ID == "n2" {
			<-ctx.Done()
			return record.Record{}, false, ctx.Err()
		}
		return rec(1, "v"), true, nil
	}
	admit := func(int64) error { return nil }
	start := time.Now()
	loc, err := Locate(context.Background(), cfg, key, 50*time.Millisecond, ask, admit)
	if err != nil {
		t.Fatalf("Locate with a silent replica: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Locate took %v with a 50ms timeout", d)
	}
	for _, b := range loc.Deployments[0].Buckets {
		r := b.Replicas[0]
		if (r.Node.ID == "n2") != errors.Is(r.Err, context.DeadlineExceeded) {
			t.Errorf("%s: %+v", r.Node.ID, r)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Locate(ctx, cfg, key, time.Second, ask, admit); !errors.Is(err, context.Canceled) {
		t.Errorf("Locate with its context ended: %v, want context.Canceled", err)
	}
}
