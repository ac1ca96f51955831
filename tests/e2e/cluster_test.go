package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/takodb/tako/internal/testproc"
)

// cluster is tako-node processes of one configuration, and a tako-proxy.
type cluster struct {
	t      *testing.T
	dir    string
	cfg    string
	nodes  map[string]*process
	http   map[string]string // node id → base URL
	binary map[string]string // node id → binary address
	proxy  *process
	base   string // the proxy's base URL
}

// startCluster writes a configuration of buckets (each a list of node ids)
// on free loopback ports and starts every node and a proxy.
func startCluster(t *testing.T, buckets [][]string, bpk int, extra string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*process{}, http: map[string]string{}, binary: map[string]string{}}
	var b strings.Builder
	fmt.Fprintf(&b, "active_deployment: test\ndeployments:\n  test:\n    read_repair: yes\n%s    hash:\n      buckets_per_key: %d\n    buckets:\n", extra, bpk)
	for i, ids := range buckets {
		fmt.Fprintf(&b, "      b%d:\n", i+1)
		for _, id := range ids {
			p := freePorts(t, 2)
			fmt.Fprintf(&b, "        %s: [127.0.0.1, %d, %d]\n", id, p[0], p[1])
			c.http[id] = fmt.Sprintf("http://127.0.0.1:%d", p[0])
			c.binary[id] = fmt.Sprintf("127.0.0.1:%d", p[1])
		}
	}
	c.cfg = writeFile(t, c.dir, "cluster.yaml", b.String())
	for id := range c.http {
		c.startNode(id)
	}
	for id, p := range c.nodes {
		waitHealthy(t, p, c.http[id])
	}
	port := freePorts(t, 1)[0]
	c.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	c.proxy = start(t, c.dir, "tako-proxy", "-cfg", c.cfg, "-p", fmt.Sprint(port), "-b", "127.0.0.1")
	waitHealthy(t, c.proxy, c.base)
	return c
}

func (c *cluster) startNode(id string) {
	c.nodes[id] = start(c.t, c.dir, "tako-node", "-id", id, "-cfg", c.cfg, "-v", c.dir)
}

func (c *cluster) restartNode(id string) {
	c.startNode(id)
	waitHealthy(c.t, c.nodes[id], c.http[id])
}

func (c *cluster) dataDir(id string) string { return filepath.Join(c.dir, "data", id) }

// randomValue returns a value of 1 B to 64 KiB, sizes spread evenly on a
// log scale, whose bytes depend on seed.
func randomValue(r *rand.Rand) []byte {
	size := 1 << r.IntN(17) // 1 B .. 64 KiB
	size = min(1+r.IntN(size), 64<<10)
	v := make([]byte, size)
	for i := range v {
		v[i] = byte(r.UintN(256))
	}
	return v
}

