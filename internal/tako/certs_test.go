package tako

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/config"
)

// TestCertsCommand: tako certs writes a CA and a certificate that chains
// to it for server and client use, naming the hosts and the loopback
// names; keys are 0600; the printed tls lines parse as a configuration;
// a second run refuses to overwrite.
func TestCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := run(t, "", "", "certs", dir, "node1.example.com", "10.1.2.3").want(t, 0, "certs")
	_, section, ok := strings.Cut(r.stdout, "tls:\n")
	if !ok {
		t.Fatalf("no tls lines in %q", r.stdout)
	}
	cfg, err := config.Parse([]byte("tls:\n" + section + "active_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n"))
	if err != nil {
		t.Fatalf("the printed tls lines do not parse: %v\n%s", err, r.stdout)
	}
	if cfg.TLS.CA != filepath.Join(dir, "ca.pem") || cfg.TLS.Cert != filepath.Join(dir, "tako.pem") || cfg.TLS.Key != filepath.Join(dir, "tako-key.pem") {
		t.Errorf("tls section %+v", cfg.TLS)
	}
	for _, name := range []string{"ca-key.pem", "tako-key.pem"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", name, err)
		}
	}
	caPEM, err := os.ReadFile(cfg.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	pair, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("tako.pem does not chain to ca.pem for %v: %v", use, err)
		}
	}
	for _, h := range []string{"node1.example.com", "10.1.2.3", "localhost", "127.0.0.1", "::1"} {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("tako.pem does not name %s: %v", h, err)
		}
	}

	r = run(t, "", "", "certs", dir).want(t, 2, "certs over existing files")
	if !strings.Contains(r.stderr, "not overwriting") {
		t.Errorf("certs over existing files: %q", r.stderr)
	}
	if again, _ := os.ReadFile(cfg.TLS.CA); string(again) != string(caPEM) {
		t.Error("certs changed ca.pem")
	}
	run(t, "", "", "certs").want(t, 2, "certs without DIR")
}
