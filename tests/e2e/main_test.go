// Package e2e tests Tako's built binaries as an operator runs them: real
// processes, real ports on loopback, real disks. TestMain builds the
// programs once into a temporary directory.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the programs TestMain built.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tako-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "../../cmd/...")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the programs: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin returns the path of a built program.
func bin(name string) string { return filepath.Join(binDir, name) }

// handedOut remembers every port freePorts returned, so that it never
// returns one twice: the kernel may offer a port again once its listener
// is closed, before the process it was meant for has bound it.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// freePorts returns n distinct TCP ports free on 127.0.0.1 right now, none
// returned before in this test process.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if handedOut[port] {
			continue
		}
		handedOut[port] = true
		ports = append(ports, port)
	}
	return ports
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// process is a running program whose output goes to the test log.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed

	mu  sync.Mutex // guards out
	out bytes.Buffer
}

// start runs a built program with args in dir.
func start(t *testing.T, dir, program string, args ...string) *process {
	t.Helper()
	return startCmd(t, dir, program+" "+strings.Join(args, " "), exec.Command(bin(program), args...))
}

// startWithUmask runs a built program with args in dir, as a shell started
// with the given umask would: `sh -c 'umask UMASK; exec PROGRAM ARGS...'`.
func startWithUmask(t *testing.T, dir, umask, program string, args ...string) *process {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", "umask " + umask + ` && exec "$0" "$@"`, bin(program)}, args...)...)
	return startCmd(t, dir, "(umask "+umask+") "+program+" "+strings.Join(args, " "), cmd)
}

// startCmd runs cmd in dir, named name in the test's messages.
func startCmd(t *testing.T, dir, name string, cmd *exec.Cmd) *process {
	t.Helper()
	cmd.Dir = dir
	p := &process{t: t, name: name, cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		p.mu.Lock()
		defer p.mu.Unlock()
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("output of %s:\n%s", p.name, p.out.String())
		}
	})
	return p
}

// output returns what the process printed so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and returns the exit error (nil for exit 0).
func (p *process) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20 s of SIGTERM", p.name)
		return nil
	}
}

// waitExit waits for a process that should end by itself.
func (p *process) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still running after 20 s", p.name)
		return nil
	}
}

// waitHealthy polls base/health until it answers 200.
func waitHealthy(t *testing.T, p *process, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was healthy: %v\n%s", p.name, p.err, p.output())
		default:
		}
		resp, err := http.Get(base + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// "ok: recovering ..." means serving, but still bringing
			// back data it may lack: wait for plain "ok".
			if resp.StatusCode == 200 && strings.TrimSpace(string(body)) == "ok" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not healthy at %s after 20 s\n%s", p.name, base, p.output())
}

// httpDo sends one request and returns status, headers and body.
func httpDo(ctx context.Context, method, url string, body []byte, header map[string]string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}
