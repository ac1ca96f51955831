package docker

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/tlsconf"
)

// tlsOverride makes the certificates of a cluster (as tako certs does,
// naming every service), two tokens, a configuration that is
// deploy/cluster.yaml with a tls section and an auth section listing them,
// and a compose override that mounts both and gives nodes and the proxy -ca
// to fetch the configuration over HTTPS, and every process the admin token
// ($TAKO_TOKEN). It returns the override's path, the pool of the CA, and
// the write token, for the workload.
func tlsOverride(t *testing.T) ([]string, *x509.CertPool, string) {
	t.Helper()
	dir := t.TempDir()
	services := append([]string{"tako-coordinator-1", "tako-proxy"}, nodeServices()...)
	files, err := tlsconf.WriteFiles(filepath.Join(dir, "tls"), services)
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("../../deploy/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	admin, adminHash, err := auth.Generate()
	if err != nil {
		t.Fatal(err)
	}
	writer, writerHash, err := auth.Generate()
	if err != nil {
		t.Fatal(err)
	}
	section := "tls:\n    ca: /etc/tako/tls/ca.pem\n    cert: /etc/tako/tls/tako.pem\n    key: /etc/tako/tls/tako-key.pem\n\n" +
		fmt.Sprintf("auth:\n    tokens:\n        processes: {sha256: %s, role: admin}\n        workload: {sha256: %s, role: write}\n\n", adminHash, writerHash)
	cfg := strings.Replace(string(base), "master_coordinator:", section+"master_coordinator:", 1)
	// Repair and garbage collection run during the faults, as in the
	// suite's own configuration (suiteOverride).
	cfg = strings.Replace(cfg, "read_repair: yes\n", fmt.Sprintf("read_repair: yes\n        background_repair_interval: %s\n        tombstone_grace: %s\n", repairInterval, tombstoneGrace), 1)
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("version: \"3\"\nservices:\n")
	tlsVolume := fmt.Sprintf("      - %s:/etc/tako/tls:ro\n", filepath.Join(dir, "tls"))
	tlsVolume += fmt.Sprintf("    environment:\n      - TAKO_TOKEN=%s\n", admin)
	fmt.Fprintf(&b, "  tako-coordinator-1:\n    volumes:\n      - %s:/etc/tako/cluster.yaml:ro\n%s", filepath.Join(dir, "cluster.yaml"), tlsVolume)
	for i, s := range nodeServices() {
		fmt.Fprintf(&b, "  %s:\n    command: [\"/bin/tako-node\", \"-id\", \"n%d\", \"-c\", \"tako-coordinator-1:4712\", \"-v\", \"/var/tako\", \"-ca\", \"/etc/tako/tls/ca.pem\"]\n    volumes:\n%s", s, i+1, tlsVolume)
	}
	fmt.Fprintf(&b, "  tako-proxy:\n    command: [\"/bin/tako-proxy\", \"-id\", \"p1\", \"-p\", \"8080\", \"-c\", \"tako-coordinator-1:4712\", \"-v\", \"/var/tako\", \"-ca\", \"/etc/tako/tls/ca.pem\"]\n    volumes:\n%s", tlsVolume)
	override := filepath.Join(dir, "tls-override.yml")
	if err := os.WriteFile(override, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in " + files.CA)
	}
	return []string{override}, pool, writer
}

// TestFaultsOnContainersWithTLS runs the cluster with a tls section (HTTPS
// on every HTTP port, mutual TLS between nodes and from the proxy) and
// injects the faults of a single host under the same workload and checks:
// a node killed, a node frozen, a node's volume lost.
func TestFaultsOnContainersWithTLS(t *testing.T) {
	c := up(t, true)
	if code, _, _ := c.do("POST", "/values/greeting", []byte("hello over TLS")); code != 200 {
		t.Fatalf("POST over HTTPS: %d", code)
	}
	// The nodes really run with TLS.
	if logs := run(t, nil, "docker", "logs", c.container("tako-node-01")); !strings.Contains(logs, "tls=true") {
		t.Fatalf("tako-node-01 does not say it serves with TLS:\n%s", logs)
	}
	// Plain HTTP to the HTTPS proxy is refused.
	if code, _, _ := request(httpClient, "GET", strings.Replace(c.base, "https://", "http://", 1)+"/values/greeting", nil); code == 200 {
		t.Fatal("plain HTTP to the HTTPS port was served")
	}
	// Authentication is on: without the token, the proxy answers 401.
	anonymous := *c.client("tako-proxy")
	anonymous.Transport = anonymous.Transport.(*auth.Transport).Base
	if code, _, _ := request(&anonymous, "GET", c.base+"/values/greeting", nil); code != 401 {
		t.Fatalf("GET without a token: %d, want 401", code)
	}
	faults := []fault{
		killNode(c, "TLS kill -9 a node", "n3"),
		loseVolume(c, "TLS lose a node's volume", "n9"),
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) { runWorkload(t, c, f) })
	}
}
