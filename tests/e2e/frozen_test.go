package e2e

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestFrozenNodeHoldsUpNoRequest freezes a node with SIGSTOP (it keeps its
// connections open but answers nothing, like a paused host) and writes and
// reads through the proxy. The proxy coordinates each request itself,
// sending it to every replica and answering once the quorum (2 of 3) has:
// the frozen node's answer is never needed, so no request waits for it
// (none takes a request timeout) and none fails. After SIGCONT it catches
// up.
func TestFrozenNodeHoldsUpNoRequest(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    request_timeout: 500ms\n")
	ctx := context.Background()
	// Warm the connections so that the frozen node has open ones.
	for i := range 30 {
		if code, _, _, err := httpDo(ctx, "POST", c.base+fmt.Sprintf("/values/warm%d", i), []byte("v"), nil); err != nil || code != 200 {
			t.Fatalf("warm-up: %d %v", code, err)
		}
	}
	n3 := c.nodes["n3"]
	if err := n3.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer n3.cmd.Process.Signal(syscall.SIGCONT)

	var lat []time.Duration
	acked := ""
	for i := range 60 {
		k := fmt.Sprintf("/values/frozen%d", i)
		start := time.Now()
		code, _, body, err := httpDo(ctx, "POST", c.base+k, []byte("v"), nil)
		if err != nil || code != 200 {
			t.Fatalf("POST %s with n3 frozen: %d %v %s", k, code, err, body)
		}
		acked = k
		code, _, body, err = httpDo(ctx, "GET", c.base+k, nil, nil)
		if err != nil || code != 200 {
			t.Fatalf("GET %s with n3 frozen: %d %v %s", k, code, err, body)
		}
		lat = append(lat, time.Since(start))
	}
	worst := slices.Max(lat)
	slices.Sort(lat)
	median := lat[len(lat)/2]
	t.Logf("POST+GET with n3 frozen: median %v, worst %v", median, worst)
	if worst >= timeout {
		t.Errorf("worst POST+GET took %v with a %v request timeout: a request waited for the frozen node", worst, timeout)
	}
	if median > 100*time.Millisecond {
		t.Errorf("median POST+GET took %v: the frozen node holds requests up", median)
	}

	n3.cmd.Process.Signal(syscall.SIGCONT)
	// Once it answers again, a read repairs it and it serves.
	waitFor(t, "n3 serving again", func() bool {
		code, _, body, err := httpDo(ctx, "GET", c.http["n3"]+acked, nil, nil)
		return err == nil && code == 200 && string(body) == "v"
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
