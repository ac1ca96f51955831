// Package docker tests Tako as containers: the image that
// scripts/build-image.sh builds and the cluster of deploy/docker-compose.yml
// (a coordinator, ten nodes in five buckets of two, a proxy), on the Docker
// engine of this machine. Faults that loopback processes cannot show (a
// whole host killed, cut off, frozen or losing its volume) are injected on
// the containers. The tests skip when docker or docker-compose is missing.
package docker

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/auth"
)

// compose is one running compose project.
type compose struct {
	project string
	base    string // the proxy's URL on the host
	env     []string

	mu    sync.Mutex
	addrs map[string]string // node service → its HTTP address on the host

	// files are the compose files after deploy/docker-compose.yml (a TLS
	// override); tls, when set, is what HTTPS clients trust; token, when
	// set, is the write token that the workload's requests carry (the
	// configuration then has an auth section).
	files   []string
	cfgPath string // the suite's configuration (suiteOverride); "" for deploy/cluster.yaml's
	tls     *x509.CertPool
	token   string
	clients map[string]*http.Client // by entry, with TLS
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "../../deploy"
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The image is built once per run of the package's tests.
var (
	buildOnce sync.Once
	buildErr  error
)

// upCluster builds the image and starts the compose cluster under a
// project name of its own, with the proxy on a free host port, under the
// fault suite's configuration (suiteOverride).
func upCluster(t *testing.T) *compose { return up(t, false) }

// up starts the compose cluster; with withTLS, with a tls section in the
// configuration (certificates made by the code of tako certs), HTTPS on
// every HTTP port and mutual TLS between the nodes.
func up(t *testing.T, withTLS bool) *compose {
	t.Helper()
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("the Docker engine does not answer: %v %s", err, out)
	}
	buildOnce.Do(func() {
		cmd := exec.Command("bash", "scripts/build-image.sh", "tako:test")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the image: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := &compose{project: fmt.Sprintf("takotest%d", os.Getpid()),
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
		env:  []string{"TAKO_IMAGE=tako:test", fmt.Sprintf("TAKO_PROXY_PORT=%d", port)}}
	if withTLS {
		c.project += "tls"
		c.base = fmt.Sprintf("https://127.0.0.1:%d", port)
		c.files, c.tls, c.token = tlsOverride(t)
	} else {
		override, cfgPath := suiteOverride(t)
		c.files, c.cfgPath = []string{override}, cfgPath
	}
	t.Cleanup(func() {
		if t.Failed() {
			cmd := exec.Command("docker-compose", append(c.fileArgs(), "logs", "--tail", "20")...)
			cmd.Dir = "../../deploy"
			out, _ := cmd.CombinedOutput()
			t.Logf("container logs:\n%s", out)
		}
		cmd := exec.Command("docker-compose", append(c.fileArgs(), "down", "-v", "-t", "5")...)
		cmd.Dir = "../../deploy"
		cmd.Run()
	})
	c.compose(t, "up", "-d")
	// A new cluster's nodes start empty, so they recover first: until each
	// has finished a repair pass with every peer, a read of a key that was
	// never written answers 503 rather than 404.
	for _, s := range nodeServices() {
		c.waitFor(t, s+" to serve and finish recovering", 60*time.Second, func() bool {
			code, _, body := c.doAt(s, "GET", "/health", nil)
			if code != 200 {
				c.forget(s)
			}
			return code == 200 && strings.TrimSpace(string(body)) == "ok"
		})
	}
	// The cluster serves once a write through the proxy is acknowledged.
	c.waitFor(t, "the cluster to serve", 60*time.Second, func() bool {
		code, _, _ := c.do("POST", "/values/ready", []byte("yes"))
		return code == 200
	})
	return c
}

// compose runs docker-compose with args on the project, failing t (the
// test or subtest running) if it fails.
func (c *compose) compose(t *testing.T, args ...string) string {
	return run(t, c.env, "docker-compose", append(c.fileArgs(), args...)...)
}

// fileArgs are the -f and -p arguments of every docker-compose command.
func (c *compose) fileArgs() []string {
	args := []string{"-f", "docker-compose.yml"}
	for _, f := range c.files {
		args = append(args, "-f", f)
	}
	return append(args, "-p", c.project)
}

// client returns the HTTP client for entry: plain, or with TLS trusting
// the cluster's CA and expecting the entry's name in its certificate
// (nodes are reached by their container's address).
func (c *compose) client(entry string) *http.Client {
	if c.tls == nil {
		return httpClient
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.clients[entry]; ok {
		return cl
	}
	name := entry
	if entry == "tako-proxy" {
		name = "127.0.0.1"
	}
	cl := auth.WithToken(&http.Client{Timeout: httpClient.Timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: c.tls, ServerName: name},
	}}, c.token)
	if c.clients == nil {
		c.clients = map[string]*http.Client{}
	}
	c.clients[entry] = cl
	return cl
}

func (c *compose) container(service string) string { return c.project + "_" + service + "_1" }

func (c *compose) do(method, path string, body []byte) (int, http.Header, []byte) {
	return request(c.client("tako-proxy"), method, c.base+path, body)
}

// httpClient gives up on a request after 5 s: longer than a proxy's two
// attempts when the first replica it tries is frozen.
var httpClient = &http.Client{Timeout: 5 * time.Second}

func request(client *http.Client, method, url string, body []byte) (int, http.Header, []byte) {
	return requestAt(client, method, url, body, 0)
}

// requestAt is request with ts, when not 0, sent as X-Timestamp.
func requestAt(client *http.Client, method, url string, body []byte, ts int64) (int, http.Header, []byte) {
	hdr := http.Header{}
	if ts != 0 {
		hdr.Set("X-Timestamp", strconv.FormatInt(ts, 10))
	}
	return requestWith(client, method, url, body, hdr)
}

// requestWith is request with the headers hdr.
func requestWith(client *http.Client, method, url string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil
	}
	for name, vs := range hdr {
		req.Header[name] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// waitFor waits until cond holds, and fails t (the test or subtest
// running, which FailNow must be called from) after limit.
func (c *compose) waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// nodeURL returns the base URL of a node service's HTTP port, at its
// container's address on the compose network, which the host reaches.
func (c *compose) nodeURL(service string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.addrs[service]; ok {
		return a, nil
	}
	ip, err := c.ip(service)
	if err != nil {
		return "", err
	}
	if c.addrs == nil {
		c.addrs = map[string]string{}
	}
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	c.addrs[service] = scheme + "://" + ip + ":5711"
	return c.addrs[service], nil
}

// forget drops the cached address of a service whose container changed.
func (c *compose) forget(service string) {
	c.mu.Lock()
	delete(c.addrs, service)
	c.mu.Unlock()
}

// doAt sends a request to entry: tako-proxy (through its published port)
// or a node service's HTTP port. Code 0 means no answer.
func (c *compose) doAt(entry, method, path string, body []byte) (int, http.Header, []byte) {
	return c.doAtTS(entry, method, path, body, 0)
}

// doAtTS is doAt with ts, when not 0, sent as X-Timestamp.
func (c *compose) doAtTS(entry, method, path string, body []byte, ts int64) (int, http.Header, []byte) {
	hdr := http.Header{}
	if ts != 0 {
		hdr.Set("X-Timestamp", strconv.FormatInt(ts, 10))
	}
	return c.doAtHeaders(entry, method, path, body, hdr)
}

// waitHealthy waits until each node service answers 200 on /health (a
// recovering node serves, and counts as healthy).
func (c *compose) waitHealthy(t *testing.T, services ...string) {
	t.Helper()
	for _, s := range services {
		c.forget(s)
		c.waitFor(t, s+" to be healthy", 60*time.Second, func() bool {
			code, _, _ := c.doAt(s, "GET", "/health", nil)
			if code != 200 {
				c.forget(s) // its address may have changed
			}
			return code == 200
		})
	}
}
