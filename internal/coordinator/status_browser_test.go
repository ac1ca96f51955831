package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/testcluster"
)

// screenshotPath is where TAKO_UPDATE_SCREENSHOT=1 puts the browser test's
// screenshot, for docs/operations.md.
const screenshotPath = "../../docs/img/status-page-node-down.png"

// chromium returns the path of a Chromium binary, skipping the test when
// there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium or chromium-browser binary: the status page is not tested in a browser")
	return ""
}

// browse runs headless Chromium on url with extra flags and returns what it
// printed.
func browse(t *testing.T, bin, url string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", flags, err, stderr.Bytes())
	}
	return out
}

// nodeStates returns the data-state of every element of dom whose
// data-node is id.
func nodeStates(dom []byte, id string) []string {
	tag := regexp.MustCompile(`<[a-z]+\b[^>]*\bdata-node="` + regexp.QuoteMeta(id) + `"[^>]*>`)
	state := regexp.MustCompile(`\bdata-state="([a-z]+)"`)
	var out []string
	for _, el := range tag.FindAll(dom, -1) {
		m := state.FindSubmatch(el)
		if m == nil {
			out = append(out, "")
			continue
		}
		out = append(out, string(m[1]))
	}
	return out
}

// checkStates checks that the page shows every node id, each of its
// elements in the wanted state.
func checkStates(t *testing.T, dom []byte, want map[string]string) {
	t.Helper()
	for id, state := range want {
		if !bytes.Contains(dom, []byte(">"+id+"<")) {
			t.Errorf("the page does not show node %s as text", id)
		}
		got := nodeStates(dom, id)
		if len(got) == 0 {
			t.Errorf("the page has no element with data-node=%q", id)
		}
		for _, s := range got {
			if s != state {
				t.Errorf("node %s: an element with data-state=%q, want %q", id, s, state)
			}
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", dom)
	}
}

// startCoordinator serves cluster's configuration, with a coordinators
// section added, from a Server scraping every interval.
func startCoordinator(t *testing.T, cluster *testcluster.Cluster, interval time.Duration) string {
	t.Helper()
	text, err := os.ReadFile(cluster.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, port := listen(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tako.yaml")
	writeFile(t, path, fmt.Sprintf("master_coordinator: c1\ncoordinators:\n  c1: [127.0.0.1, %d]\n%s", port, text))
	s, err := NewServer(ServerOptions{ID: "c1", ConfigPath: path, StateDir: filepath.Join(dir, "state"),
		Logger: testLogger(t), StatusInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, ln)
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// startLoad writes keys through the HTTP API of the nodes at urls, one
// every 10 ms, so that the page has keys and requests to show; the
// returned stop ends it and waits for it.
func startLoad(urls []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			put(ctx, fmt.Sprintf("%s/values/key-%d", urls[i%len(urls)], i%500))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// put writes a value to url, ignoring failures: it is only load.
func put(ctx context.Context, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader("a value"))
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestStatusPageInBrowser draws the status page of a real cluster in
// headless Chromium, before and after a node stops.
func TestStatusPageInBrowser(t *testing.T) {
	bin := chromium(t)
	cluster, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1", "n2"}, {"n3", "n4"}}, BucketsPerKey: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	const interval = 300 * time.Millisecond
	url := startCoordinator(t, cluster, interval)
	stopLoad := startLoad([]string{cluster.HTTPURL("n1"), cluster.HTTPURL("n2")})
	defer stopLoad()

	waitUntil(t, 10*time.Second, "every node up in /status", func() bool {
		st := getStatus(t, url)
		for _, n := range st.Nodes {
			if n.State != "up" {
				return false
			}
		}
		return len(st.Nodes) == 4
	})
	dom := browse(t, bin, url+"/", "--dump-dom")
	checkStates(t, dom, map[string]string{"n1": "up", "n2": "up", "n3": "up", "n4": "up"})

	if err := cluster.StopNode("n3"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * interval)
	waitUntil(t, 10*time.Second, "n3 down in /status", func() bool {
		return nodeByID(t, getStatus(t, url), "n3").State == "down"
	})
	dom = browse(t, bin, url+"/", "--dump-dom")
	checkStates(t, dom, map[string]string{"n1": "up", "n2": "up", "n3": "down", "n4": "up"})

	shot := filepath.Join(t.TempDir(), "status.png")
	browse(t, bin, url+"/", "--hide-scrollbars", "--window-size=1280,900", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("the screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Fatalf("the screenshot is no PNG of a page (%d bytes)", len(png))
	}
	if os.Getenv("TAKO_UPDATE_SCREENSHOT") == "1" {
		if err := os.MkdirAll(filepath.Dir(screenshotPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", screenshotPath)
	}
}

// TestStatusPageRefillInBrowser draws the page of newStatusFixture's fake
// nodes in headless Chromium: n3, which refills, shows its progress under
// its state, and no other node shows any.
func TestStatusPageRefillInBrowser(t *testing.T) {
	bin := chromium(t)
	fx := newStatusFixture(t)
	dom := browse(t, bin, fx.url+"/", "--dump-dom")
	refill := regexp.MustCompile(`<span\b[^>]*\bdata-refill="([^"]*)"[^>]*>([^<]*)</span>`)
	var got []string
	for _, m := range refill.FindAllSubmatch(dom, -1) {
		got = append(got, string(m[1])+": "+string(m[2]))
	}
	want := "n3: refilling: 540 MiB / 12,345 keys to go at 180 MiB/s, ~3s left"
	if len(got) != 1 || got[0] != want {
		t.Errorf("the refills on the page: %q, want only %q", got, want)
	}
	checkStates(t, dom, map[string]string{"n1": "up", "n2": "down", "n3": "recovering", "n4": "unknown", "n5": "up"})
}
