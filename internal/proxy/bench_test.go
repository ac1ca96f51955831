package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takodb/tako/internal/proxy"
	"github.com/takodb/tako/internal/testcluster"
)

// startBenchCluster runs the benchmark cluster's shape in this process
// (three nodes, every key on two, default quorums, synced writes) and a
// proxy in front of it, and returns the proxy's base URL. Profiles of the
// benchmarks below show the whole request path: the proxy's HTTP and
// client, the wire, the coordinating node, its peer, and the stores.
func startBenchCluster(b *testing.B) string {
	b.Helper()
	c, err := testcluster.Start(b.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	p, err := proxy.New(proxy.Options{Config: c.Config, Addr: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(5 * time.Second); p.Addr() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the proxy did not listen")
		}
	}
	return "http://" + p.Addr().String()
}

const benchKeys = 10_000

// benchmarkProxy drives the proxy with 64 concurrent HTTP clients (32 per
// core on this 2-core machine), like scripts/bench.sh at 64 clients.
func benchmarkProxy(b *testing.B, method string) {
	base := startBenchCluster(b)
	value := bytes.Repeat([]byte("v"), 100)
	tr := &http.Transport{MaxIdleConnsPerHost: 128}
	client := &http.Client{Transport: tr}
	do := func(method, key string, body []byte) error {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+"/values/"+key, rd)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s %s: %d", method, key, resp.StatusCode)
		}
		return nil
	}
	for i := range benchKeys {
		if err := do("POST", "k"+strconv.Itoa(i), value); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "k" + strconv.Itoa(int(next.Add(7919)%benchKeys))
			var body []byte
			if method == "POST" {
				body = value
			}
			if err := do(method, key, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkProxyGet(b *testing.B)  { benchmarkProxy(b, "GET") }
func BenchmarkProxyPost(b *testing.B) { benchmarkProxy(b, "POST") }
