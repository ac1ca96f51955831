package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/tlsconf"
)

// TestEachRoleItsOwnCertificate runs a coordinator, two nodes (every key on
// both, write_quorum all) and a proxy with a tls section that gives the
// nodes, the proxy, the coordinator and Go clients each a certificate of
// their own, and names no usable default: each listener presents its
// role's certificate, and writes and reads work through the proxy (proxy →
// node and node → node handshakes with those certificates) and through the
// Go client (with the client's).
func TestEachRoleItsOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.WriteFiles(filepath.Join(dir, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsconf.LoadCA(files.CA, files.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]*big.Int{}
	// The section's own certificate does not exist: a process that fell
	// back on it instead of its role's would fail to start.
	missing := filepath.Join(dir, "tls", "missing.pem")
	section := fmt.Sprintf("tls:\n  ca: %s\n  cert: %s\n  key: %s\n", files.CA, missing, missing)
	for _, role := range config.TLSRoles {
		certPEM, keyPEM, err := ca.Issue(tlsconf.DefaultHosts, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, key := filepath.Join(dir, "tls", role+".pem"), filepath.Join(dir, "tls", role+"-key.pem")
		writeOver(t, cert, certPEM, 0o644)
		writeOver(t, key, keyPEM, 0o600)
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		serials[role] = pair.Leaf.SerialNumber
		section += fmt.Sprintf("  %s: {cert: %s, key: %s}\n", role, cert, key)
	}
	ports := freePorts(t, 6)
	coord := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfgPath := writeFile(t, dir, "tako.yaml", section+fmt.Sprintf(`coordinators:
  c1: [127.0.0.1, %d]
active_deployment: d
deployments:
  d:
    write_quorum: all
    hash:
      buckets_per_key: 2
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
      b2:
        n2: [127.0.0.1, %d, %d]
`, ports[0], ports[1], ports[2], ports[3], ports[4]))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	hc := newHTTPSClient(t, roots)
	c1 := start(t, dir, "tako-coordinator", "-id", "c1", "-cfg", cfgPath, "-v", dir)
	waitHealthyHTTPS(t, hc, c1, coord)
	n1 := start(t, dir, "tako-node", "-id", "n1", "-c", coord, "-ca", files.CA, "-v", dir)
	n2 := start(t, dir, "tako-node", "-id", "n2", "-c", coord, "-ca", files.CA, "-v", dir)
	waitHealthyHTTPS(t, hc, n1, fmt.Sprintf("127.0.0.1:%d", ports[1]))
	waitHealthyHTTPS(t, hc, n2, fmt.Sprintf("127.0.0.1:%d", ports[3]))
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", ports[5])
	p1 := start(t, dir, "tako-proxy", "-p", fmt.Sprint(ports[5]), "-b", "127.0.0.1", "-c", coord, "-ca", files.CA, "-v", dir)
	waitHealthyHTTPS(t, hc, p1, proxyAddr)

	own, err := tlsconf.Load(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	httpsConfig := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	binaryConfig := own.ClientConfig()
	binaryConfig.ServerName = "127.0.0.1"
	for _, l := range []struct {
		name, addr, role string
		cfg              *tls.Config
	}{
		{"coordinator HTTPS", coord, "coordinator", httpsConfig},
		{"n1 HTTPS", fmt.Sprintf("127.0.0.1:%d", ports[1]), "node", httpsConfig},
		{"n2 binary", fmt.Sprintf("127.0.0.1:%d", ports[4]), "node", binaryConfig},
		{"proxy HTTPS", proxyAddr, "proxy", httpsConfig},
	} {
		got, err := presentedSerial(l.addr, l.cfg)
		if err != nil {
			t.Errorf("the %s: %v", l.name, err)
		} else if got.Cmp(serials[l.role]) != 0 {
			t.Errorf("the %s presents serial %x, want the %s certificate's %x", l.name, got, l.role, serials[l.role])
		}
	}

	code, body, _, err := httpsDo(hc, "PUT", "https://"+proxyAddr+"/values/roles", []byte("each its own"))
	if err != nil || code != http.StatusOK {
		t.Fatalf("PUT through the proxy (write_quorum all): %d %v %s", code, err, body)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cl := client.New(cfg, client.Options{})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if v, err := cl.Get(ctx, []byte("roles")); err != nil || string(v.Value) != "each its own" {
		t.Errorf("the Go client, with the client certificate: %q %v", v.Value, err)
	}
	if _, err := cl.Put(ctx, []byte("from-the-client"), []byte("v")); err != nil {
		t.Errorf("a Put by the Go client (write_quorum all): %v", err)
	}
}
