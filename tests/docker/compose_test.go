// Package docker tests Tako as containers: the image that
// scripts/build-image.sh builds and the cluster of deploy/docker-compose.yml
// (a coordinator, ten nodes in five buckets of two, a proxy), on the Docker
// engine of this machine. Faults that loopback processes cannot show (a
// whole host killed, cut off, frozen or losing its volume) are injected on
// the containers. The tests skip when docker or docker-compose is missing.
package docker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// compose is one running compose project.
type compose struct {
	t       *testing.T
	project string
	base    string // the proxy's URL on the host
	env     []string
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

// upCluster builds the image and starts the compose cluster under a
// project name of its own, with the proxy on a free host port.
func upCluster(t *testing.T) *compose {
	t.Helper()
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("the Docker engine does not answer: %v %s", err, out)
	}
	cmd := exec.Command("bash", "scripts/build-image.sh", "tako:test")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the image: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := &compose{t: t, project: fmt.Sprintf("takotest%d", os.Getpid()),
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
		env:  []string{"TAKO_IMAGE=tako:test", fmt.Sprintf("TAKO_PROXY_PORT=%d", port)}}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker-compose", "-f", "../../deploy/docker-compose.yml", "-p", c.project, "logs", "--tail", "20").CombinedOutput()
			t.Logf("container logs:\n%s", out)
		}
		exec.Command("docker-compose", "-f", "../../deploy/docker-compose.yml", "-p", c.project, "down", "-v", "-t", "5").Run()
	})
	c.compose("up", "-d")
	// The cluster serves once a write through the proxy is acknowledged.
	c.waitFor("the cluster to serve", 60*time.Second, func() bool {
		code, _, _ := c.do("POST", "/values/ready", []byte("yes"))
		return code == 200
	})
	return c
}

func (c *compose) compose(args ...string) string {
	return run(c.t, c.env, "docker-compose", append([]string{"-p", c.project}, args...)...)
}

func (c *compose) container(service string) string { return c.project + "_" + service + "_1" }

func (c *compose) do(method, path string, body []byte) (int, http.Header, []byte) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (c *compose) waitFor(what string, limit time.Duration, cond func() bool) {
	c.t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// TestComposeClusterServesAndSurvivesAKilledNode starts the compose cluster,
// checks the README's requests through the published proxy, then kills a
// node container with SIGKILL while four clients write, restarts it, and
// reads back every acknowledged write.
func TestComposeClusterServesAndSurvivesAKilledNode(t *testing.T) {
	c := upCluster(t)
	if code, h, _ := c.do("POST", "/values/greeting", []byte("hello, world")); code != 200 || h.Get("X-Timestamp") == "" {
		t.Fatalf("POST: %d", code)
	}
	if code, _, body := c.do("GET", "/values/greeting", nil); code != 200 || string(body) != "hello, world" {
		t.Fatalf("GET: %d %q", code, body)
	}
	if code, _, _ := c.do("DELETE", "/values/greeting", nil); code/100 != 2 {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _, _ := c.do("GET", "/values/greeting", nil); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	acked := map[string]string{}
	var ops, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("v%d", i)
				code, _, _ := c.do("POST", "/values/"+k, []byte(v))
				ops.Add(1)
				if code != 200 {
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}()
	}
	time.Sleep(2 * time.Second)
	run(t, nil, "docker", "kill", "-s", "KILL", c.container("tako-node-03"))
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	run(t, nil, "docker", "start", c.container("tako-node-03"))
	lost := 0
	for k, v := range acked {
		code, _, body := c.do("GET", "/values/"+k, nil)
		if code != 200 || string(body) != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged %s: %d %q", k, code, body)
			}
		}
	}
	t.Logf("kill -9 of tako-node-03 under load: %d operations, %d acknowledged, %d failed, %d lost", ops.Load(), len(acked), failed.Load(), lost)
	if lost > 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
	if f, n := failed.Load(), ops.Load(); f*100 > n {
		t.Errorf("%d of %d writes failed with one node of four replicas down", f, n)
	}
}
