package node

import (
	"bytes"
	"context"
	"fmt"
	"github.com/takodb/tako/internal/httpapi"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/loadgen"
)

// startStandalone runs a one-node cluster in this process on free loopback
// ports, with a real store in a temporary directory, and returns its base URL.
func startStandalone(tb testing.TB, extra string) (*Node, string) {
	tb.Helper()
	ports := freeLoopbackPorts(tb, 2)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
active_deployment: standalone
deployments:
  standalone:
%s    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
`, extra, ports[0], ports[1])))
	if err != nil {
		tb.Fatal(err)
	}
	n, err := New(Options{ID: "n1", Config: cfg, DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("node not healthy after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n, base
}

func TestStandaloneNodeWritesReadsAndDeletes(t *testing.T) {
	n, base := startStandalone(t, "")
	ctx := context.Background()
	res, err := n.Put(ctx, []byte("k"), []byte("v1"), 0, httpapi.Expiry{})
	if err != nil || res.Superseded || res.Timestamp == 0 {
		t.Fatalf("Put: %+v %v", res, err)
	}
	v, err := n.Get(ctx, []byte("k"))
	if err != nil || string(v.Value) != "v1" || v.Timestamp != res.Timestamp {
		t.Fatalf("Get: %+v %v", v, err)
	}
	// The clock never hands out an older timestamp, so a second write wins.
	res2, err := n.Put(ctx, []byte("k"), []byte("v2"), 0, httpapi.Expiry{})
	if err != nil || res2.Timestamp <= res.Timestamp {
		t.Fatalf("second Put: %+v %v (first at %d)", res2, err, res.Timestamp)
	}
	// An explicit older timestamp loses.
	old, err := n.Put(ctx, []byte("k"), []byte("old"), res.Timestamp-1, httpapi.Expiry{})
	if err != nil || !old.Superseded || old.Timestamp != res2.Timestamp {
		t.Fatalf("older Put: %+v %v", old, err)
	}
	del, err := n.Delete(ctx, []byte("k"), 0)
	if err != nil || del.Superseded {
		t.Fatalf("Delete: %+v %v", del, err)
	}
	if v, err := n.Get(ctx, []byte("k")); err != nil || !v.Deleted || v.Timestamp != del.Timestamp {
		t.Fatalf("Get after Delete: %+v %v", v, err)
	}
	// Over HTTP too.
	resp, err := http.Get(base + "/values/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET after delete: %d", resp.StatusCode)
	}
}

func TestFutureTimestampIsRefused(t *testing.T) {
	n, _ := startStandalone(t, "    max_timestamp_ahead: 1m\n")
	ctx := context.Background()
	future := time.Now().Add(2 * time.Minute).UnixMicro()
	if _, err := n.Put(ctx, []byte("k"), []byte("v"), future, httpapi.Expiry{}); err == nil {
		t.Fatal("a timestamp 2 minutes ahead was accepted with max_timestamp_ahead 1m")
	}
	if _, err := n.Get(ctx, []byte("k")); err == nil {
		t.Fatal("the refused write was stored")
	}
	near := time.Now().Add(30 * time.Second).UnixMicro()
	if _, err := n.Put(ctx, []byte("k"), []byte("v"), near, httpapi.Expiry{}); err != nil {
		t.Fatalf("a timestamp 30 s ahead was refused: %v", err)
	}
	// The clock moved past it: the next unstamped write wins.
	res, err := n.Put(ctx, []byte("k"), []byte("v2"), 0, httpapi.Expiry{})
	if err != nil || res.Superseded || res.Timestamp <= near {
		t.Fatalf("write after a future timestamp: %+v %v", res, err)
	}
}

// startCeiling serves a map behind a mutex over net/http: no replication, no
// disk. Nothing that serves HTTP from Go on this machine does much better,
// so Tako's figures are read as ratios against it, measured in the same run.
func startCeiling(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(&loadgen.Ceiling{})
	tb.Cleanup(srv.Close)
	return srv.URL
}

// benchmarkHTTP drives a server with 16 concurrent HTTP clients.
func benchmarkHTTP(b *testing.B, base, method string) {
	value := bytes.Repeat([]byte("v"), 100)
	const keys = 1000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := range keys {
		req, _ := http.NewRequest("POST", base+"/values/key"+strconv.Itoa(i), bytes.NewReader(value))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var next atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 clients on these machines
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			url := base + "/values/key" + strconv.FormatInt(next.Add(1)%keys, 10)
			var body io.Reader
			if method == "POST" {
				body = bytes.NewReader(value)
			}
			req, _ := http.NewRequest(method, url, body)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("%s %s: %d", method, url, resp.StatusCode)
			}
		}
	})
}

func BenchmarkHTTPGet16(b *testing.B) {
	_, base := startStandalone(b, "")
	benchmarkHTTP(b, base, "GET")
}

func BenchmarkHTTPPost16(b *testing.B) {
	_, base := startStandalone(b, "")
	benchmarkHTTP(b, base, "POST")
}

func BenchmarkHTTPGet16Ceiling(b *testing.B)  { benchmarkHTTP(b, startCeiling(b), "GET") }
func BenchmarkHTTPPost16Ceiling(b *testing.B) { benchmarkHTTP(b, startCeiling(b), "POST") }

// testLogger sends a node's logs to the test log; a fuzz target's nodes,
// which log while its inputs run, log nothing.
func testLogger(t testing.TB) *slog.Logger {
	if _, fuzzing := t.(*testing.F); fuzzing {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
