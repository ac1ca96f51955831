package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

// fakeLocator is a fakeBackend that also locates keys: one deployment with
// one bucket of two nodes, whose answers it makes up from the key.
type fakeLocator struct {
	*fakeBackend
	mu    sync.Mutex // guards asked
	asked []string
	fail  error // returned by Where when set
}

func (f *fakeLocator) Where(_ context.Context, key []byte) (Placement, error) {
	f.mu.Lock()
	f.asked = append(f.asked, string(key))
	f.mu.Unlock()
	if f.fail != nil {
		return Placement{}, f.fail
	}
	return Placement{Key: string(key), Hash: 42, Deployments: []DeploymentPlacement{{
		Name: "cluster", Role: RoleActive,
		Buckets: []BucketPlacement{{Name: "b1", Nodes: []ReplicaState{
			{ID: "n1", Binary: "h:1", Found: true, Timestamp: 1700000000000000},
			{ID: "n2", Binary: "h:2", Error: "refused"},
		}}},
	}}}, nil
}

func TestWhere(t *testing.T) {
	f := &fakeLocator{fakeBackend: newFake()}
	h := NewHandler(Options{Backend: f})
	resp := do(t, h, request{method: "GET", path: "/where/a//b%2Bc"})
	got := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /where: %d %q", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p Placement
	if err := json.Unmarshal([]byte(got), &p); err != nil {
		t.Fatalf("decoding %q: %v", got, err)
	}
	if p.Key != "a//b+c" || p.Hash != 42 || len(p.Deployments) != 1 || p.Deployments[0].Role != "active" {
		t.Fatalf("placement %+v", p)
	}
	nodes := p.Deployments[0].Buckets[0].Nodes
	if len(nodes) != 2 || nodes[0].Timestamp != 1700000000000000 || !nodes[0].Found || nodes[1].Error != "refused" {
		t.Errorf("nodes %+v", nodes)
	}
	for _, field := range []string{`"key"`, `"hash"`, `"deployments"`, `"role"`, `"buckets"`, `"nodes"`, `"id"`, `"binary"`, `"found"`, `"timestamp"`, `"deleted"`, `"error"`} {
		if !strings.Contains(got, field) {
			t.Errorf("the JSON lacks %s: %s", field, got)
		}
	}
	head := do(t, h, request{method: "HEAD", path: "/where/k"})
	if b := body(t, head); head.StatusCode != 200 || b != "" {
		t.Errorf("HEAD /where: %d %q", head.StatusCode, b)
	}
}

func TestWhereRefusals(t *testing.T) {
	tests := []struct {
		name     string
		backend  Backend
		req      request
		wantCode int
		contains string
	}{
		{name: "empty key", req: request{method: "GET", path: "/where/"}, wantCode: 400, contains: "empty"},
		{name: "key too long", req: request{method: "GET", path: "/where/" + strings.Repeat("k", MaxKeySize+1)}, wantCode: 400, contains: "larger than the limit"},
		{name: "bad method", req: request{method: "POST", path: "/where/k"}, wantCode: 405, contains: "GET, HEAD"},
		{name: "delete", req: request{method: "DELETE", path: "/where/k"}, wantCode: 405},
		{name: "backend without Locator", backend: newFake(), req: request{method: "GET", path: "/where/k"}, wantCode: 404, contains: "no such endpoint"},
		{name: "not ready", backend: &fakeLocator{fakeBackend: &fakeBackend{notReady: true}}, req: request{method: "GET", path: "/where/k"}, wantCode: 503},
		{name: "backend fails", backend: &fakeLocator{fakeBackend: newFake(), fail: errors.New("disk on fire")}, req: request{method: "GET", path: "/where/k"}, wantCode: 500, contains: "disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.backend
			if b == nil {
				b = &fakeLocator{fakeBackend: newFake()}
			}
			resp := do(t, NewHandler(Options{Backend: b}), tt.req)
			got := body(t, resp)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s: %d %q, want %d", tt.req.method, tt.req.path, resp.StatusCode, got, tt.wantCode)
			}
			if !strings.Contains(got, tt.contains) {
				t.Errorf("body %q does not contain %q", got, tt.contains)
			}
			if l, ok := b.(*fakeLocator); ok && tt.wantCode != 500 && len(l.asked) > 0 {
				t.Errorf("a refused request reached the Locator: %q", l.asked)
			}
		})
	}
}

func TestWhereMetrics(t *testing.T) {
	h := NewHandler(Options{Backend: &fakeLocator{fakeBackend: newFake()}})
	do(t, h, request{method: "GET", path: "/where/k"})
	got := body(t, do(t, h, request{method: "GET", path: "/metrics"}))
	if want := `tako_http_requests_total{code="200",op="where"} 1`; !strings.Contains(got, want) {
		t.Errorf("metrics lack %q", want)
	}
}
