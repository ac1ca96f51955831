package programs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/testproc"
)

// asClusterEnv, when set, makes the test binary run tako-cluster with its
// arguments instead of the tests: the tests start the cluster that way, and
// the cluster starts its children (the binary itself, re-executed) that way.
const asClusterEnv = "TAKO_TEST_RUN_AS_TAKO_CLUSTER"

func TestMain(m *testing.M) {
	if os.Getenv(asClusterEnv) == "1" {
		Cluster(os.Args[1:]) // exits
	}
	os.Exit(m.Run())
}

// clusterProcess is tako-cluster running as a child of the test.
type clusterProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed

	mu  sync.Mutex // guards out
	out bytes.Buffer
}

// Write collects the process's output.
func (p *clusterProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *clusterProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startCluster runs tako-cluster with args; the test's cleanup kills it if
// it still runs, and logs its output if the test failed.
func startCluster(t *testing.T, args ...string) *clusterProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &clusterProcess{cmd: exec.Command(exe, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), asClusterEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // its children get SIGTERM (Pdeathsig)
		<-p.done
		if t.Failed() {
			t.Logf("tako-cluster %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

// waitFor waits until the output holds s, failing the test if the process
// exits first or after two minutes (the cluster gives its processes a
// minute to come up; the race detector slows them).
func (p *clusterProcess) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(p.output(), s) {
		select {
		case <-p.done:
			t.Fatalf("tako-cluster exited (%v) before printing %q", p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tako-cluster has not printed %q after 2 minutes", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *clusterProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("tako-cluster exit after SIGTERM: %v", p.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tako-cluster still runs 30 s after SIGTERM")
	}
}

// freePorts returns n distinct ports free on 127.0.0.1 now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // held until all are chosen, so none comes twice
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// do sends one request with hc and returns the status and the body.
func do(hc *http.Client, method, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestClusterWithTLSServesHTTPSOnly runs tako-cluster -tls on a
// configuration with a coordinator and three nodes and no tls section:
// a PUT then a GET over HTTPS through the proxy, verified with the CA it
// printed, work; plain HTTP is refused on the proxy and on a node; a client
// that does not trust the CA fails; the live status sees every process up
// over HTTPS, then a node killed. A second run on the same directory keeps
// the CA, and the value.
func TestClusterWithTLSServesHTTPSOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster of processes")
	}
	dir := t.TempDir()
	p := freePorts(t, 8)
	cfg := fmt.Sprintf(`master_coordinator: c1
coordinators:
    c1: [127.0.0.1, %d]
active_deployment: d
deployments:
    d:
        hash:
            buckets_per_key: 2
        buckets:
            b1:
                n1: [127.0.0.1, %d, %d]
            b2:
                n2: [127.0.0.1, %d, %d]
            b3:
                n3: [127.0.0.1, %d, %d]
`, p[0], p[1], p[2], p[3], p[4], p[5], p[6])
	cfgPath := filepath.Join(dir, "three.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	varDir := filepath.Join(dir, "var")
	proxyPort := strconv.Itoa(p[7])
	proxy := "https://localhost:" + proxyPort
	node1 := fmt.Sprintf("127.0.0.1:%d", p[1])
	caFile := filepath.Join(varDir, "tls", "ca.pem")

	tc := startCluster(t, cfgPath, "-tls", "-p", proxyPort, "-v", varDir)
	tc.waitFor(t, "Ctrl-C stops the cluster")
	for _, want := range []string{
		"https://" + node1,
		"curl --cacert " + caFile + " -X POST --data-binary hello " + proxy + "/values/greeting",
		"tako -ca " + caFile + " -s " + proxy + " get greeting",
		"tako -ca " + caFile + " -s " + fmt.Sprintf("127.0.0.1:%d", p[0]) + " status",
		filepath.Join(varDir, "tls", "three.yaml"),
	} {
		if !strings.Contains(tc.output(), want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("the CA it printed: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()

	if code, body, err := do(hc, "PUT", proxy+"/values/greeting", "hello over TLS"); err != nil || code != 200 {
		t.Fatalf("PUT over HTTPS: %d %q %v", code, body, err)
	}
	if code, body, err := do(hc, "GET", proxy+"/values/greeting", ""); err != nil || code != 200 || body != "hello over TLS" {
		t.Fatalf("GET over HTTPS: %d %q %v", code, body, err)
	}
	if code, body, err := do(hc, "GET", "https://"+node1+"/values/greeting", ""); err != nil || code != 200 || body != "hello over TLS" {
		t.Fatalf("GET over HTTPS on n1: %d %q %v", code, body, err)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	for _, base := range []string{"http://localhost:" + proxyPort, "http://" + node1} {
		if code, body, err := do(plain, "GET", base+"/values/greeting", ""); err == nil && (code != http.StatusBadRequest || strings.Contains(body, "hello")) {
			t.Errorf("plain HTTP to %s: %d %q, want 400 or a failure", base, code, body)
		}
	}
	var unknown *tls.CertificateVerificationError
	if _, _, err := do(plain, "GET", proxy+"/values/greeting", ""); !errors.As(err, &unknown) {
		t.Errorf("HTTPS without the CA: %v, want a certificate verification error", err)
	}

	// The live status (a line per change when not on a terminal) asks
	// over HTTPS: no process seems down after two rounds, and a node
	// killed shows.
	time.Sleep(5 * time.Second)
	if strings.Contains(tc.output(), "DOWN") {
		t.Fatalf("the status says a process is down while all serve")
	}
	n2 := childPID(t, "-child-node -id n2 -v "+varDir)
	if err := syscall.Kill(n2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down := regexp.MustCompile(`n2 +node b2 +DOWN`)
	for deadline := time.Now().Add(20 * time.Second); !down.MatchString(tc.output()); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the status did not report n2 down within 20 s")
		}
	}
	tc.stop(t)

	// The same directory again: the same CA, the data kept.
	tc = startCluster(t, cfgPath, "-tls", "-p", proxyPort, "-v", varDir)
	tc.waitFor(t, "Ctrl-C stops the cluster")
	if !strings.Contains(tc.output(), "reused the CA and the certificate") {
		t.Errorf("the second run does not say it reused the CA")
	}
	if again, err := os.ReadFile(caFile); err != nil || !bytes.Equal(again, ca) {
		t.Fatalf("the CA changed across runs (%v)", err)
	}
	if code, body, err := do(hc, "GET", proxy+"/values/greeting", ""); err != nil || code != 200 || body != "hello over TLS" {
		t.Fatalf("GET over HTTPS after a restart, with the first run's CA: %d %q %v", code, body, err)
	}
	tc.stop(t)
}

// childPID returns the PID of the one process whose command line contains
// match (unique to the test: processes of other tests share /proc).
func childPID(t *testing.T, match string) int {
	t.Helper()
	pid, err := testproc.PID(match)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestClusterWithAnAuthSection runs tako-cluster on a configuration with an
// auth section: without an admin token in $TAKO_TOKEN it refuses at once,
// saying what to do; with one, its processes start (they fetch the
// configuration and call each other with it), the proxy serves a request
// with a write token and answers 401 without one.
func TestClusterWithAnAuthSection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster of processes")
	}
	dir := t.TempDir()
	section, tokens, err := auth.NewSection(auth.Write, auth.Admin)
	if err != nil {
		t.Fatal(err)
	}
	p := freePorts(t, 6)
	cfgPath := filepath.Join(dir, "auth.yaml")
	if err := os.WriteFile(cfgPath, []byte(section+fmt.Sprintf(`coordinators:
    c1: [127.0.0.1, %d]
active_deployment: d
deployments:
    d:
        buckets:
            b1:
                n1: [127.0.0.1, %d, %d]
                n2: [127.0.0.1, %d, %d]
`, p[0], p[1], p[2], p[3], p[4])), 0o644); err != nil {
		t.Fatal(err)
	}
	proxyPort := strconv.Itoa(p[5])
	varDir := filepath.Join(dir, "var")

	t.Setenv("TAKO_TOKEN", tokens["write"])
	refused := startCluster(t, cfgPath, "-p", proxyPort, "-v", varDir)
	select {
	case <-refused.done:
	case <-time.After(30 * time.Second):
		t.Fatal("tako-cluster with a write token in TAKO_TOKEN still runs after 30 s")
	}
	if refused.err == nil || !strings.Contains(refused.output(), "set TAKO_TOKEN to one it lists") {
		t.Fatalf("tako-cluster with a write token: %v, output:\n%s\nwant a failure saying what to do", refused.err, refused.output())
	}

	t.Setenv("TAKO_TOKEN", tokens["admin"])
	tc := startCluster(t, cfgPath, "-p", proxyPort, "-v", varDir)
	tc.waitFor(t, "Ctrl-C stops the cluster")
	if want := `curl -H "Authorization: Bearer $TAKO_TOKEN" -X POST`; !strings.Contains(tc.output(), want) {
		t.Errorf("the hint does not give the token (%s):\n%s", want, tc.output())
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	base := "http://localhost:" + proxyPort + "/values/greeting"
	req, _ := http.NewRequest("POST", base, strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer "+tokens["write"])
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST with the write token: %d, want 200 (both nodes, quorum 2 of 2)", resp.StatusCode)
	}
	if code, _, err := do(hc, "GET", base, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET without a token: %d %v, want 401", code, err)
	}
	tc.stop(t)
}
