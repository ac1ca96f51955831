package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// history is what a workload did: per key the last acknowledged value (each
// key has one writer, so acknowledgements are ordered), and the counts.
type history struct {
	mu    sync.Mutex
	acked map[string]int // key → sequence number of the last acknowledged write

	writes, writeFails, reads, readFails, stale atomic.Int64
}

// workload runs 4 writers and 4 readers through the proxy while fault runs,
// and checks every read against the acknowledged writes: a read may return
// the last acknowledged value or a newer one (a failed write may still have
// landed), never an older one.
func workload(t *testing.T, c *compose, name string, fault func()) *history {
	h := &history{acked: map[string]int{}}
	const keys = 400
	locks := make([]sync.Mutex, keys)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; ctx.Err() == nil; seq++ {
				i := (seq*4 + w) % keys
				k := fmt.Sprintf("%s/%d", name, i)
				locks[i].Lock()
				code, _, _ := c.do("POST", "/values/"+k, []byte(fmt.Sprintf("%d", seq)))
				if code == 200 {
					h.writes.Add(1)
					h.mu.Lock()
					h.acked[k] = seq
					h.mu.Unlock()
				} else {
					h.writeFails.Add(1)
				}
				locks[i].Unlock()
			}
		}()
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				i := (n*7 + r) % keys
				k := fmt.Sprintf("%s/%d", name, i)
				locks[i].Lock()
				h.mu.Lock()
				want, ok := h.acked[k]
				h.mu.Unlock()
				code, _, body := c.do("GET", "/values/"+k, nil)
				locks[i].Unlock()
				got, _ := strconv.Atoi(string(body))
				switch {
				case code == 404 && !ok:
					h.reads.Add(1)
				case code == 200 && got >= want:
					h.reads.Add(1)
				case code == 200 || code == 404:
					h.stale.Add(1)
					t.Errorf("%s: read %d (%d), last acknowledged %d", k, got, code, want)
				default:
					h.readFails.Add(1)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	fault()
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	// Nothing acknowledged is lost.
	lost := 0
	for k, want := range h.acked {
		code, _, body := c.do("GET", "/values/"+k, nil)
		got, _ := strconv.Atoi(string(body))
		if code != 200 || got < want {
			lost++
			if lost <= 5 {
				t.Errorf("%s: %d %q after the fault, last acknowledged %d", k, code, body, want)
			}
		}
	}
	ops := h.writes.Load() + h.writeFails.Load() + h.reads.Load() + h.readFails.Load()
	failed := h.writeFails.Load() + h.readFails.Load()
	t.Logf("%s: %d operations, %d writes acknowledged, %d failed, %d lost, %d stale", name, ops, h.writes.Load(), failed, lost, h.stale.Load())
	if lost > 0 || h.stale.Load() > 0 {
		t.Fatalf("%s: %d lost, %d stale", name, lost, h.stale.Load())
	}
	// Every key keeps a quorum of its replicas up through a one-node fault.
	if failed*100 > ops {
		t.Errorf("%s: %d of %d operations failed (more than 1%%)", name, failed, ops)
	}
	return h
}

// TestFaultsOnContainers injects, one after the other on one compose
// cluster, the faults of a single host: frozen (docker pause), cut off the
// network (docker network disconnect), and its volume lost.
func TestFaultsOnContainers(t *testing.T) {
	c := upCluster(t)
	network := c.project + "_default"
	t.Run("pause a node for 20 s", func(t *testing.T) {
		workload(t, c, "pause", func() {
			run(t, nil, "docker", "pause", c.container("tako-node-05"))
			time.Sleep(20 * time.Second)
			run(t, nil, "docker", "unpause", c.container("tako-node-05"))
		})
	})
	t.Run("cut a node off the network for 20 s", func(t *testing.T) {
		workload(t, c, "disconnect", func() {
			run(t, nil, "docker", "network", "disconnect", network, c.container("tako-node-07"))
			time.Sleep(20 * time.Second)
			run(t, nil, "docker", "network", "connect", "--alias", "tako-node-07", network, c.container("tako-node-07"))
		})
	})
	t.Run("lose a node's volume", func(t *testing.T) {
		workload(t, c, "volume", func() {
			c.compose("rm", "-s", "-f", "tako-node-09")
			run(t, nil, "docker", "volume", "rm", c.project+"_n9")
			c.compose("up", "-d", "--no-deps", "tako-node-09")
			// It comes back empty and recovers by background repair.
			deadline := time.Now().Add(60 * time.Second)
			for {
				out := c.compose("logs", "--no-color", "tako-node-09")
				if strings.Contains(out, "node recovered") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("tako-node-09 did not recover from its lost volume:\n%s", out)
				}
				time.Sleep(500 * time.Millisecond)
			}
		})
	})
}
