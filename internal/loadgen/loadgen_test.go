package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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
	target := NewHTTPTarget(srv.URL, 4, nil)
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
	results := Run(context.Background(), NewHTTPTarget(srv.URL, 2, nil), Options{Clients: 2, Duration: 100 * time.Millisecond, Keys: 10, ReadFraction: 1})
	if len(results) != 1 || results[0].Errors == 0 || results[0].Ops != 0 || results[0].FirstError == nil {
		t.Fatalf("errors not counted: %+v", results)
	}
}

// TestHTTPSWithTheCA drives an HTTPS server that also offers HTTP/2, with
// its CA: every request succeeds, over HTTP/1.1 on kept-alive connections
// (no more than the target allows, however many requests), as over plain
// HTTP. Without the CA, every request fails verification.
func TestHTTPSWithTheCA(t *testing.T) {
	var conns, http2 atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			http2.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("v"))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	const clients = 4
	target := NewHTTPTarget(srv.URL, clients, &tls.Config{RootCAs: pool})
	o := Options{Clients: clients, Duration: 300 * time.Millisecond, Keys: 100, ValueSize: 10, ReadFraction: 0.5}
	results := Run(context.Background(), target, o)
	total := 0
	for _, r := range results {
		if r.Ops == 0 || r.Errors != 0 {
			t.Errorf("over HTTPS with the CA: %v", r)
		}
		total += r.Ops
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want GET and PUT", len(results))
	}
	if n := http2.Load(); n > 0 {
		t.Errorf("%d requests over HTTP/2, want HTTP/1.1 as over plain HTTP", n)
	}
	if n := conns.Load(); n > 2*clients || int(n) >= total {
		t.Errorf("%d connections for %d requests of %d clients: not kept alive", n, total, clients)
	}

	// A second, so that a handshake slowed by a loaded machine still ends
	// within the run and is counted.
	results = Run(context.Background(), NewHTTPTarget(srv.URL, 1, nil), Options{Clients: 1, Duration: time.Second, Keys: 10, ReadFraction: 1})
	var unknown *tls.CertificateVerificationError
	if len(results) != 1 || results[0].Ops != 0 || !errors.As(results[0].FirstError, &unknown) {
		t.Errorf("without the CA: %+v, want every request to fail verification", results)
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
