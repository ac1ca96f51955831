package node

import (
	"context"
	"errors"
	"fmt"
	"github.com/takodb/tako/internal/httpapi"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/store"
)

// testCluster is several Nodes in this process, each with its own store on
// disk and its own loopback ports, talking the binary protocol.
type testCluster struct {
	cfg    *config.Config
	nodes  map[string]*Node
	cancel map[string]context.CancelFunc
	done   map[string]chan error
	dirs   map[string]string
}

// startCluster runs the nodes of a configuration made of the given buckets
// (bucket name → node ids) with buckets_per_key bpk and the extra deployment
// settings.
func startCluster(t testing.TB, buckets [][]string, bpk int, extra string) *testCluster {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "active_deployment: test\ndeployments:\n  test:\n%s    hash:\n      buckets_per_key: %d\n    buckets:\n", extra, bpk)
	for i, ids := range buckets {
		fmt.Fprintf(&b, "      b%d:\n", i+1)
		for _, id := range ids {
			ports := freeLoopbackPorts(t, 2)
			fmt.Fprintf(&b, "        %s: [127.0.0.1, %d, %d]\n", id, ports[0], ports[1])
		}
	}
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{cfg: cfg, nodes: map[string]*Node{}, cancel: map[string]context.CancelFunc{}, done: map[string]chan error{}, dirs: map[string]string{}}
	for _, nd := range cfg.Nodes() {
		c.dirs[nd.ID] = t.TempDir()
		c.start(t, nd.ID)
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(t, id)
		}
	})
	// Every node starts with an empty store, so it recovers first: a quick
	// repair pass with its peers.
	waitFor(t, "the new nodes to finish recovering", func() bool {
		for _, n := range c.nodes {
			if n.Recovering() {
				return false
			}
		}
		return true
	})
	return c
}

// handedOut remembers every port freeLoopbackPorts returned, so that it
// never returns one twice.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

func freeLoopbackPorts(t testing.TB, n int) []int {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if port := ln.Addr().(*net.TCPAddr).Port; !handedOut[port] {
			handedOut[port] = true
			ports = append(ports, port)
		}
	}
	return ports
}

func (c *testCluster) start(t testing.TB, id string) {
	t.Helper()
	n, err := New(Options{ID: id, Config: c.cfg, DataDir: c.dirs[id], Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); n.BinaryAddr() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node %s did not bind its ports", id)
		}
	}
	c.nodes[id], c.cancel[id], c.done[id] = n, cancel, done
}

func (c *testCluster) stop(t testing.TB, id string) {
	t.Helper()
	if c.nodes[id] == nil {
		return
	}
	c.cancel[id]()
	if err := <-c.done[id]; err != nil {
		t.Errorf("node %s: %v", id, err)
	}
	delete(c.nodes, id)
}

// waitOnEveryNode waits until every running node's own store holds a
// record of key.
func (c *testCluster) waitOnEveryNode(t *testing.T, key string) {
	t.Helper()
	waitFor(t, key+" on every node", func() bool {
		for id := range c.nodes {
			if _, found := c.localRecord(t, id, key); !found {
				return false
			}
		}
		return true
	})
}

// localRecord reads a node's own store, bypassing coordination.
func (c *testCluster) localRecord(t *testing.T, id string, key string) (store.Record, bool) {
	t.Helper()
	rec, err := c.nodes[id].store.Get(context.Background(), []byte(key))
	if errors.Is(err, store.ErrNotFound) {
		return store.Record{}, false
	}
	if err != nil {
		t.Fatalf("node %s local get: %v", id, err)
	}
	return rec, true
}

func (c *testCluster) replicaIDs(key string) []string {
	var ids []string
	for _, nd := range c.cfg.Replicas(nil, []byte(key)) {
		ids = append(ids, nd.ID)
	}
	return ids
}

