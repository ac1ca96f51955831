package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/takodb/tako/internal/config"
)

// diskNode is a node of a test cluster whose store lives on a file system
// the test controls.
type diskNode struct {
	n    *Node
	base string // its HTTP API's base URL
	done chan error
	stop context.CancelFunc
}

// startDiskCluster runs one bucket of the given nodes (every key on all of
// them, writes need all of them), each with its store on fss[id], and
// waits until they serve and have finished recovering.
func startDiskCluster(t *testing.T, fss map[string]vfs.FS, ids ...string) map[string]*diskNode {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "active_deployment: test\ndeployments:\n  test:\n    write_quorum: all\n    hash:\n      buckets_per_key: 1\n    buckets:\n      b1:\n")
	for _, id := range ids {
		ports := freeLoopbackPorts(t, 2)
		fmt.Fprintf(&b, "        %s: [127.0.0.1, %d, %d]\n", id, ports[0], ports[1])
	}
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*diskNode{}
	for _, id := range ids {
		n, err := New(Options{ID: id, Config: cfg, DataDir: t.TempDir(), Logger: testLogger(t), MinFreeBytes: 1 << 20, FS: fss[id]})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		d := &diskNode{n: n, done: make(chan error, 1), stop: cancel}
		self, _, _ := cfg.Node(id)
		d.base = "http://" + self.HTTPAddr()
		go func() { d.done <- n.Run(ctx) }()
		nodes[id] = d
	}
	t.Cleanup(func() {
		for _, d := range nodes {
			d.stop()
			<-d.done
		}
	})
	waitFor(t, "the nodes to serve and recover", func() bool {
		for _, d := range nodes {
			if d.n.Recovering() || d.n.HTTPAddr() == nil {
				return false
			}
		}
		return true
	})
	return nodes
}

// post writes value under key through base, and returns the status and body.
func post(t *testing.T, base, key, value string) (int, string) {
	t.Helper()
	resp, err := http.Post(base+"/values/"+key, "application/octet-stream", strings.NewReader(value))
	if err != nil {
		t.Fatalf("POST %s: %v", key, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// get reads key through base, and returns the status and body.
func get(t *testing.T, base, key string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/values/" + key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFullDiskAnswers507AndResumes: a replica whose disk is nearly full
// refuses writes with CodeInsufficientStorage, so a write that needs it
// answers 507 with the reason, on the node whose disk is full and on the
// other; reads keep working; once space is back, writes succeed again
// without a restart.
func TestFullDiskAnswers507AndResumes(t *testing.T) {
	full := vfs.NewMem()
	setFree := func(free uint64) {
		full.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: free, TotalBytes: 1 << 30, UsedBytes: 1<<30 - free})
	}
	setFree(512 << 20)
	other := vfs.NewMem()
	other.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 512 << 20, TotalBytes: 1 << 30, UsedBytes: 512 << 20})
	nodes := startDiskCluster(t, map[string]vfs.FS{"n1": other, "n2": full}, "n1", "n2")

	if code, body := post(t, nodes["n1"].base, "before", "v1"); code != 200 {
		t.Fatalf("a write with room: %d %s", code, body)
	}
	setFree(512 << 10) // below the 1 MiB reserve
	time.Sleep(150 * time.Millisecond)
	for _, via := range []string{"n1", "n2"} {
		code, body := post(t, nodes[via].base, "during", "v2")
		if code != http.StatusInsufficientStorage || !strings.Contains(body, "reserve") {
			t.Errorf("a write through %s while n2's disk is full: %d %q, want 507 with the reason", via, code, body)
		}
		if code, body := get(t, nodes[via].base, "before"); code != 200 || body != "v1" {
			t.Errorf("a read through %s while n2's disk is full: %d %q, want 200 v1", via, code, body)
		}
	}
	if got := nodes["n2"].n.store.Stats(); !got.LowSpace || got.WritesRefused == 0 {
		t.Errorf("n2's store: %+v, want LowSpace and refused writes", got)
	}

	setFree(512 << 20)
	waitFor(t, "writes to be accepted again", func() bool {
		code, _ := post(t, nodes["n2"].base, "after", "v3")
		return code == 200
	})
	if code, body := get(t, nodes["n1"].base, "after"); code != 200 || body != "v3" {
		t.Errorf("a read of the write after space came back: %d %q", code, body)
	}
}

// syncFault fails every sync of a write-ahead log while it is on.
type syncFault struct{ on atomic.Bool }

func (f *syncFault) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if f.on.Load() && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
	}
	return nil
}

func (f *syncFault) String() string { return "sync fault" }

// TestFailedSyncStopsTheNode: when a sync of the write-ahead log fails,
// the write that needed it is not acknowledged (an error, not 200), and
// the node stops: Run returns an error wrapping ErrStoreFailed that says
// what to do.
func TestFailedSyncStopsTheNode(t *testing.T) {
	fault := &syncFault{}
	nodes := startDiskCluster(t, map[string]vfs.FS{"n1": errorfs.Wrap(vfs.NewMem(), fault)}, "n1")
	d := nodes["n1"]
	if code, body := post(t, d.base, "before", "v1"); code != 200 {
		t.Fatalf("a write before the fault: %d %s", code, body)
	}
	fault.on.Store(true)
	if code, body := post(t, d.base, "during", "v2"); code == 200 || code < 500 {
		t.Errorf("a write whose sync failed: %d %q, want a 5xx", code, body)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		if !errors.Is(err, ErrStoreFailed) || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), "start the node again") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Run = %q, want one line wrapping ErrStoreFailed with the cause and what to do", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not stop after its store failed")
	}
	if _, err := http.Get(d.base + "/health"); err == nil {
		t.Error("the node still answers after it stopped")
	}
}
