package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunMeasuresBothOperations(t *testing.T) {
	var mu sync.Mutex
	m := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case "GET":
			v, ok := m[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Write(v)
		case "POST":
			v, _ := io.ReadAll(r.Body)
			m[r.URL.Path] = v
		}
	}))
	defer srv.Close()
	target := NewHTTPTarget(srv.URL, 4)
	o := Options{Clients: 4, Duration: 300 * time.Millisecond, Keys: 100, ValueSize: 10, ReadFraction: 0.5}
	if err := Prefill(context.Background(), target, o); err != nil {
		t.Fatal(err)
	}
	if len(m) != 100 {
		t.Fatalf("prefill wrote %d keys, want 100", len(m))
	}
	results := Run(context.Background(), target, o)
	if len(results) != 2 {
		t.Fatalf("%d results, want GET and PUT", len(results))
	}
	for _, r := range results {
		if r.Ops == 0 || r.Errors != 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.P999 {
			t.Errorf("implausible result: %+v", r)
		}
		if !strings.Contains(r.String(), "ops/s") {
			t.Errorf("String() = %q", r.String())
		}
	}
}

func TestErrorsAreCounted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	results := Run(context.Background(), NewHTTPTarget(srv.URL, 2), Options{Clients: 2, Duration: 100 * time.Millisecond, Keys: 10, ReadFraction: 1})
	if len(results) != 1 || results[0].Errors == 0 || results[0].Ops != 0 || results[0].FirstError == nil {
		t.Fatalf("errors not counted: %+v", results)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i))
	}
	if p := percentile(d, 0.5); p != 501 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(d, 0.999); p != 1000 {
		t.Errorf("p99.9 = %d", p)
	}
	if p := percentile(nil, 0.5); p != 0 {
		t.Errorf("empty = %d", p)
	}
}
