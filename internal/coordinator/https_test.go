package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/tlsconf"
)

// TestHTTPSWithATLSSection: a coordinator whose configuration has a tls
// section serves HTTPS; a Watcher given the CA (WatcherOptions.TLS, the
// -ca flag) gets the configuration over it, while a request that does not
// trust the CA fails with a certificate error.
func TestHTTPSWithATLSSection(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.WriteFiles(filepath.Join(dir, "certs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, port := listen(t)
	text := fmt.Sprintf("tls:\n  ca: %q\n  cert: %q\n  key: %q\n", files.CA, files.Cert, files.Key) +
		configText("", []coord{{"c1", port}}, "n1")
	s := newTestServer(t, dir, "c1", text, nil)
	run(t, s, ln)
	_, sepoch := s.Current()

	caTLS, err := tlsconf.CAClientConfig(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: filepath.Join(dir, "etc"), TLS: caTLS})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, epoch, err := w.WaitFor(ctx, func(*config.Config) bool { return true })
	if err != nil {
		t.Fatalf("a Watcher with the CA: %v", err)
	}
	if epoch != sepoch || cfg.TLS == nil {
		t.Errorf("adopted epoch %d (tls %v), want %d with a tls section", epoch, cfg.TLS, sepoch)
	}

	untrusting := newClient(&tls.Config{MinVersion: tls.VersionTLS12})
	defer untrusting.CloseIdleConnections()
	_, err = fetch(ctx, untrusting, "https", s.Addr(), 0, 0)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("fetch over HTTPS without the CA: %v, want an unknown authority error", err)
	}
	plain := newClient(nil)
	defer plain.CloseIdleConnections()
	if _, err := fetch(ctx, plain, "http", s.Addr(), 0, 0); err == nil {
		t.Error("fetch over plain HTTP from the HTTPS coordinator: no error")
	}
}
