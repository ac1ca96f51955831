package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/testcluster"
	"github.com/takodb/tako/internal/tlsconf"
	"github.com/takodb/tako/internal/wire"
)

// syncBuffer is a bytes.Buffer that many goroutines may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTLSCluster runs three nodes, each key on all three, with a tls
// section made as tako certs makes it, and a log the test can read.
func startTLSCluster(t *testing.T) (*testcluster.Cluster, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 3,
		Extra: []string{"write_quorum: all"}, TLS: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

// binaryAddr returns the node id's binary address.
func binaryAddr(c *testcluster.Cluster, id string) string {
	nd, _, _ := c.Config.Node(id)
	return nd.BinaryAddr()
}

// localRecord asks node id, over a connection with the cluster's
// certificate, whether its own store holds key.
func localRecord(t *testing.T, c *testcluster.Cluster, id, key string) bool {
	t.Helper()
	r, err := tlsconf.Load(c.TLS.CA, c.TLS.Cert, c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := wire.Dial(ctxT(t), binaryAddr(c, id), wire.DialOptions{TLS: r.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := conn.Call(ctxT(t), &wire.Request{Op: wire.OpReplicaGet, Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Found
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTLSClusterServesAndReplicates: with a tls section, the Go client
// writes and reads over mutual TLS, and a write acknowledged with
// write_quorum all is in every node's store, so the nodes replicated it to
// each other over TLS.
func TestTLSClusterServesAndReplicates(t *testing.T) {
	c, _ := startTLSCluster(t)
	cl := client.New(c.Config, client.Options{})
	defer cl.Close()
	if err := cl.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		key := []byte("k" + string(rune('a'+i)))
		if _, err := cl.Put(ctxT(t), key, []byte("v")); err != nil {
			t.Fatalf("put over TLS: %v", err)
		}
		v, err := cl.Get(ctxT(t), key)
		if err != nil || string(v.Value) != "v" {
			t.Fatalf("get over TLS: %q %v", v.Value, err)
		}
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if !localRecord(t, c, id, "ka") {
			t.Errorf("node %s's store lacks ka: the write was not replicated", id)
		}
	}
	// A client of a configuration without the tls section cannot talk
	// to the cluster.
	plain := *c.Config
	plain.TLS = nil
	pc := client.New(&plain, client.Options{Timeout: time.Second})
	defer pc.Close()
	if _, err := pc.Get(ctxT(t), []byte("ka")); err == nil {
		t.Error("a plain client read from a TLS cluster")
	}
	// A tls section whose key file is missing: Err says so.
	broken := *c.Config
	files := *c.Config.TLS
	files.Key += ".missing"
	broken.TLS = &files
	if err := client.New(&broken, client.Options{}).Err(); err == nil || !strings.Contains(err.Error(), "tls section") {
		t.Errorf("a client with a missing key file: %v", err)
	}
}

// TestTLSRefusesStrangers: a peer without a certificate, or with one of
// another CA, fails at the handshake and changes nothing; plain TCP to the
// TLS port fails at once, and the node logs it.
func TestTLSRefusesStrangers(t *testing.T) {
	c, logs := startTLSCluster(t)
	own, err := tlsconf.Load(c.TLS.CA, c.TLS.Cert, c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreignFiles, err := tlsconf.WriteFiles(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := tlsconf.Load(foreignFiles.CA, foreignFiles.Cert, foreignFiles.Key)
	if err != nil {
		t.Fatal(err)
	}
	noCert := own.ClientConfig()
	noCert.GetClientCertificate = nil
	foreignCert := own.ClientConfig() // trusts the node, shows a stranger's certificate
	foreignCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return foreign.Certificate(), nil }
	addr := binaryAddr(c, "n1")
	for _, tt := range []struct {
		name string
		tls  *tls.Config
		want []string
	}{
		{"no client certificate", noCert, []string{"tls: certificate required"}},
		{"another CA's certificate", foreignCert, []string{"tls: unknown certificate authority", "tls: bad certificate"}},
		{"a client that trusts another CA", foreign.ClientConfig(), []string{"certificate signed by unknown authority"}},
		{"plain TCP", nil, []string{"wire: handshake with"}},
	} {
		start := time.Now()
		conn, err := wire.Dial(ctxT(t), addr, wire.DialOptions{TLS: tt.tls, Timeout: 3 * time.Second})
		if err == nil {
			_, err = conn.Call(ctxT(t), &wire.Request{Op: wire.OpPut, Key: []byte("intruder"), Record: wire.Record{Timestamp: 1, Value: []byte("x")}})
			conn.Close()
			t.Errorf("%s: the handshake succeeded (then put: %v)", tt.name, err)
			continue
		}
		if !slices.ContainsFunc(tt.want, func(w string) bool { return strings.Contains(err.Error(), w) }) {
			t.Errorf("%s: %v, want it to say one of %q", tt.name, err, tt.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: failing took %v", tt.name, d)
		}
		t.Logf("%s: %v", tt.name, err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if localRecord(t, c, id, "intruder") {
			t.Errorf("node %s stored a stranger's write", id)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l := logs.String()
		if strings.Count(l, "TLS handshake failed") >= 3 && strings.Contains(l, "first record does not look like a TLS handshake") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node did not log the refused handshakes:\n%s", l)
		}
	}
}

// TestTLSReload: after the certificate files are replaced and the node
// reloads them (what SIGHUP does), a new connection gets the new
// certificate, and a connection made before keeps working.
func TestTLSReload(t *testing.T) {
	c, _ := startTLSCluster(t)
	own, err := tlsconf.Load(c.TLS.CA, c.TLS.Cert, c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	addr := binaryAddr(c, "n1")
	before, err := wire.Dial(ctxT(t), addr, wire.DialOptions{TLS: own.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	cl := client.New(c.Config, client.Options{})
	defer cl.Close()
	if _, err := cl.Put(ctxT(t), []byte("before"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	oldSerial := serverSerial(t, addr, own.ClientConfig())

	ca, err := tlsconf.LoadCA(c.TLS.CA, c.TLS.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(tlsconf.DefaultHosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.TLS.Cert, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.TLS.Key, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Node("n1").ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	newSerial := serverSerial(t, addr, own.ClientConfig())
	if newSerial.Cmp(oldSerial) == 0 {
		t.Fatalf("after ReloadTLS a new connection still gets serial %v", oldSerial)
	}
	fresh, err := tlsconf.Load(c.TLS.CA, c.TLS.Cert, c.TLS.Key)
	if err != nil {
		t.Fatal(err)
	}
	if want := fresh.Certificate().Leaf.SerialNumber; newSerial.Cmp(want) != 0 {
		t.Errorf("new connection's serial %v, want the new file's %v", newSerial, want)
	}
	if got := serverSerial(t, binaryAddr(c, "n2"), own.ClientConfig()); got.Cmp(oldSerial) != 0 {
		t.Errorf("n2, not reloaded, presents %v, want the old %v", got, oldSerial)
	}
	resp, err := before.Call(ctxT(t), &wire.Request{Op: wire.OpPing})
	if err != nil || resp.Op != wire.OpPong {
		t.Errorf("the connection made before the reload: %v %v", resp, err)
	}
	// Old and new certificates interoperate: the same CA signed both.
	for _, cli := range []*client.Client{cl, client.New(c.Config, client.Options{})} {
		if v, err := cli.Get(ctxT(t), []byte("before")); err != nil || string(v.Value) != "v" {
			t.Errorf("get after the reload: %q %v", v.Value, err)
		}
	}
	// A broken file: the reload fails and the node keeps its certificate.
	if err := os.WriteFile(c.TLS.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Node("n1").ReloadTLS(); err == nil {
		t.Error("ReloadTLS accepted a broken certificate file")
	}
	if got := serverSerial(t, addr, own.ClientConfig()); got.Cmp(newSerial) != 0 {
		t.Errorf("after a failed reload the serial is %v, want %v", got, newSerial)
	}
}

// serverSerial returns the serial number of the certificate that the
// server at addr presents to a new TLS connection.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
