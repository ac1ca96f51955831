package coordinator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/testcluster"
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

// TestStatusScrapesNodesOverHTTPS: with a tls section, the nodes serve
// HTTPS and the coordinator reads their /metrics over it, verifying them
// with the CA: every node is up in /status, with its version and keys.
func TestStatusScrapesNodesOverHTTPS(t *testing.T) {
	cluster, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2, TLS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	base := strings.Replace(startCoordinator(t, cluster, 200*time.Millisecond), "http://", "https://", 1)
	caTLS, err := tlsconf.CAClientConfig(cluster.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: caTLS}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st Status
		resp, err := client.Get(base + "/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && len(st.Nodes) == 2 && st.Nodes[0].State == "up" && st.Nodes[1].State == "up" &&
			st.Nodes[0].Version != "" && st.Nodes[1].Version != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator does not see both nodes up over HTTPS: %+v %v", st.Nodes, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFollowerFollowsMasterOverHTTPS: with a tls section, a follower asks
// its master over HTTPS, verifying it with the CA of its own
// configuration, and adopts the master's new configuration.
func TestFollowerFollowsMasterOverHTTPS(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.WriteFiles(filepath.Join(dir, "certs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("tls:\n  ca: %q\n  cert: %q\n  key: %q\n", files.CA, files.Cert, files.Key)
	mln, mport := listen(t)
	fln, fport := listen(t)
	coords := []coord{{"m", mport}, {"f", fport}}
	master := newTestServer(t, dir, "m", section+configText("m", coords, "n1", "n2"), nil)
	follower := newTestServer(t, dir, "f", section+configText("m", coords, "n1", "n2"), nil)
	run(t, master, mln)
	run(t, follower, fln)
	writeFile(t, filepath.Join(dir, "m.yaml"), section+configText("m", coords, "n1", "n2", "n3"))
	if err := master.Reload(); err != nil {
		t.Fatal(err)
	}
	_, mepoch := master.Current()
	waitUntil(t, 5*time.Second, "the follower serving the master's epoch over HTTPS", func() bool {
		_, e := follower.Current()
		return e == mepoch
	})
	if cfg, _ := follower.Current(); len(cfg.Nodes()) != 3 {
		t.Errorf("the follower serves %d nodes, want the master's 3", len(cfg.Nodes()))
	}
}
