package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestWriteFiles checks what tako certs writes: four PEM files, keys 0600,
// a certificate that chains to the CA for both server and client use and
// names the hosts and the defaults; and that it refuses to overwrite.
func TestWriteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	f, err := WriteFiles(dir, []string{"node1.example.com", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.CAKey, f.Key} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", p, err, st.Mode().Perm())
		}
	}
	ca, err := LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || time.Until(ca.Cert.NotAfter) < CAValidity-time.Hour {
		t.Errorf("CA: IsCA %v, not after %v", ca.Cert.IsCA, ca.Cert.NotAfter)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("the certificate does not verify for %v: %v", use, err)
		}
	}
	for _, h := range []string{"node1.example.com", "10.0.0.7", "localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("the certificate does not name %s: %v", h, err)
		}
	}
	if d := time.Until(leaf.NotAfter); d < CertValidity-time.Hour || d > CertValidity+time.Hour {
		t.Errorf("the certificate is valid for %v, want %v", d, CertValidity)
	}
	if _, err := Load(f.CA, f.Cert, f.Key); err != nil {
		t.Errorf("Load: %v", err)
	}

	before, _ := os.ReadFile(f.CA)
	_, err = WriteFiles(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "exists: not overwriting") {
		t.Errorf("WriteFiles over existing files: %v", err)
	}
	if after, _ := os.ReadFile(f.CA); !bytes.Equal(before, after) {
		t.Error("WriteFiles changed an existing file")
	}
	// One file is enough to refuse, and nothing is written then.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, "tako-key.pem"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir2, nil); err == nil {
		t.Error("WriteFiles wrote over tako-key.pem")
	}
	if _, err := os.Stat(filepath.Join(dir2, "ca.pem")); err == nil {
		t.Error("WriteFiles wrote ca.pem although it refused")
	}
}

