package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/config"
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
