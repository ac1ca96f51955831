package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFrozenNodeCostsOneTimeoutThenIsSkipped freezes a node with SIGSTOP (it
// keeps its connections open but answers nothing, like a paused host) and
// writes and reads through the proxy: the first requests that meet the
// frozen node cost at most about one request timeout (a write whose first
// attempt went to it answers 503, its fate unknown, rather than be applied
// twice), and once it is marked down requests are fast again. After
// SIGCONT it catches up.
func TestFrozenNodeCostsOneTimeoutThenIsSkipped(t *testing.T) {
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
	unknown, acked := 0, ""
	for i := range 60 {
		k := fmt.Sprintf("/values/frozen%d", i)
		start := time.Now()
		code, _, body, err := httpDo(ctx, "POST", c.base+k, []byte("v"), nil)
		switch {
		case err == nil && code == 200:
			acked = k
			code, _, _, err = httpDo(ctx, "GET", c.base+k, nil, nil)
			if err != nil || code != 200 {
				t.Fatalf("GET %s with n3 frozen: %d %v", k, code, err)
			}
		case err == nil && code == 503 && strings.Contains(string(body), "may or may not have been applied"):
			// The proxy's first attempt went to the frozen n3, which may
			// still carry it out: it is not sent to a second node, which
			// would apply it twice (docs/contract-notes.md). Once.
			unknown++
		default:
			t.Fatalf("POST %s with n3 frozen: %d %v %s", k, code, err, body)
		}
		lat = append(lat, time.Since(start))
	}
	if unknown > 1 {
		t.Errorf("%d writes met the frozen node and answered that their fate is unknown; want at most the first", unknown)
	}
	worst := slices.Max(lat)
	slices.Sort(lat)
	median := lat[len(lat)/2]
	t.Logf("POST+GET with n3 frozen: median %v, worst %v", median, worst)
	// One timeout of the proxy's attempt at n3 (timeout + 10%), plus one
	// of a coordinator waiting for n3 at most, with slack for a busy machine.
	if worst > 2*timeout+600*time.Millisecond {
		t.Errorf("worst POST+GET took %v with a %v request timeout", worst, timeout)
	}
	if median > 100*time.Millisecond {
		t.Errorf("median POST+GET took %v: the frozen node is not being skipped", median)
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
