package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/tlsconf"
)

// TestHTTPSWithATLSSection: a node whose configuration has a tls section
// serves its HTTP port over HTTPS with the section's certificate. A client
// that trusts the CA gets GET /health; a plain HTTP request is answered 400
// (or fails) and the node goes on serving HTTPS; a client that does not
// trust the CA fails to verify the node.
func TestHTTPSWithATLSSection(t *testing.T) {
	files, err := tlsconf.WriteFiles(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ports := freeLoopbackPorts(t, 2)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
tls:
  ca: %q
  cert: %q
  key: %q
active_deployment: standalone
deployments:
  standalone:
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
`, files.CA, files.Cert, files.Key, ports[0], ports[1])))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{ID: "n1", Config: cfg, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	caTLS, err := tlsconf.CAClientConfig(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: caTLS}}
	defer trusting.CloseIdleConnections()
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	health := func(c *http.Client, scheme string) (int, string, error) {
		resp, err := c.Get(scheme + "://" + addr + "/health")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	var code int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if code, _, err = health(trusting, "https"); err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET https://%s/health: %d, %v", addr, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	if code, body, err := health(plain, "http"); err == nil && code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the HTTPS port: %d %q, want 400 or an error", code, body)
	}
	if code, _, err := health(trusting, "https"); err != nil || code != http.StatusOK {
		t.Errorf("HTTPS after a plain HTTP request: %d, %v", code, err)
	}

	// The node reports when its certificate expires, for alerts.
	resp, err := trusting.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"tako_tls_certificate_expiry_timestamp_seconds", "tako_tls_ca_expiry_timestamp_seconds"} {
		if !strings.Contains(string(metrics), "\n"+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}

	untrusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer untrusting.CloseIdleConnections()
	_, _, err = health(untrusting, "https")
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) {
		t.Errorf("HTTPS without the CA: %v, want an unknown authority error", err)
	}
}
