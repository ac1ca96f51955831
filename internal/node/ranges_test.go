package node

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/takodb/tako/internal/config"
)

// TestSharedRangesAgreeWithReplicas checks sharedRanges against the naive
// answer: for random hashes, a peer's ranges contain h exactly when both
// the node and the peer are replicas of h.
func TestSharedRangesAgreeWithReplicas(t *testing.T) {
	cfgs := map[string]string{
		"one deployment": `
active_deployment: a
deployments:
  a:
    hash: {buckets_per_key: 2, points_per_bucket: 20}
    buckets:
      b1: {n1: [h, 1, 2], n2: [h, 3, 4]}
      b2: {n3: [h, 5, 6]}
      b3: {n4: [h, 7, 8]}
      b4: {n5: [h, 9, 10]}
`,
		"migration": `
active_deployment: a
target_deployment: b
deployments:
  a:
    hash: {buckets_per_key: 1, points_per_bucket: 15}
    buckets:
      b1: {n1: [h, 1, 2]}
      b2: {n2: [h, 3, 4]}
  b:
    hash: {buckets_per_key: 2, points_per_bucket: 15}
    buckets:
      b1: {n1: [h, 1, 2]}
      b2: {n2: [h, 3, 4]}
      b3: {n3: [h, 5, 6]}
`,
	}
	r := rand.New(rand.NewPCG(3, 4))
	for name, text := range cfgs {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			for _, self := range cfg.Nodes() {
				shared := sharedRanges(cfg, self.ID)
				hashes := []uint32{0, 1, ^uint32(0), ^uint32(0) - 1}
				for _, b := range cfg.Active.Ring.Boundaries() {
					hashes = append(hashes, b, b-1, b+1)
				}
				for range 20000 {
					hashes = append(hashes, r.Uint32())
				}
				for _, h := range hashes {
					replicas := cfg.ReplicasOfHash(nil, h)
					selfIn := slices.ContainsFunc(replicas, func(n config.Node) bool { return n.ID == self.ID })
					for _, peer := range cfg.Nodes() {
						if peer.ID == self.ID {
							continue
						}
						peerIn := slices.ContainsFunc(replicas, func(n config.Node) bool { return n.ID == peer.ID })
						in := slices.ContainsFunc(shared[peer.ID], func(r hashRange) bool { return r.lo <= h && h <= r.hi })
						if in != (selfIn && peerIn) {
							t.Fatalf("%s–%s at hash %#x: in shared ranges %v, both replicas %v", self.ID, peer.ID, h, in, selfIn && peerIn)
						}
					}
				}
				for peer, rs := range shared {
					for i := 1; i < len(rs); i++ {
						if rs[i].lo <= rs[i-1].hi {
							t.Fatalf("%s–%s ranges overlap or are out of order: %v %v", self.ID, peer, rs[i-1], rs[i])
						}
					}
				}
			}
		})
	}
}
