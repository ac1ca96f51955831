package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// testLogger sends logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// coord is a coordinator entry of a test configuration.
type coord struct {
	id   string
	port int
}

// configText returns a configuration naming the coordinators (master as
// master_coordinator when not "") and one bucket of the nodes.
func configText(master string, coords []coord, nodes ...string) string {
	var b strings.Builder
	if master != "" {
		fmt.Fprintf(&b, "master_coordinator: %s\n", master)
	}
	if len(coords) > 0 {
		b.WriteString("coordinators:\n")
		for _, c := range coords {
			fmt.Fprintf(&b, "  %s: [127.0.0.1, %d]\n", c.id, c.port)
		}
	}
	b.WriteString("active_deployment: cluster\ndeployments:\n  cluster:\n    buckets:\n      b1:\n")
	for i, n := range nodes {
		fmt.Fprintf(&b, "        %s: [127.0.0.1, %d]\n", n, 17001+i)
	}
	return b.String()
}

// writeFile writes text to path.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// listen returns a listener on a free loopback port, and the port.
func listen(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// freePort returns a loopback port that nothing listens on (any more).
func freePort(t *testing.T) int {
	t.Helper()
	ln, port := listen(t)
	ln.Close()
	return port
}

// newTestServer makes a Server of the configuration text, with its own
// file and state directory under dir.
func newTestServer(t *testing.T, dir, id, text string, wall func() time.Time) *Server {
	t.Helper()
	path := filepath.Join(dir, id+".yaml")
	writeFile(t, path, text)
	s, err := NewServer(ServerOptions{
		ID: id, ConfigPath: path, StateDir: filepath.Join(dir, "state", id),
		Logger: testLogger(t).With("test_server", id), Wall: wall, FollowInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return s
}

// run serves s on ln until the returned stop is called (or the test ends);
// stop waits for Run to return and fails the test if it returned an error.
func run(t *testing.T, s *Server, ln net.Listener) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// startWatcher runs a Watcher of opts until the returned stop is called (or
// the test ends).
func startWatcher(t *testing.T, opts WatcherOptions) (*Watcher, func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t).With("test_watcher", opts.CacheDir)
	}
	w, err := NewWatcher(opts)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still not %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// get does GET url and returns the status, the X-Timestamp and the body.
func get(t *testing.T, client *http.Client, url string) (int, int64, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, 0, ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
	}
	ts, _ := strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
	return resp.StatusCode, ts, string(body)
}

// canonicalOf returns the canonical JSON of cfg.
func canonicalOf(t *testing.T, cfg *config.Config) string {
	t.Helper()
	b, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasNode reports whether cfg names node id.
func hasNode(id string) func(*config.Config) bool {
	return func(cfg *config.Config) bool {
		_, _, ok := cfg.Node(id)
		return ok
	}
}

// fixedClock is a wall clock that tests set.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fixedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
