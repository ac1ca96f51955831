package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// standaloneConfig is the seed's standalone.yaml on free ports.
func standaloneConfig(t *testing.T, dir string, extra string) (cfgPath, base string) {
	t.Helper()
	ports := freePorts(t, 2)
	cfg := fmt.Sprintf(`# Tako Configuration
---
active_deployment: standalone
deployments:
    standalone:
        read_repair: no
%s        hash:
            buckets_per_key: 1
        buckets:
            b1:
                n1: [127.0.0.1, %d, %d]
`, extra, ports[0], ports[1])
	return writeFile(t, dir, "standalone.yaml", cfg), fmt.Sprintf("http://127.0.0.1:%d", ports[0])
}

func TestNodeServesTheHTTPAPIAndKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg, base := standaloneConfig(t, dir, "        max_value_size: 1KiB\n")
	n1 := start(t, dir, "tako-node", "-id", "n1", "-cfg", cfg)
	waitHealthy(t, n1, base)
	ctx := context.Background()

	values := map[string][]byte{
		"simple":                  []byte("hello"),
		"with/slashes//and/./":    []byte("path-like"),
		"space and ünïcode":       []byte("utf8 key"),
		"binary":                  {0, 1, 2, 255, 254, '\n', 0},
		"empty":                   {},
		strings.Repeat("k", 4096): []byte("longest key"),
	}
	for k, v := range values {
		code, h, body, err := httpDo(ctx, "POST", base+"/values/"+url.PathEscape(k), v, nil)
		if err != nil || code != 200 || h.Get("X-Timestamp") == "" {
			t.Fatalf("POST %q: %d %v %s", k, code, err, body)
		}
	}
	check := func() {
		t.Helper()
		for k, v := range values {
			code, h, body, err := httpDo(ctx, "GET", base+"/values/"+url.PathEscape(k), nil, nil)
			if err != nil || code != 200 || !bytes.Equal(body, v) {
				t.Fatalf("GET %q: %d %v %q, want %q", k, code, err, body, v)
			}
			if h.Get("Content-Type") != "application/octet-stream" || h.Get("Last-Modified") == "" {
				t.Errorf("GET %q: headers %v", k, h)
			}
			code, h2, stat, err := httpDo(ctx, "GET", base+"/stat/"+url.PathEscape(k), nil, nil)
			if err != nil || code != 200 || string(stat) != h.Get("X-Timestamp") || h2.Get("X-Timestamp") != string(stat) {
				t.Fatalf("stat %q: %d %v %q (GET said %s)", k, code, err, stat, h.Get("X-Timestamp"))
			}
		}
	}
	check()

	// A client timestamp: older writes and deletes lose with 409.
	code, _, _, _ := httpDo(ctx, "POST", base+"/values/ts", []byte("new"), map[string]string{"X-Timestamp": "1700000000000000"})
	if code != 200 {
		t.Fatalf("POST with X-Timestamp: %d", code)
	}
	code, h, _, _ := httpDo(ctx, "POST", base+"/values/ts", []byte("old"), map[string]string{"X-Timestamp": "1600000000000000"})
	if code != 409 || h.Get("X-Timestamp") != "1700000000000000" {
		t.Fatalf("older POST: %d X-Timestamp %q, want 409 1700000000000000", code, h.Get("X-Timestamp"))
	}
	code, _, _, _ = httpDo(ctx, "DELETE", base+"/values/ts", nil, map[string]string{"X-Timestamp": "1600000000000000"})
	if code != 409 {
		t.Fatalf("older DELETE: %d, want 409", code)
	}
	if _, _, body, _ := httpDo(ctx, "GET", base+"/values/ts", nil, nil); string(body) != "new" {
		t.Fatalf("after losing writes: %q, want new", body)
	}
	// A timestamp far in the future is refused.
	future := strconv.FormatInt(time.Now().Add(time.Hour).UnixMicro(), 10)
	if code, _, body, _ := httpDo(ctx, "POST", base+"/values/ts", []byte("future"), map[string]string{"X-Timestamp": future}); code != 400 {
		t.Fatalf("future X-Timestamp: %d %s, want 400", code, body)
	}

	// Bad input: 4xx with one line, nothing stored.
	for _, tt := range []struct {
		method, key string
		body        []byte
		header      map[string]string
		want        int
	}{
		{"POST", "", []byte("x"), nil, 400},
		{"POST", strings.Repeat("k", 4097), []byte("x"), nil, 400},
		{"POST", "big", bytes.Repeat([]byte("v"), 1025), nil, 413},
		{"POST", "badts", []byte("x"), map[string]string{"X-Timestamp": "yesterday"}, 400},
	} {
		code, _, body, err := httpDo(ctx, tt.method, base+"/values/"+tt.key, tt.body, tt.header)
		if err != nil || code != tt.want || strings.Count(strings.TrimSpace(string(body)), "\n") != 0 {
			t.Errorf("%s %.20q: %d %v %q, want %d with one line", tt.method, tt.key, code, err, body, tt.want)
		}
		if tt.key != "" && len(tt.key) <= 4096 {
			if code, _, _, _ := httpDo(ctx, "GET", base+"/values/"+tt.key, nil, nil); code != 404 {
				t.Errorf("after refused %s %q: GET %d, want 404", tt.method, tt.key, code)
			}
		}
	}

	// Delete, then the key is gone and stat shows the tombstone.
	code, h, _, _ = httpDo(ctx, "DELETE", base+"/values/simple", nil, nil)
	if code != 204 && code != 200 {
		t.Fatalf("DELETE: %d", code)
	}
	tomb := h.Get("X-Timestamp")
	if code, _, _, _ := httpDo(ctx, "GET", base+"/values/simple", nil, nil); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}
	if code, h, _, _ := httpDo(ctx, "GET", base+"/stat/simple", nil, nil); code != 404 || h.Get("X-Timestamp") != tomb {
		t.Fatalf("stat after DELETE: %d %q, want 404 %q", code, h.Get("X-Timestamp"), tomb)
	}
	delete(values, "simple")

	// Metrics count what happened.
	_, _, metrics, _ := httpDo(ctx, "GET", base+"/metrics", nil, nil)
	for _, want := range []string{`tako_http_requests_total{code="200",op="put"}`, "tako_store_keys", "tako_http_request_duration_seconds_bucket"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A clean shutdown exits 0; the data is there after a restart.
	if err := n1.stop(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, n1.output())
	}
	// Restarted with -l and -d, it logs to the file and not to stderr.
	logFile := dir + "/node.log"
	n1 = start(t, dir, "tako-node", "-id", "n1", "-cfg", cfg, "-l", logFile, "-d")
	waitHealthy(t, n1, base)
	check()
	if logged, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(logged), "node serving") {
		t.Errorf("log file %s: %v %q", logFile, err, logged)
	}
	if strings.Contains(n1.output(), "node serving") {
		t.Errorf("with -l the node still logs to stderr: %q", n1.output())
	}
	if code, _, _, _ := httpDo(ctx, "GET", base+"/values/simple", nil, nil); code != 404 {
		t.Fatalf("deleted key after restart: %d, want 404", code)
	}
}