// TestClusterKeepsEverythingThroughLostDisks is the original README's test
// run, automated: load values through the proxy, read them back; stop every
// node, delete the data of a whole bucket (n1, n2) and of n5 and n10,
// restart, and read everything again, with the default quorums. The wiped
// nodes start empty, so they recover: they read the keys they lack through
// from the other replicas and refill by streaming, and /health says "ok:
// recovering" (waitHealthy waits for "ok"; TestDisasterDrillReadsEveryFileAtOnce
// reads at once instead).
func TestClusterKeepsEverythingThroughLostDisks(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7", "n8"}, {"n9", "n10"}}, 2, "")
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	const count = 2000
	values := make(map[string][]byte, count)
	var mu sync.Mutex
	var wg sync.WaitGroup
	keys := make(chan string)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				mu.Lock()
				v := values[k]
				mu.Unlock()
				code, _, body, err := httpDo(ctx, "POST", c.base+"/values/"+k, v, nil)
				if err != nil || code != 200 {
					t.Errorf("POST %s: %d %v %s", k, code, err, body)
				}
			}
		}()
	}
	total := 0
	for i := range count {
		k := fmt.Sprintf("key/%04d", i)
		v := randomValue(r)
		total += len(v)
		mu.Lock()
		values[k] = v
		mu.Unlock()
		keys <- k
	}
	close(keys)
	wg.Wait()
	t.Logf("loaded %d values, %d bytes in all", count, total)
	readAll := func(stage string) {
		t.Helper()
		bad := 0
		for k, v := range values {
			code, _, body, err := httpDo(ctx, "GET", c.base+"/values/"+k, nil, nil)
			if err != nil || code != 200 || !bytes.Equal(body, v) {
				bad++
				if bad <= 5 {
					t.Errorf("%s: GET %s: %d %v, %d bytes, want %d", stage, k, code, err, len(body), len(v))
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d of %d values wrong or missing", stage, bad, len(values))
		}
	}
	readAll("after loading")

	for id, p := range c.nodes {
		if err := p.stop(t); err != nil {
			t.Fatalf("stopping %s: %v", id, err)
		}
	}
	for _, id := range []string{"n1", "n2", "n5", "n10"} {
		if err := os.RemoveAll(c.dataDir(id)); err != nil {
			t.Fatal(err)
		}
	}
	for id := range c.http {
		c.startNode(id)
	}
	for id, p := range c.nodes {
		waitHealthy(t, p, c.http[id])
	}
	readAll("after losing the disks of n1, n2, n5 and n10")
}

// TestClusterKill9UnderLoadLosesNoAcknowledgedWrite kills one node with
// SIGKILL while 8 writers load the cluster through the proxy.
func TestClusterKill9UnderLoadLosesNoAcknowledgedWrite(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7", "n8"}, {"n9", "n10"}}, 2, "")
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	acked := map[string]string{}
	var attempts, failures atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("w%d-%d", w, i)
				v := fmt.Sprintf("%s=%d", k, i*7919)
				code, _, _, err := httpDo(context.Background(), "POST", c.base+"/values/"+k, []byte(v), nil)
				attempts.Add(1)
				if err != nil || code != 200 {
					failures.Add(1)
					continue
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	c.nodes["n3"].kill()
	killedAt := attempts.Load()
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d writes, %d after the kill, %d failed, %d acknowledged", attempts.Load(), attempts.Load()-killedAt, failures.Load(), len(acked))
	if f, a := failures.Load(), attempts.Load(); f*100 > a {
		t.Errorf("%d of %d writes failed: more than 1%%", f, a)
	}
	c.restartNode("n3")
	lost := 0
	for k, v := range acked {
		code, _, body, err := httpDo(context.Background(), "GET", c.base+"/values/"+k, nil, nil)
		if err != nil || code != 200 || string(body) != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged %s: %d %v %q", k, code, err, body)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}

// TestEveryNodeServesTheWholeCluster writes through one node's HTTP port and
// reads through every other node and the proxy.
func TestEveryNodeServesTheWholeCluster(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}}, 2, "")
	ctx := context.Background()
	for i := range 20 {
		k := fmt.Sprintf("via-n1/%d", i)
		if code, _, body, err := httpDo(ctx, "POST", c.http["n1"]+"/values/"+k, []byte("v"+k), nil); err != nil || code != 200 {
			t.Fatalf("POST via n1: %d %v %s", code, err, body)
		}
		urls := []string{c.base}
		for id, u := range c.http {
			if id != "n1" {
				urls = append(urls, u)
			}
		}
		for _, u := range urls {
			code, _, body, err := httpDo(ctx, "GET", u+"/values/"+k, nil, nil)
			if err != nil || code != 200 || string(body) != "v"+k {
				t.Errorf("GET %s via %s: %d %v %q", k, u, code, err, body)
			}
		}
	}
	// A delete through the proxy is seen by every node.
	if code, _, _, _ := httpDo(ctx, "DELETE", c.base+"/values/via-n1/0", nil, nil); code/100 != 2 {
		t.Fatalf("DELETE via proxy: %d", code)
	}
	for id, u := range c.http {
		if code, _, _, _ := httpDo(ctx, "GET", u+"/values/via-n1/0", nil, nil); code != 404 {
			t.Errorf("GET deleted key via %s: %d", id, code)
		}
	}
}

// TestBinaryPortShrugsOffGarbage sends garbage, a truncated frame and a
// plain HTTP request to a node's binary port: the node closes those
// connections and keeps serving.
func TestBinaryPortShrugsOffGarbage(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	ctx := context.Background()
	inputs := map[string][]byte{
		"garbage":         bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64),
		"http":            []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"version 0":       []byte("TAKO\x00\x00\x00\x00"),
		"truncated frame": append([]byte("TAKO\x00\x01\x00\x00"), 0, 0, 0, 50, 0x01, 0, 0, 0),
		"huge length":     append([]byte("TAKO\x00\x01\x00\x00"), 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 1),
	}
	for name, in := range inputs {
		conn, err := net.Dial("tcp", c.binary["n1"])
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(in)
		if name == "truncated frame" {
			// The rest of the frame never comes; the node must not
			// wait for it forever, nor stop serving others meanwhile.
			conn.(*net.TCPConn).CloseWrite()
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		conn.Close()
		if err != nil {
			t.Errorf("%s: the node did not close the connection: %v", name, err)
		}
		k := "after-" + strings.ReplaceAll(name, " ", "-")
		if code, _, _, err := httpDo(ctx, "POST", c.base+"/values/"+k, []byte("ok"), nil); err != nil || code != 200 {
			t.Fatalf("after %s: POST %d %v", name, code, err)
		}
		if code, _, body, _ := httpDo(ctx, "GET", c.http["n1"]+"/values/"+k, nil, nil); code != 200 || string(body) != "ok" {
			t.Fatalf("after %s: GET via n1 %d %q", name, code, body)
		}
	}
}

// TestTakoClusterRunsAFileAndStopsEverything runs tako-cluster on a file
// with -p, uses it through the proxy, stops it with SIGTERM and checks that
// every process it started is gone.
func TestTakoClusterRunsAFileAndStopsEverything(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("active_deployment: d\ndeployments:\n  d:\n    hash:\n      buckets_per_key: 2\n    buckets:\n")
	var httpAddrs []string
	for i := 1; i <= 3; i++ {
		p := freePorts(t, 2)
		fmt.Fprintf(&b, "      b%d:\n        n%d: [127.0.0.1, %d, %d]\n", i, i, p[0], p[1])
		httpAddrs = append(httpAddrs, fmt.Sprintf("127.0.0.1:%d", p[0]), fmt.Sprintf("127.0.0.1:%d", p[1]))
	}
	cfg := writeFile(t, dir, "three.yaml", b.String())
	port := freePorts(t, 1)[0]
	tc := start(t, dir, "tako-cluster", cfg, "-p", fmt.Sprint(port), "-v", dir+"/var")
	base := fmt.Sprintf("http://localhost:%d", port)
	waitHealthy(t, tc, base)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(tc.output(), "Ctrl-C stops the cluster") {
		if time.Now().After(deadline) {
			t.Fatalf("no status table after 20 s:\n%s", tc.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range []string{"n1", "n2", "n3", "p1"} {
		if !strings.Contains(tc.output(), id+" ") {
			t.Errorf("status table lacks %s:\n%s", id, tc.output())
		}
	}
	ctx := context.Background()
	if code, _, _, err := httpDo(ctx, "POST", base+"/values/hello", []byte("world"), nil); err != nil || code != 200 {
		t.Fatalf("POST through tako-cluster's proxy: %d %v", code, err)
	}
	if code, _, body, _ := httpDo(ctx, "GET", "http://"+httpAddrs[0]+"/values/hello", nil, nil); code != 200 || string(body) != "world" {
		t.Fatalf("GET via n1: %d %q", code, body)
	}
	if !strings.Contains(tc.output(), "Logs: "+dir+"/var/log") {
		t.Errorf("tako-cluster does not say where the logs go:\n%s", tc.output())
	}
	// A process that dies shows in tako-cluster's status (not a terminal
	// here: one line when it goes down).
	n2 := childPID(t, "-child-node -id n2 -v "+dir+"/var")
	if err := syscall.Kill(n2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !regexp.MustCompile(`n2 +node b2 +DOWN`).MatchString(tc.output()); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tako-cluster did not report n2 down within 10 s:\n%s", tc.output())
		}
	}
	if err := tc.stop(t); err != nil {
		t.Fatalf("tako-cluster exit after SIGTERM: %v\n%s", err, tc.output())
	}
	for _, addr := range append(httpAddrs, fmt.Sprintf("127.0.0.1:%d", port)) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after tako-cluster stopped", addr)
		}
	}
	if _, err := os.Stat(dir + "/var/log/n2.log"); err != nil {
		t.Errorf("no log for n2: %v", err)
	}
}

// TestBenchToolDrivesTheCluster runs tako-bench briefly through the proxy
// and through the Go client, and checks that it reports its figures.
func TestBenchToolDrivesTheCluster(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "")
	for _, args := range [][]string{
		{"-url", c.base, "-op", "mix", "-prefill", "-keys", "500", "-c", "8", "-d", "1s"},
		{"-cfg", c.cfg, "-op", "mix", "-keys", "500", "-c", "8", "-d", "1s"},
	} {
		out, err := exec.Command(bin("tako-bench"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tako-bench %v: %v\n%s", args, err, out)
		}
		for _, want := range []string{"GET ", "PUT ", "ops/s", "p99.9", "errors 0"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("tako-bench %v output lacks %q:\n%s", args, want, out)
			}
		}
		t.Logf("tako-bench %v:\n%s", args, out)
	}
}

// childPID returns the PID of the one process whose command line contains
// match (unique to the test: processes of other tests share /proc).
func childPID(t *testing.T, match string) int {
	t.Helper()
	pid, err := testproc.PID(match)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