// serve accepts TLS connections with r's server configuration and echoes
// what they send, until the test ends.
func serve(t *testing.T, r *Reloader) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echo writes a line on c and reads it back.
func echo(c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

// TestReload replaces the certificate files: after Reload, a new
// connection's server certificate is the new one, and a connection made
// before keeps working. A bad file leaves the old certificate in use.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	f, err := WriteFiles(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, server)
	old, err := tls.Dial("tcp", addr, client.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := echo(old); err != nil {
		t.Fatal(err)
	}
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber

	ca, err := LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	reissue(t, ca, f, time.Hour)
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	newSerial := server.Certificate().Leaf.SerialNumber
	if newSerial.Cmp(oldSerial) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
	c, err := tls.Dial("tcp", addr, client.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(newSerial) != 0 {
		t.Errorf("a new connection got serial %v, want the new %v (old %v)", got, newSerial, oldSerial)
	}
	if err := echo(old); err != nil {
		t.Errorf("the connection made before Reload broke: %v", err)
	}

	// A broken file, or a certificate of another CA: Reload fails and the
	// certificate in use stays.
	if err := os.WriteFile(f.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(); err == nil {
		t.Error("Reload accepted a broken file")
	}
	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reissue(t, other, f, time.Hour)
	if err := server.Reload(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("Reload of another CA's certificate: %v", err)
	}
	if got := server.Certificate().Leaf.SerialNumber; got.Cmp(newSerial) != 0 {
		t.Errorf("after failed reloads the serial is %v, want %v", got, newSerial)
	}
}

// TestMutualTLS: a client without a certificate, or with one of another
// CA, is refused by the server; a server of another CA is refused by the
// client.
func TestMutualTLS(t *testing.T) {
	f, err := WriteFiles(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := r.ServerConfig(); cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("server config: %+v", cfg)
	}
	addr := serve(t, r)
	foreign, err := WriteFiles(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Load(foreign.CA, foreign.Cert, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	noCert := r.ClientConfig()
	noCert.GetClientCertificate = nil
	foreignCert := r.ClientConfig()
	foreignCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return other.Certificate(), nil }
	for name, tt := range map[string]struct {
		cfg  *tls.Config
		want []string
	}{
		"no client certificate":  {noCert, []string{"certificate required"}},
		"another CA's client":    {foreignCert, []string{"unknown certificate authority", "bad certificate"}},
		"a server of another CA": {other.ClientConfig(), []string{"unknown authority"}},
	} {
		c, err := tls.Dial("tcp", addr, tt.cfg)
		if err == nil {
			// TLS 1.3: the server's verdict on the client's certificate
			// arrives after the client's handshake completed.
			err = echo(c)
			c.Close()
		}
		if err == nil || !slices.ContainsFunc(tt.want, func(w string) bool { return strings.Contains(err.Error(), w) }) {
			t.Errorf("%s: %v, want one of %q", name, err, tt.want)
		}
	}
	c, err := tls.Dial("tcp", addr, r.ClientConfig())
	if err == nil {
		err = echo(c)
		c.Close()
	}
	if err != nil {
		t.Errorf("a client of the CA: %v", err)
	}
}

// TestHTTPConfigs: an HTTPS server asks no client certificate, so a
// client that only trusts the CA (CAClientConfig) completes a handshake,
// and so does HTTPClientConfig.
func TestHTTPConfigs(t *testing.T) {
	f, err := WriteFiles(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	caOnly, err := CAClientConfig(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	for name, cc := range map[string]*tls.Config{"CAClientConfig": caOnly, "HTTPClientConfig": r.HTTPClientConfig()} {
		cc.ServerName = "localhost"
		a, b := net.Pipe()
		srv := tls.Server(a, r.HTTPServerConfig())
		done := make(chan error, 1)
		go func() { done <- srv.Handshake() }()
		cli := tls.Client(b, cc)
		if err := cli.Handshake(); err != nil {
			t.Errorf("%s: client handshake: %v", name, err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: server handshake: %v", name, err)
		}
		cli.Close()
		srv.Close()
	}
	if _, err := CAClientConfig(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("CAClientConfig of a missing file: no error")
	}
}

// TestExpiry: the expiry dates, and their metrics, are those of the loaded
// certificate and of the CA, and follow a reload.
func TestExpiry(t *testing.T) {
	dir := t.TempDir()
	f, err := WriteFiles(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, caExpiry := r.Expiry()
	if want := r.Certificate().Leaf.NotAfter; !cert.Equal(want) {
		t.Errorf("certificate expiry %v, want %v", cert, want)
	}
	if want := ca.Cert.NotAfter; !caExpiry.Equal(want) {
		t.Errorf("CA expiry %v, want %v", caExpiry, want)
	}
	if until := time.Until(cert); until < 360*24*time.Hour {
		t.Errorf("a new certificate expires in %v, want about a year", until)
	}

	reissue(t, ca, f, time.Hour)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Collectors()...)
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if v := got["tako_tls_certificate_expiry_timestamp_seconds"]; math.Abs(v-float64(time.Now().Add(time.Hour).Unix())) > 120 {
		t.Errorf("after reloading a certificate valid for an hour, the metric says %v (%v from now)", v, time.Until(time.Unix(int64(v), 0)))
	}
	if v := got["tako_tls_ca_expiry_timestamp_seconds"]; v != float64(ca.Cert.NotAfter.Unix()) {
		t.Errorf("CA expiry metric %v, want %v", v, ca.Cert.NotAfter.Unix())
	}
}

// TestCAChange is the CA change of docs/security.md: with a CA file that
// holds the old and the new CA, a process whose certificate the old CA
// signed and one whose certificate the new CA signed accept each other,
// both ways; with the new CA alone, the old certificate is refused.
func TestCAChange(t *testing.T) {
	dir := t.TempDir()
	oldCA, err := NewCA("old", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := NewCA("new", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	both := write("both.pem", append(oldCA.CertPEM(), newCA.CertPEM()...))
	newOnly := write("new.pem", newCA.CertPEM())
	load := func(caFile string, ca *CA, name string) *Reloader {
		cert, key, err := ca.Issue(DefaultHosts, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Load(caFile, write(name+".pem", cert), write(name+"-key.pem", key))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	oldSigned := load(both, oldCA, "old-signed")
	newSigned := load(both, newCA, "new-signed")
	for _, pair := range [][2]*Reloader{{oldSigned, newSigned}, {newSigned, oldSigned}} {
		c, err := tls.Dial("tcp", serve(t, pair[0]), pair[1].ClientConfig())
		if err == nil {
			err = echo(c)
			c.Close()
		}
		if err != nil {
			t.Errorf("with both CAs trusted, a handshake between certificates of the old and the new CA: %v", err)
		}
	}
	newOnlyServer := load(newOnly, newCA, "after")
	c, err := tls.Dial("tcp", serve(t, newOnlyServer), oldSigned.ClientConfig())
	if err == nil {
		err = echo(c)
		c.Close()
	}
	if err == nil {
		t.Error("with the new CA alone, a certificate of the old CA was accepted")
	}
}

// reissue writes a new certificate of ca, valid for validity, and its key
// over the files of f, as an operator rotating certificates does.
func reissue(t *testing.T, ca *CA, f Files, validity time.Duration) {
	t.Helper()
	cert, key, err := ca.Issue(DefaultHosts, validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Cert, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, key, 0o600); err != nil {
		t.Fatal(err)
	}
}