// TestNodeKilledMidLoadLosesNoAcknowledgedWrite kills the node with SIGKILL
// while 8 clients write, restarts it, and reads back every write that had
// been answered 200.
func TestNodeKilledMidLoadLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	cfg, base := standaloneConfig(t, dir, "")
	n1 := start(t, dir, "tako-node", "-id", "n1", "-cfg", cfg)
	waitHealthy(t, n1, base)

	var mu sync.Mutex
	acked := map[string]string{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d/k%d", w, i)
				val := fmt.Sprintf("value of %s %s", key, strings.Repeat("x", i%200))
				code, _, _, err := httpDo(ctx, "POST", base+"/values/"+key, []byte(val), nil)
				if err == nil && code == 200 {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 1500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	n1.kill()
	cancel()
	wg.Wait()
	t.Logf("%d writes acknowledged before SIGKILL", len(acked))

	n1 = start(t, dir, "tako-node", "-id", "n1", "-cfg", cfg)
	waitHealthy(t, n1, base)
	lost := 0
	for k, v := range acked {
		code, _, body, err := httpDo(context.Background(), "GET", base+"/values/"+k, nil, nil)
		if err != nil || code != 200 || string(body) != v {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged %s lost: %d %v %q", k, code, err, body)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
}

// TestNodeRefusesToStart checks that every bad start exits non-zero with one
// clear line on stderr.
func TestNodeRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	good, _ := standaloneConfig(t, dir, "")
	bad := writeFile(t, dir, "bad.yaml", "active_deployment: standalone\ndeployments:\n  standalone:\n    colour: blue\n    buckets:\n      b1:\n        n1: [127.0.0.1, 70000, 4711]\n")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := writeFile(t, dir, "taken.yaml", fmt.Sprintf("active_deployment: s\ndeployments:\n  s:\n    buckets:\n      b1:\n        n1: [127.0.0.1, %d, %d]\n", ln.Addr().(*net.TCPAddr).Port, freePorts(t, 1)[0]))
	tests := []struct {
		name string
		args []string
		want []string // substrings of the one line on stderr
	}{
		{"no id", []string{"-cfg", good}, []string{"-id is required"}},
		{"no configuration", []string{"-id", "n1"}, []string{"-cfg"}},
		{"unknown flag", []string{"-id", "n1", "-cfg", good, "-frobnicate"}, []string{"frobnicate"}},
		{"missing file", []string{"-id", "n1", "-cfg", dir + "/nope.yaml"}, []string{"nope.yaml"}},
		{"invalid file", []string{"-id", "n1", "-cfg", bad}, []string{"colour", "standalone", "70000"}},
		{"id not in the file", []string{"-id", "n9", "-cfg", good}, []string{"n9", "not in"}},
		{"port taken", []string{"-id", "n1", "-cfg", taken}, []string{"address already in use"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin("tako-node"), append(tt.args, "-v", t.TempDir())...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit %v, want non-zero; stderr %q", err, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "tako-node: ") {
				t.Errorf("last stderr line %q does not start with the program name", last)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("stderr line %q lacks %q", last, w)
				}
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		out, err := exec.Command(bin("tako-node"), "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage: tako-node") || !strings.Contains(string(out), "-cfg") {
			t.Fatalf("-h: %v\n%s", err, out)
		}
	})
}
