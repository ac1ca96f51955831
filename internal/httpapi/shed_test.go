package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// blockingBackend holds every Get until release is closed.
type blockingBackend struct {
	*fakeBackend
	started chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Get(ctx context.Context, key []byte) (Version, error) {
	b.started <- struct{}{}
	<-b.release
	return b.fakeBackend.Get(ctx, key)
}

// TestOverloadIsShedAtOnce: beyond MaxInFlight requests for keys, a
// request gets 503 with Retry-After at once, and is counted; /health and
// /metrics are not limited; once the requests under way finish, requests
// are served again.
func TestOverloadIsShedAtOnce(t *testing.T) {
	b := &blockingBackend{fakeBackend: newFake(), started: make(chan struct{}, 10), release: make(chan struct{})}
	h := NewHandler(Options{Backend: b, MaxInFlight: 2})
	srv := httptest.NewServer(h)
	defer srv.Close()
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(srv.URL + "/values/k")
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		<-b.started
	}
	start := time.Now()
	resp, err := http.Get(srv.URL + "/values/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third request with 2 under way: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("shedding took %v: it must not wait", d)
	}
	for _, path := range []string{"/health", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s while overloaded: %d", path, resp.StatusCode)
		}
	}
	close(b.release)
	for range 2 {
		if code := <-done; code != 404 {
			t.Errorf("a request under way finished with %d, want 404 (no such key)", code)
		}
	}
	resp, err = http.Get(srv.URL + "/values/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("after the load: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "\ntako_http_shed_total 1\n") {
		t.Errorf("tako_http_shed_total is not 1:\n%s", body)
	}
}
