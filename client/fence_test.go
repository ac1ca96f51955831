package client_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/testcluster"
	"github.com/takodb/tako/internal/wire"
)

// TestACoordinatingClientBehindTheNodesLetsANodeCoordinate: a client that
// coordinates its own requests places them by its configuration's epoch;
// once the nodes place keys by a newer layout (here: write_quorum all,
// from epoch 20), they refuse its requests (CodeStaleConfig), and the
// client lets a node coordinate each of them instead: the request
// succeeds, placed by the node's configuration. Once the client follows
// the new configuration, it coordinates again, and nothing is refused.
func TestACoordinatingClientBehindTheNodesLetsANodeCoordinate(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 3})
	ids := []string{"n1", "n2", "n3"}
	c := client.New(cl.Config, client.Options{})
	defer c.Close()
	c.SetConfigAt(cl.Config, 10)
	ctx := context.Background()
	if _, err := c.Put(ctx, []byte("before"), []byte("v")); err != nil {
		t.Fatalf("Put with the nodes' layout: %v", err)
	}
	if n := refused(t, cl, ids); n != 0 {
		t.Fatalf("%v fenced requests refused while the client and the nodes agree", n)
	}

	raw, err := os.ReadFile(cl.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := config.Parse([]byte(strings.Replace(string(raw), "  test:\n", "  test:\n    write_quorum: all\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		cl.Node(id).SetConfig(newer, 20)
	}
	firstRefusal := 0.0
	for stamp := range int64(4) { // stamped by the cluster, then by the client
		ts := int64(0)
		if stamp%2 == 1 {
			ts = mustNow(t)
		}
		res, err := c.PutAt(ctx, []byte("behind"), []byte("v"+strconv.FormatInt(stamp, 10)), ts)
		if err != nil || res.Superseded {
			t.Fatalf("Put by a client behind the nodes (ts %d): %+v %v", ts, res, err)
		}
		if stamp == 0 {
			firstRefusal = refused(t, cl, ids)
		}
	}
	v, err := c.Get(ctx, []byte("behind"))
	if err != nil || string(v.Value) != "v3" {
		t.Fatalf("Get by a client behind the nodes: %q %v, want v3", v.Value, err)
	}
	behind := refused(t, cl, ids)
	if behind == 0 {
		t.Fatal("no fenced request was refused although the client placed them by an older layout")
	}
	// Refused once, the client lets a node coordinate every request of
	// that epoch, and pays for no more refusals.
	if behind != firstRefusal {
		t.Errorf("%v fenced requests refused after the first refusal (%v of the first request): the client kept coordinating with an epoch the nodes refused", behind-firstRefusal, firstRefusal)
	}
	// Placed by the nodes (write_quorum all), the writes are on every
	// replica.
	for _, id := range ids {
		if got := localValue(t, cl, id, "behind"); got != "v3" {
			t.Errorf("%s holds %q of the key written through a node, want v3", id, got)
		}
	}

	c.SetConfigAt(newer, 20)
	if _, err := c.Put(ctx, []byte("after"), []byte("v")); err != nil {
		t.Fatalf("Put once the client follows the new layout: %v", err)
	}
	if _, err := c.Get(ctx, []byte("after")); err != nil {
		t.Fatalf("Get once the client follows the new layout: %v", err)
	}
	if n := refused(t, cl, ids); n != behind {
		t.Errorf("%v more fenced requests refused once the client follows the nodes' layout", n-behind)
	}
}

// refused sums tako_fenced_requests_refused_total over the nodes.
func refused(t *testing.T, cl *testcluster.Cluster, ids []string) float64 {
	t.Helper()
	sum := 0.0
	for _, id := range ids {
		resp, err := http.Get(cl.HTTPURL(id) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "tako_fenced_requests_refused_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				sum += f
			}
		}
		resp.Body.Close()
	}
	return sum
}

// localValue returns the value node id's own store holds of key ("" when
// none).
func localValue(t *testing.T, c *testcluster.Cluster, id, key string) string {
	t.Helper()
	conn, err := wire.Dial(ctxT(t), binaryAddr(c, id), wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := conn.Call(ctxT(t), &wire.Request{Op: wire.OpReplicaGetLocal, Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return string(resp.Record.Value)
}

func mustNow(t *testing.T) int64 {
	t.Helper()
	return time.Now().UnixMicro()
}
