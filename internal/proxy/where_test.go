package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/proxy"
	"github.com/takodb/tako/internal/testcluster"
)

func TestWhereThroughTheProxy(t *testing.T) {
	_, base := startProxy(t)
	req, _ := http.NewRequest("POST", base+"/values/a/b", strings.NewReader("v"))
	req.Header.Set("X-Timestamp", "1700000000000000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/where/a/b")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pl httpapi.Placement
	if err := json.NewDecoder(resp.Body).Decode(&pl); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /where: %d %v", resp.StatusCode, err)
	}
	if pl.Key != "a/b" || pl.Hash != keyhash.SumString("a/b") || len(pl.Deployments) != 1 || len(pl.Deployments[0].Buckets) != 2 {
		t.Fatalf("placement %+v", pl)
	}
	for _, b := range pl.Deployments[0].Buckets {
		for _, r := range b.Nodes {
			if !r.Found || r.Timestamp != 1700000000000000 || r.Error != "" {
				t.Errorf("%s/%s: %+v", b.Name, r.ID, r)
			}
		}
	}
}

// startProxy starts a cluster of three in-process nodes (every key on
// two) and a proxy in front of it, both stopped when the test ends, and
// returns the cluster and the proxy's base URL.
func startProxy(t *testing.T) (*testcluster.Cluster, string) {
	t.Helper()
	c, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p, err := proxy.New(proxy.Options{Config: c.Config, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(5 * time.Second); p.Addr() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy did not listen")
		}
	}
	return c, "http://" + p.Addr().String()
}