func TestWriteReachesEveryReplica(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}}, 2, "")
	ctx := context.Background()
	for i := range 50 {
		key := fmt.Sprintf("key-%d", i)
		coord := c.nodes[fmt.Sprintf("n%d", i%6+1)]
		res, err := coord.Put(ctx, []byte(key), []byte("v"+key), 0, httpapi.Expiry{})
		if err != nil || res.Superseded {
			t.Fatalf("Put %s via %s: %+v %v", key, coord.id, res, err)
		}
	}
	// The quorum answered; the rest of the replicas get the write within
	// the request timeout.
	time.Sleep(200 * time.Millisecond)
	for i := range 50 {
		key := fmt.Sprintf("key-%d", i)
		replicas := c.replicaIDs(key)
		if len(replicas) != 4 {
			t.Fatalf("%s has %d replicas, want 4", key, len(replicas))
		}
		for _, id := range replicas {
			rec, found := c.localRecord(t, id, key)
			if !found || string(rec.Value) != "v"+key {
				t.Errorf("%s not on replica %s: %+v %v", key, id, rec, found)
			}
		}
		for id := range c.nodes {
			if !contains(replicas, id) {
				if _, found := c.localRecord(t, id, key); found {
					t.Errorf("%s stored on %s, which is not a replica", key, id)
				}
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestReadRepairsStaleAndMissingReplicas(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    read_quorum: all\n")
	ctx := context.Background()
	key := []byte("k")
	// Plant different versions directly in the stores: n1 newest, n2 old,
	// n3 nothing.
	newest := store.Record{Timestamp: 2000, Value: []byte("new")}
	if _, err := c.nodes["n1"].local.Put(ctx, key, newest); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes["n2"].local.Put(ctx, key, store.Record{Timestamp: 1000, Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	v, err := c.nodes["n3"].Get(ctx, key)
	if err != nil || string(v.Value) != "new" || v.Timestamp != 2000 {
		t.Fatalf("Get via n3: %+v %v, want the newest", v, err)
	}
	waitFor(t, "read repair", func() bool {
		for _, id := range []string{"n1", "n2", "n3"} {
			rec, found := c.localRecord(t, id, "k")
			if !found || store.Compare(rec, newest) != 0 {
				return false
			}
		}
		return true
	})
}

// TestRepairCarriesTheExpiry: read repair and background repair copy a
// value's expiry with it, so every replica agrees on when it expires.
func TestRepairCarriesTheExpiry(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    read_quorum: all\n    background_repair_interval: 1s\n")
	ctx := context.Background()
	expires := time.Now().Add(time.Hour).UnixMicro()
	read := store.Record{Timestamp: 2000, Value: []byte("read"), ExpiresAt: expires}
	background := store.Record{Timestamp: 3000, Value: []byte("background"), ExpiresAt: expires + 1}
	// n1 holds both; n2 a permanent older version of the first; n3 nothing.
	for key, rec := range map[string]store.Record{"read": read, "background": background} {
		if _, err := c.nodes["n1"].local.Put(ctx, []byte(key), rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.nodes["n2"].local.Put(ctx, []byte("read"), store.Record{Timestamp: 1000, Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	v, err := c.nodes["n3"].Get(ctx, []byte("read"))
	if err != nil || string(v.Value) != "read" || v.ExpiresAt != expires {
		t.Fatalf("Get via n3: %+v %v, want the newest, expiring at %d", v, err, expires)
	}
	for key, want := range map[string]store.Record{"read": read, "background": background} {
		waitFor(t, key+" repair", func() bool {
			for _, id := range []string{"n1", "n2", "n3"} {
				rec, found := c.localRecord(t, id, key)
				if !found || store.Compare(rec, want) != 0 || rec.ExpiresAt != want.ExpiresAt {
					return false
				}
			}
			return true
		})
	}
}

func TestEqualTimestampsWithDifferentBytesConverge(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "    read_quorum: all\n")
	ctx := context.Background()
	key := []byte("tie")
	a := store.Record{Timestamp: 5000, Value: []byte("aaa")}
	b := store.Record{Timestamp: 5000, Value: []byte("bbb")}
	c.nodes["n1"].local.Put(ctx, key, a)
	c.nodes["n2"].local.Put(ctx, key, b)
	want := a
	if store.Compare(b, a) > 0 {
		want = b
	}
	for _, via := range []string{"n1", "n2"} {
		v, err := c.nodes[via].Get(ctx, key)
		if err != nil || string(v.Value) != string(want.Value) {
			t.Fatalf("Get via %s: %q %v, want %q", via, v.Value, err, want.Value)
		}
	}
	waitFor(t, "convergence", func() bool {
		r1, _ := c.localRecord(t, "n1", "tie")
		r2, _ := c.localRecord(t, "n2", "tie")
		return store.Compare(r1, want) == 0 && store.Compare(r2, want) == 0
	})
}

func TestDownReplicaCostsOneTimeoutThenIsSkipped(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    request_timeout: 500ms\n")
	ctx := context.Background()
	c.stop(t, "n3")
	// A stopped node refuses connections: the pool fails fast. Either way,
	// a quorum of 2 of 3 answers.
	for i := range 20 {
		start := time.Now()
		if _, err := c.nodes["n1"].Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"), 0, httpapi.Expiry{}); err != nil {
			t.Fatalf("Put with one replica down: %v", err)
		}
		if d := time.Since(start); d > 600*time.Millisecond {
			t.Fatalf("Put %d took %v with one replica down", i, d)
		}
	}
	// A refused connection fails fast by itself, so the peer is not marked
	// down (that is for peers that time out: see the frozen-node test in
	// tests/e2e, and TestTimingOutPeerIsMarkedDown).
	// With two replicas down and quorum 2 of 3, writes fail fast with 503.
	c.stop(t, "n2")
	start := time.Now()
	_, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{})
	if err == nil {
		t.Fatal("Put succeeded with 2 of 3 replicas down")
	}
	if d := time.Since(start); d > 600*time.Millisecond {
		t.Fatalf("failing Put took %v", d)
	}
	// n3 comes back: it is used again once a probe answers.
	c.start(t, "n3")
	waitFor(t, "n3 back up", func() bool {
		_, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{})
		return err == nil
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestNodeRemovedFromTheConfigurationStopsTakingPart(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	ctx := context.Background()
	without, err := config.Parse([]byte(strings.Replace(mustJSON(t, c.cfg), `"b3":{"n3":`, `"b3":{"n9":`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		n.SetConfig(without, 2)
	}
	n3 := c.nodes["n3"]
	if n3.Ready() {
		t.Fatal("n3 is ready without being in the configuration")
	}
	resp, err := http.Get("http://" + n3.HTTPAddr().String() + "/values/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("GET on a removed node: %d, want 503", resp.StatusCode)
	}
	// Writes through n1 no longer go to n3.
	if _, err := c.nodes["n1"].Put(ctx, []byte("after"), []byte("v"), 0, httpapi.Expiry{}); err == nil {
		// n9 does not exist, so quorum 2 of 3 comes from n1 and n2.
		time.Sleep(100 * time.Millisecond)
		if _, found, _ := n3.local.Get(ctx, []byte("after")); found {
			t.Fatal("a removed node still received a write")
		}
	} else {
		t.Fatalf("Put after removing n3: %v", err)
	}
	// Named again, it serves again.
	for _, n := range c.nodes {
		n.SetConfig(c.cfg, 3)
	}
	if !n3.Ready() {
		t.Fatal("n3 not ready after being named again")
	}
	if _, err := n3.Get(ctx, []byte("after")); err != nil {
		t.Fatalf("Get via n3 after it came back: %v", err)
	}
}

func mustJSON(t *testing.T, c *config.Config) string {
	t.Helper()
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMigrationWriteNeedsAQuorumInBothDeployments: during a migration a
// write is acknowledged only once a quorum of the key's active replicas and
// a quorum of its target replicas hold it.
func TestMigrationWriteNeedsAQuorumInBothDeployments(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}, {"n4"}}, 2, "    request_timeout: 300ms\n")
	// Rewrite the configuration: active = b1, b2; target = b3, b4.
	ports := map[string]config.Node{}
	for _, nd := range c.cfg.Nodes() {
		ports[nd.ID] = nd
	}
	line := func(id string) string {
		nd := ports[id]
		return fmt.Sprintf("        %s: [127.0.0.1, %d, %d]\n", id, nd.HTTPPort, nd.BinaryPort)
	}
	cfg, err := config.Parse([]byte("active_deployment: old\ntarget_deployment: new\ndeployments:\n" +
		"  old:\n    request_timeout: 300ms\n    hash: {buckets_per_key: 2}\n    buckets:\n      b1:\n" + line("n1") + "      b2:\n" + line("n2") +
		"  new:\n    request_timeout: 300ms\n    hash: {buckets_per_key: 2}\n    buckets:\n      b3:\n" + line("n3") + "      b4:\n" + line("n4")))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		n.SetConfig(cfg, 2)
	}
	ctx := context.Background()
	if _, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatalf("Put with every replica up: %v", err)
	}
	waitFor(t, "the write on every replica of both deployments", func() bool {
		for _, id := range []string{"n1", "n2", "n3", "n4"} {
			if _, found := c.localRecord(t, id, "k"); !found {
				return false
			}
		}
		return true
	})
	// With one of the target's two replicas down, the target's quorum (2 of
	// 2) cannot be met: the write is refused although the active one is.
	c.stop(t, "n4")
	if _, err := c.nodes["n1"].Put(ctx, []byte("k2"), []byte("v"), 0, httpapi.Expiry{}); err == nil {
		t.Fatal("a write was acknowledged without a quorum of the target deployment")
	}
	// A read needs the read quorum of both deployments (the target's
	// nodes that learnt of its promotion acknowledge writes on the target
	// alone), and puts what it returns on the target's settle count too
	// (2 of 2 here), so that the reads after the promotion see it: with
	// n4 down it cannot.
	if v, err := c.nodes["n2"].Get(ctx, []byte("k")); err == nil {
		t.Fatalf("a read returned %q though the target (n4 down) could not take it", v.Value)
	}
	c.start(t, "n4")
	waitFor(t, "a read with the active deployment's quorum and the target up", func() bool {
		v, err := c.nodes["n2"].Get(ctx, []byte("k"))
		return err == nil && string(v.Value) == "v"
	})
	c.stop(t, "n1")
	if _, err := c.nodes["n2"].Get(ctx, []byte("k")); err == nil {
		t.Fatal("a read succeeded without the active deployment's read quorum (2 of 2, n1 down)")
	}
}

// TestTimingOutPeerIsMarkedDown: a peer that does not answer within the
// request timeout is marked down, and skipped at once afterwards.
func TestTimingOutPeerIsMarkedDown(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    request_timeout: 200ms\n")
	// A listener that accepts and never answers stands in for n3, frozen.
	c.stop(t, "n3")
	n3, _, _ := c.cfg.Node("n3")
	ln, err := net.Listen("tcp", n3.BinaryAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	ctx := context.Background()
	start := time.Now()
	if _, err := c.nodes["n1"].Put(ctx, []byte("a"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	// The quorum (2 of 3) answered without n3: the write did not wait.
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Fatalf("Put waited %v for a frozen replica it did not need", d)
	}
	// n3 is marked down once a call to it times out. (The first call may
	// have failed fast instead, if a dial to the stopped n3 put its
	// address in backoff just before: keep writing.)
	waitFor(t, "n3 marked down", func() bool {
		if up, _ := c.nodes["n1"].peers.Peer("n3").Up(); !up {
			return true
		}
		c.nodes["n1"].Put(ctx, []byte("a"), []byte("v"), 0, httpapi.Expiry{})
		return false
	})
	// Reads need only 2 of 3 as well; with n2 stopped they need n3. While
	// it is marked down, one request at a time tries it anyway (it might
	// be back) and fails within one timeout; the others wait for it
	// only health.UrgentPatience (a quarter of the timeout here), then
	// fail.
	c.stop(t, "n2")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slow int
	for range 10 {
		wg.Go(func() {
			start := time.Now()
			if _, err := c.nodes["n1"].Get(ctx, []byte("a")); err == nil {
				t.Error("read quorum met with n2 stopped and n3 frozen")
			}
			d := time.Since(start)
			if d > 150*time.Millisecond {
				mu.Lock()
				slow++
				mu.Unlock()
			}
			if d > 400*time.Millisecond {
				t.Errorf("a read took %v, more than the request timeout (200ms) and a margin", d)
			}
		})
	}
	wg.Wait()
	if slow > 1 {
		t.Errorf("%d of 10 concurrent reads waited for the frozen peer marked down, want at most 1", slow)
	}
}

// TestPeersMarkedDownAreAskedWhenTheQuorumNeedsThem: a node that marked
// its peers down (say, while it was cut off the network) still serves once
// they answer again, without waiting for its probes: when the peers it
// believes up cannot make the quorum, it asks the others too.
func TestPeersMarkedDownAreAskedWhenTheQuorumNeedsThem(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	n1 := c.nodes["n1"]
	ctx := context.Background()
	// The nodes start empty, so they recover first, calling each other:
	// a call that answers marks a peer up, so wait until they are done.
	for _, n := range c.nodes {
		waitFor(t, "the nodes to finish recovering", func() bool { return !n.Recovering() })
	}
	for _, id := range []string{"n2", "n3"} {
		p := n1.peers.Peer(id)
		for range 10 { // long backoff: no probe is due soon
			p.Failure()
		}
	}
	if _, err := n1.Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatalf("write with both peers marked down but up: %v", err)
	}
	if v, err := n1.Get(ctx, []byte("k")); err != nil || string(v.Value) != "v" {
		t.Fatalf("read with both peers marked down but up: %+v %v", v, err)
	}
	// Both were asked; the slower answer may come after the quorum's.
	waitFor(t, "n2 and n3 to be marked up again", func() bool {
		up2, _ := n1.peers.Peer("n2").Up()
		up3, _ := n1.peers.Peer("n3").Up()
		return up2 && up3
	})
	// The calls that the requests above left in flight (answers after the
	// quorum's, a write's second phase) end first: wait until the calls
	// to n2 stand still.
	calls := func() float64 {
		c := 0.0
		for _, r := range []string{"ok", "failed", "error"} {
			c += testutil.ToFloat64(n1.metrics.peerCalls.WithLabelValues("n2", r))
		}
		return c
	}
	for last := -1.0; calls() != last; time.Sleep(200 * time.Millisecond) {
		last = calls()
	}
	// With one peer marked down, the other makes the quorum: the one
	// marked down is skipped, not waited for.
	n1.peers.Peer("n2").Failure()
	for range 10 {
		n1.peers.Peer("n2").Failure()
	}
	before := calls()
	if _, err := n1.Put(ctx, []byte("k2"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	if up, _ := n1.peers.Peer("n2").Up(); up || calls() != before {
		t.Errorf("n2 was asked although n1 and n3 made the quorum (%v calls to n2 before the write, %v after)", before, calls())
	}
}

// TestPeerUpMetricShowsAStoppedPeer: a peer that refuses connections is
// not marked down (calls to it fail fast by themselves), but tako_peer_up
// shows it down to the operator, and up again once it serves.
func TestPeerUpMetricShowsAStoppedPeer(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	n1 := c.nodes["n1"]
	ctx := context.Background()
	peerUp := func() string {
		resp, err := http.Get("http://" + n1.HTTPAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(line, `tako_peer_up{peer="n3"}`) {
				return strings.TrimSpace(strings.TrimPrefix(line, `tako_peer_up{peer="n3"}`))
			}
		}
		return "absent"
	}
	if _, err := n1.Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n3 up in n1's metrics", func() bool { return peerUp() == "1" })
	c.stop(t, "n3")
	waitFor(t, "n3 down in n1's metrics", func() bool {
		n1.Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{}) // tries n3, which refuses
		return peerUp() == "0"
	})
	c.start(t, "n3")
	waitFor(t, "n3 up again in n1's metrics", func() bool {
		n1.Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{})
		return peerUp() == "1"
	})
}

// TestReadPutsWhatItReturnsOnAWriteQuorum: a read that returns a version
// held by fewer replicas than the write quorum (a write in progress, or
// one that failed half-way) writes it back to a write quorum before it
// answers, even with read_repair off, so that no later read can return an
// older version: reads never go back in time.
func TestReadPutsWhatItReturnsOnAWriteQuorum(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    read_repair: false\n")
	for _, n := range c.nodes {
		waitFor(t, "the nodes to finish recovering", func() bool { return !n.Recovering() })
	}
	ctx := context.Background()
	// A key on every node first: a node that restarts with an empty store
	// takes it for a lost disk and recovers (its reads then need both
	// other replicas: TestARecoveringReplicaAnswersOnlyWithEnoughOthers).
	if _, err := c.nodes["n1"].Put(ctx, []byte("other"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	c.waitOnEveryNode(t, "other")
	// Only n3 holds the version, as if its write failed after one replica.
	half := store.Record{Timestamp: time.Now().UnixMicro(), Value: []byte("half-written")}
	if _, err := c.nodes["n3"].store.Put(ctx, []byte("k"), half); err != nil {
		t.Fatal(err)
	}
	c.stop(t, "n2") // the read quorum (2 of 3) is then n1 and n3
	v, err := c.nodes["n1"].Get(ctx, []byte("k"))
	if err != nil || string(v.Value) != "half-written" {
		t.Fatalf("read with n1 and n3: %+v %v, want the version n3 holds", v, err)
	}
	// Before the read answered, n1 took the version: with n3 stopped now,
	// n1 and n2 (which never saw it) still return it, not "not found".
	if rec, found := c.localRecord(t, "n1", "k"); !found || store.Compare(rec, half) != 0 {
		t.Fatalf("n1 right after the read: %v %v, want the version it returned", rec, found)
	}
	c.start(t, "n2")
	c.stop(t, "n3")
	waitFor(t, "a read through n2 with n1 and n2", func() bool {
		v, err := c.nodes["n2"].Get(ctx, []byte("k"))
		return err == nil && string(v.Value) == "half-written"
	})
}

// TestClusterStampedWriteFollowsAVersionAhead: a write without a
// timestamp, to a key whose replicas hold a version stamped ahead of the
// clock (by a client's X-Timestamp, or a node whose clock runs ahead),
// is stamped above it at once: sent once, acknowledged, never 409, and
// the version it wrote is what reads return.
func TestClusterStampedWriteFollowsAVersionAhead(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	ctx := context.Background()
	ahead := time.Now().Add(3 * time.Second).UnixMicro()
	if _, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("ahead"), ahead, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	res, err := c.nodes["n2"].Put(ctx, []byte("k"), []byte("after"), 0, httpapi.Expiry{})
	if err != nil || res.Superseded || res.Timestamp <= ahead {
		t.Fatalf("a cluster-stamped write after a version ahead: %+v %v, want it stamped above %d", res, err, ahead)
	}
	v, err := c.nodes["n3"].Get(ctx, []byte("k"))
	if err != nil || string(v.Value) != "after" || v.Timestamp != res.Timestamp {
		t.Fatalf("read after: %+v %v", v, err)
	}
	if got := gathered(t, c.nodes["n2"].registry, "tako_coordinated_writes_total", "outcome", "superseded"); got != 0 {
		t.Errorf("%v writes superseded", got)
	}
}

// gathered returns the value of the counter name{label="value"} in reg,
// 0 when it has none.
func gathered(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
