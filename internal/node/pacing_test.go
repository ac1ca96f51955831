package node

import (
	"context"
	"github.com/takodb/tako/internal/httpapi"
	"testing"
	"time"
)

// TestBackgroundYieldsToClients: repair and refill take repair_bandwidth
// while no client is served, a quarter of it while one is (a replica read
// or write within foregroundWindow), and all of it again once the clients
// are gone.
func TestBackgroundYieldsToClients(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "    repair_bandwidth: 64MiB/s\n")
	n := c.nodes["n1"]
	waitFor(t, "the nodes to recover", func() bool { return !n.Recovering() && !c.nodes["n2"].Recovering() })
	waitFor(t, "no client served for a while", func() bool { return !n.foreground.active() })
	if got := n.backgroundRate(); got != 64<<20 {
		t.Fatalf("rate with no client: %d, want %d", got, 64<<20)
	}
	if _, err := c.nodes["n2"].Put(context.Background(), []byte("k"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	if got := n.backgroundRate(); got != 16<<20 {
		t.Fatalf("rate right after a client's write: %d, want %d", got, 16<<20)
	}
	time.Sleep(foregroundWindow + 50*time.Millisecond)
	if got := n.backgroundRate(); got != 64<<20 {
		t.Fatalf("rate once the client is gone: %d, want %d", got, 64<<20)
	}
}
