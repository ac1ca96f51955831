package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/takodb/tako/internal/tlsconf"
	"github.com/takodb/tako/internal/wire"
)

// TestSIGHUPReloadsCertificates rotates the certificate of a running
// cluster as docs/security.md tells an operator to: a coordinator, two
// nodes (every key on both, write_quorum all) and a proxy, all with a tls
// section, the nodes and the proxy fetching the configuration over HTTPS
// (-ca). With keep-alive HTTPS connections to the coordinator, a node and
// the proxy, and a binary-protocol connection to a node, open, it writes a
// new certificate and key (same CA) over the files and sends SIGHUP to
// every process: each logs the reload; a new connection to each of the six
// listeners gets the new serial number; the connections opened before keep
// serving; writes and reads through the proxy still work, also over
// connections handshaken after the reload (a node is restarted, so that
// the proxy and the other node must dial it again). Then it writes a broken
// key file and sends SIGHUP again: each process logs that the reload failed
// and naming the file, and every listener still presents the new
// certificate and serves.
func TestSIGHUPReloadsCertificates(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.WriteFiles(filepath.Join(dir, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsconf.LoadCA(files.CA, files.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	// The test's own certificate, for the binary ports, which require one:
	// loaded now, so that it does not follow the files.
	own, err := tlsconf.Load(files.CA, files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	oldSerial := own.Certificate().Leaf.SerialNumber

	ports := freePorts(t, 6)
	coord := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := writeFile(t, dir, "tako.yaml", fmt.Sprintf(`tls:
  ca: %s
  cert: %s
  key: %s
coordinators:
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
`, files.CA, files.Cert, files.Key, ports[0], ports[1], ports[2], ports[3], ports[4]))
	nodeHTTP := map[string]string{"n1": fmt.Sprintf("127.0.0.1:%d", ports[1]), "n2": fmt.Sprintf("127.0.0.1:%d", ports[3])}
	nodeBinary := map[string]string{"n1": fmt.Sprintf("127.0.0.1:%d", ports[2]), "n2": fmt.Sprintf("127.0.0.1:%d", ports[4])}
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", ports[5])
	hc := newHTTPSClient(t, roots)

	procs := map[string]*process{}
	procs["c1"] = start(t, dir, "tako-coordinator", "-id", "c1", "-cfg", cfg, "-v", dir)
	waitHealthyHTTPS(t, hc, procs["c1"], coord)
	startNode := func(id string) {
		procs[id] = start(t, dir, "tako-node", "-id", id, "-c", coord, "-ca", files.CA, "-v", dir)
	}
	// A new node is "ok: recovering" until it has repaired with its peer:
	// start both, then wait.
	startNode("n1")
	startNode("n2")
	for _, id := range []string{"n1", "n2"} {
		waitHealthyHTTPS(t, hc, procs[id], nodeHTTP[id])
	}
	procs["p1"] = start(t, dir, "tako-proxy", "-p", fmt.Sprint(ports[5]), "-b", "127.0.0.1", "-c", coord, "-ca", files.CA, "-v", dir)
	waitHealthyHTTPS(t, hc, procs["p1"], proxyAddr)

	// The listeners, and the configuration a new connection to each needs:
	// the binary ports ask for a client certificate.
	type listener struct {
		name, addr string
		tls        func() *tls.Config
	}
	httpsConfig := func() *tls.Config { return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"} }
	binaryConfig := func() *tls.Config { c := own.ClientConfig(); c.ServerName = "127.0.0.1"; return c }
	listeners := []listener{
		{"coordinator HTTPS", coord, httpsConfig},
		{"n1 HTTPS", nodeHTTP["n1"], httpsConfig},
		{"n2 HTTPS", nodeHTTP["n2"], httpsConfig},
		{"proxy HTTPS", proxyAddr, httpsConfig},
		{"n1 binary", nodeBinary["n1"], binaryConfig},
		{"n2 binary", nodeBinary["n2"], binaryConfig},
	}
	checkSerials := func(when string, want *big.Int) {
		t.Helper()
		for _, l := range listeners {
			got, err := presentedSerial(l.addr, l.tls())
			if err != nil {
				t.Errorf("%s: a new connection to the %s: %v", when, l.name, err)
			} else if got.Cmp(want) != 0 {
				t.Errorf("%s: the %s presents serial %x, want %x", when, l.name, got, want)
			}
		}
	}
	// putGet writes key through the proxy (acknowledged once both nodes
	// stored it) and reads it back, each over a new HTTPS connection, and
	// checks the proxy presented serial.
	putGet := func(when, key string, serial *big.Int) {
		t.Helper()
		code, body, got, err := httpsDo(hc, "PUT", "https://"+proxyAddr+"/values/"+key, []byte("v-"+key))
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: PUT %s through the proxy: %d %v %s", when, key, code, err, body)
		}
		if got.Cmp(serial) != 0 {
			t.Errorf("%s: the proxy presented serial %x to the PUT, want %x", when, got, serial)
		}
		code, body, _, err = httpsDo(hc, "GET", "https://"+proxyAddr+"/values/"+key, nil)
		if err != nil || code != http.StatusOK || string(body) != "v-"+key {
			t.Fatalf("%s: GET %s through the proxy: %d %v %q", when, key, code, err, body)
		}
	}

	putGet("before the reload", "before", oldSerial)
	checkSerials("before the reload", oldSerial)

	// Connections opened before the reload, each checked now and after.
	var kept []*keptHTTPS
	for _, l := range []struct{ name, addr, path, want string }{
		{"coordinator", coord, "/health", "ok"},
		{"n1", nodeHTTP["n1"], "/values/before", "v-before"},
		{"proxy", proxyAddr, "/values/before", "v-before"},
	} {
		k := dialKeptHTTPS(t, l.name, l.addr, l.path, l.want, roots)
		if got := k.serial(); got.Cmp(oldSerial) != 0 {
			t.Fatalf("the keep-alive connection to the %s got serial %x, want %x", l.name, got, oldSerial)
		}
		k.check(t, "before the reload")
		kept = append(kept, k)
	}
	var binarySerial serialBox
	binTLS := binaryConfig()
	binTLS.VerifyConnection = func(cs tls.ConnectionState) error { binarySerial.set(cs.PeerCertificates[0].SerialNumber); return nil }
	binConn, err := wire.Dial(ctxFor(t), nodeBinary["n1"], wire.DialOptions{TLS: binTLS, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer binConn.Close()
	if got := binarySerial.get(); got == nil || got.Cmp(oldSerial) != 0 {
		t.Fatalf("the binary connection to n1 got serial %v, want %x", got, oldSerial)
	}
	checkBinary := func(when string) {
		t.Helper()
		resp, err := binConn.Call(ctxFor(t), &wire.Request{Op: wire.OpReplicaGet, Key: []byte("before")})
		if err != nil || !resp.Found || string(resp.Record.Value) != "v-before" {
			t.Errorf("%s: OpReplicaGet on the binary connection to n1 opened before the reload: %+v %v", when, resp, err)
		}
	}
	checkBinary("before the reload")

	// Rotate: a new certificate and key of the same CA over the files.
	certPEM, keyPEM, err := ca.Issue(tlsconf.DefaultHosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	newSerial := pair.Leaf.SerialNumber
	writeOver(t, files.Cert, certPEM, 0o644)
	writeOver(t, files.Key, keyPEM, 0o600)
	hupAll(t, procs, "SIGHUP: reloaded the TLS certificate")

	checkSerials("after the reload", newSerial)
	for _, k := range kept {
		k.check(t, "after the reload")
	}
	checkBinary("after the reload")
	putGet("after the reload", "after", newSerial)

	// The proxy and the nodes keep their connections to one another, so
	// the writes above handshook nothing new between them. Restart n2:
	// the proxy and n1 must dial it again, presenting the certificate they
	// reloaded and verifying n2's new one (same CA, so this shows that the
	// reloaded certificates are accepted, not that they are presented).
	n1CallsBefore := metricSum(t, hc, nodeHTTP["n1"], "tako_peer_calls_total", `peer="n2"`, `outcome="ok"`)
	if err := procs["n2"].stop(t); err != nil {
		t.Fatalf("n2's exit after SIGTERM: %v", err)
	}
	startNode("n2")
	waitHealthyHTTPS(t, hc, procs["n2"], nodeHTTP["n2"])
	// The proxy coordinates each request itself, sending it to every
	// replica: with write_quorum all, every write through it reaches n2's
	// store (checked below), so the proxy dialled n2 again. A write through
	// n1's own HTTP port, which n1 coordinates, makes n1 dial n2 again.
	for i := range 10 {
		putGet("after restarting n2", fmt.Sprintf("restarted%d", i), newSerial)
	}
	if code, body, _, err := httpsDo(hc, "PUT", "https://"+nodeHTTP["n1"]+"/values/through-n1", []byte("v")); err != nil || code != http.StatusOK {
		t.Fatalf("after restarting n2: PUT through n1: %d %v %s", code, err, body)
	}
	fromN1 := metricSum(t, hc, nodeHTTP["n1"], "tako_peer_calls_total", `peer="n2"`, `outcome="ok"`) - n1CallsBefore
	t.Logf("after restarting n2: n1 called it %v times", fromN1)
	if fromN1 <= 0 {
		t.Error("n1 made no call to the restarted n2")
	}
	if !storeHolds(t, nodeBinary["n2"], binaryConfig(), "through-n1") {
		t.Error("n2 restarted: its store lacks the key written through n1 with write_quorum all")
	}
	for _, id := range []string{"n1", "n2"} {
		if !storeHolds(t, nodeBinary[id], binaryConfig(), "restarted9") {
			t.Errorf("n2 restarted: %s's store lacks a key written with write_quorum all", id)
		}
	}

	// A broken key file: every reload fails, and nothing changes.
	writeOver(t, files.Key, []byte("not a key\n"), 0o600)
	hupAll(t, procs, "SIGHUP: reloading the TLS certificate failed")
	for name, p := range procs {
		if line := lineWith(p.output(), "reloading the TLS certificate failed"); !strings.Contains(line, files.Key) {
			t.Errorf("%s's log of the failed reload does not name the key file %s: %s", name, files.Key, line)
		}
		if strings.Count(p.output(), "SIGHUP: reloaded the TLS certificate") > 1 {
			t.Errorf("%s logged a successful reload of a broken key file", name)
		}
	}
	checkSerials("after the failed reload", newSerial)
	for _, k := range kept {
		k.check(t, "after the failed reload")
	}
	checkBinary("after the failed reload")
	putGet("after the failed reload", "broken", newSerial)
}

// hupAll sends SIGHUP to every process and waits until each has logged
// logLine once more than before, failing if one exits.
func hupAll(t *testing.T, procs map[string]*process, logLine string) {
	t.Helper()
	before := map[string]int{}
	for name, p := range procs {
		before[name] = strings.Count(p.output(), logLine)
		if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP to %s: %v", name, err)
		}
	}
	began := time.Now()
	for name, p := range procs {
		for deadline := time.Now().Add(30 * time.Second); strings.Count(p.output(), logLine) <= before[name]; time.Sleep(20 * time.Millisecond) {
			select {
			case <-p.done:
				t.Fatalf("%s exited after SIGHUP: %v", name, p.err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not log %q within 30 s of SIGHUP", name, logLine)
			}
		}
	}
	t.Logf("%q logged by all %d processes %v after SIGHUP", logLine, len(procs), time.Since(began).Round(time.Millisecond))
}

// lineWith returns the first line of out that contains s.
func lineWith(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// writeOver replaces the content of the file at path.
func writeOver(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// ctxFor returns a context that ends after 30 s or with the test.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newHTTPSClient returns a client that trusts roots and opens a new
// connection, so a new handshake, for every request.
func newHTTPSClient(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// httpsDo sends one request and returns the status, the body and the
// serial number of the certificate the server presented.
func httpsDo(hc *http.Client, method, url string, body []byte) (int, []byte, *big.Int, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.TLS == nil {
		return resp.StatusCode, b, nil, fmt.Errorf("%s %s: not over TLS", method, url)
	}
	return resp.StatusCode, b, resp.TLS.PeerCertificates[0].SerialNumber, err
}

// waitHealthyHTTPS is waitHealthy over HTTPS: it polls https://addr/health
// until it answers "ok".
func waitHealthyHTTPS(t *testing.T, hc *http.Client, p *process, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was healthy: %v\n%s", p.name, p.err, p.output())
		default:
		}
		code, body, _, err := httpsDo(hc, "GET", "https://"+addr+"/health", nil)
		if err == nil && code == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
			return
		}
		last = fmt.Sprintf("%d %q %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not healthy at https://%s after 30 s (last: %s)", p.name, addr, last)
}

// metricSum returns the sum of the samples of the metric name, among those
// whose labels include every one of labels (`key="value"`), that the
// process serving HTTPS at addr exposes on /metrics.
func metricSum(t *testing.T, hc *http.Client, addr, name string, labels ...string) float64 {
	t.Helper()
	code, body, _, err := httpsDo(hc, "GET", "https://"+addr+"/metrics", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET https://%s/metrics: %d %v", addr, code, err)
	}
	var sum float64
	for line := range strings.Lines(string(body)) {
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(series, l)
		}
		if !matches {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s/metrics: %q: %v", addr, line, err)
		}
		sum += v
	}
	return sum
}

// presentedSerial returns the serial number of the certificate that the
// server at addr presents to a new TLS connection.
func presentedSerial(addr string, cfg *tls.Config) (*big.Int, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// storeHolds asks the node at the binary address addr whether its own
// store holds key.
func storeHolds(t *testing.T, addr string, cfg *tls.Config, key string) bool {
	t.Helper()
	conn, err := wire.Dial(ctxFor(t), addr, wire.DialOptions{TLS: cfg, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := conn.Call(ctxFor(t), &wire.Request{Op: wire.OpReplicaGet, Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Found
}

// serialBox holds a serial number that a TLS callback sets.
type serialBox struct {
	mu sync.Mutex // guards v
	v  *big.Int
}

func (b *serialBox) set(v *big.Int) { b.mu.Lock(); b.v = v; b.mu.Unlock() }

func (b *serialBox) get() *big.Int { b.mu.Lock(); defer b.mu.Unlock(); return b.v }

// keptHTTPS is one keep-alive HTTPS connection on which the test sends the
// same GET again and again, written and read by hand so that no transport
// can silently replace the connection.
type keptHTTPS struct {
	name, addr, path, want string
	conn                   *tls.Conn
	r                      *bufio.Reader
}

func dialKeptHTTPS(t *testing.T, name, addr, path, want string, roots *x509.CertPool) *keptHTTPS {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("a keep-alive connection to the %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &keptHTTPS{name: name, addr: addr, path: path, want: want, conn: conn, r: bufio.NewReader(conn)}
}

// serial returns the serial number the server presented at the handshake.
func (k *keptHTTPS) serial() *big.Int {
	return k.conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// check sends the GET on the connection and checks the answer.
func (k *keptHTTPS) check(t *testing.T, when string) {
	t.Helper()
	k.conn.SetDeadline(time.Now().Add(30 * time.Second))
	req, err := http.NewRequest("GET", "https://"+k.addr+k.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Write(k.conn); err != nil {
		t.Errorf("%s: writing on the keep-alive connection to the %s: %v", when, k.name, err)
		return
	}
	resp, err := http.ReadResponse(k.r, req)
	if err != nil {
		t.Errorf("%s: reading from the keep-alive connection to the %s: %v", when, k.name, err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != k.want || resp.Close {
		t.Errorf("%s: GET %s on the keep-alive connection to the %s: %d %q %v (closing: %v), want 200 %q",
			when, k.path, k.name, resp.StatusCode, body, err, resp.Close, k.want)
	}
}

// TestSIGHUPDoesNotStopAProcess: `kill -HUP` sent to every Tako process of
// a host (to reload certificates) must not end the processes that have
// nothing to reload: a node and a proxy still waiting for their
// configuration, and a node running without a tls section.
func TestSIGHUPDoesNotStopAProcess(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	nowhere := fmt.Sprintf("127.0.0.1:%d", ports[0]) // no coordinator listens there
	waiting := map[string]*process{
		"waiting node":  start(t, dir, "tako-node", "-id", "n1", "-c", nowhere, "-v", filepath.Join(dir, "a")),
		"waiting proxy": start(t, dir, "tako-proxy", "-p", fmt.Sprint(ports[1]), "-b", "127.0.0.1", "-c", nowhere, "-v", filepath.Join(dir, "b")),
	}
	cfg := writeFile(t, dir, "plain.yaml", fmt.Sprintf(`active_deployment: d
deployments:
  d:
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
`, ports[2], freePorts(t, 1)[0]))
	plain := start(t, dir, "tako-node", "-id", "n1", "-cfg", cfg, "-v", filepath.Join(dir, "c"))
	waitHealthy(t, plain, fmt.Sprintf("http://127.0.0.1:%d", ports[2]))
	waiting["node without tls"] = plain
	for _, p := range waiting {
		waitFor(t, p.name+" to log", func() bool { return p.output() != "" })
	}
	for _, p := range waiting {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	for what, p := range waiting {
		select {
		case <-p.done:
			t.Errorf("the %s ended on SIGHUP: %v", what, p.err)
		default:
		}
	}
}
