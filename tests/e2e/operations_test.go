package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// docBlocks returns the ```sh blocks of a document under docs/.
func docBlocks(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestOperationsGuideWorksAsWritten runs the command blocks of
// docs/operations.md in order, in a scratch copy of the repository's
// examples with the built programs in bin/, and checks what the guide says
// happens.
func TestOperationsGuideWorksAsWritten(t *testing.T) {
	for _, port := range []int{4700, 4701, 4705, 4710, 4711, 4712, 5701, 5703, 5710, 5711, 5712, 8080} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Skipf("port %d is taken on this machine: the guide's cluster cannot run here", port)
		}
		ln.Close()
	}
	for _, prog := range []string{"curl", "sed"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s is not installed", prog)
		}
	}
	blocks := docBlocks(t, "operations.md")
	if len(blocks) != 10 {
		t.Fatalf("docs/operations.md has %d sh blocks; this test follows 10 (build, start, change, coordinator down, add a bucket, promote, remove a bucket, lost disk, backups, stop)", len(blocks))
	}
	dir := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(dir, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "examples"), os.DirFS("../../examples")); err != nil {
		t.Fatal(err)
	}
	var groups []int
	t.Cleanup(func() {
		for _, g := range groups {
			syscall.Kill(-g, syscall.SIGKILL)
		}
		if t.Failed() {
			for _, f := range []string{"c1.log", "n3.log", "p1.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
	})
	run := func(i int, block string) string {
		t.Helper()
		// The programs are built already: bin/ points at them.
		block = regexp.MustCompile(`(?m)^go build .*$`).ReplaceAllString(block, "")
		script := filepath.Join(dir, fmt.Sprintf("block%d.sh", i))
		if err := os.WriteFile(script, []byte("set -e\n"+block), 0o755); err != nil {
			t.Fatal(err)
		}
		outFile := script + ".out"
		f, err := os.Create(outFile)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// Output to a file, not a pipe: the block's background processes
		// inherit it, and a pipe would stay open as long as they run.
		cmd := exec.Command("sh", script)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, cmd.Process.Pid)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("block %d did not finish in 60 s", i)
		}
		out, _ := os.ReadFile(outFile)
		if err != nil {
			t.Fatalf("block %d failed: %v\n%s\n%s", i, err, block, out)
		}
		return string(out)
	}

	run(0, blocks[0])
	if out := run(1, blocks[1]); !strings.Contains(out, "ok") {
		t.Fatalf("after starting by hand, the proxy's /health said %q", out)
	}
	ctx := context.Background()
	if code, _, _, err := httpDo(ctx, "POST", "http://localhost:8080/values/guide", []byte("by hand"), nil); err != nil || code != 200 {
		t.Fatalf("POST through the hand-started proxy: %d %v", code, err)
	}
	values := map[string]string{"guide": "by hand"}
	for i := range 200 {
		k, v := fmt.Sprintf("walk/%d", i), fmt.Sprintf("value %d", i)
		if code, _, _, err := httpDo(ctx, "POST", "http://localhost:8080/values/"+k, []byte(v), nil); err != nil || code != 200 {
			t.Fatalf("POST %s: %d %v", k, code, err)
		}
		values[k] = v
	}
	readAll := func(stage string) {
		t.Helper()
		for k, v := range values {
			code, _, body, err := httpDo(ctx, "GET", "http://localhost:8080/values/"+k, nil, nil)
			if err != nil || code != 200 || string(body) != v {
				t.Fatalf("%s: GET %s: %d %v %q, want %q", stage, k, code, err, body, v)
			}
		}
	}
	served := func() string {
		_, _, body, _ := httpDo(ctx, "GET", "http://127.0.0.1:4700/configuration", nil, nil)
		return string(body)
	}
	before := processEpoch("http://127.0.0.1:5701")

	start := time.Now()
	out := run(2, blocks[2])
	m := regexp.MustCompile(`X-Timestamp: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the reload block printed no epoch: %q", out)
	}
	epoch, _ := strconv.ParseInt(m[1], 10, 64)
	for epoch == before && time.Since(start) < 5*time.Second {
		// The coordinator may answer before it has read the file.
		time.Sleep(10 * time.Millisecond)
		resp, err := httpGetHeader("http://127.0.0.1:4700/configuration", "X-Timestamp")
		if err == nil {
			epoch, _ = strconv.ParseInt(resp, 10, 64)
		}
	}
	if epoch <= before {
		t.Fatalf("the reload did not give a newer epoch: %d, before %d", epoch, before)
	}
	waitFor(t, "every node on the new epoch", func() bool {
		for i := 1; i <= 10; i++ {
			if processEpoch(fmt.Sprintf("http://127.0.0.1:%d", 5700+i)) != epoch {
				return false
			}
		}
		return processEpoch("http://localhost:8080") == epoch
	})
	t.Logf("the reload reached all 11 processes in %v", time.Since(start))

	if out := run(3, blocks[3]); !strings.Contains(out, "ok") {
		t.Fatalf("n3 restarted without a coordinator: /health said %q", out)
	}
	code, _, body, err := httpDo(ctx, "GET", "http://127.0.0.1:5703/values/guide", nil, nil)
	if err != nil || code != 200 || string(body) != "by hand" {
		t.Fatalf("GET via n3 restarted from its cache: %d %v %q", code, err, body)
	}
	if e := processEpoch("http://127.0.0.1:5703"); e != epoch {
		t.Errorf("n3 restarted from its cache on epoch %d, want %d", e, epoch)
	}

	// The migration walkthrough.
	run(4, blocks[4])
	if !strings.Contains(served(), `"target_deployment":"local6"`) {
		t.Fatalf("after adding the bucket, the coordinator serves %s", served())
	}
	readAll("while adding a bucket")
	start = time.Now()
	run(5, blocks[5])
	if cfg := served(); !strings.Contains(cfg, `"active_deployment":"local6"`) || strings.Contains(cfg, "target_deployment") {
		t.Fatalf("after the promotion, the coordinator serves %s", cfg)
	}
	t.Logf("adding a bucket converged and was promoted in %v", time.Since(start).Round(time.Millisecond))
	readAll("after adding a bucket")
	run(6, blocks[6])
	if cfg := served(); !strings.Contains(cfg, `"active_deployment":"local5"`) || strings.Contains(cfg, `"n1"`) {
		t.Fatalf("after removing b1, the coordinator serves %s", cfg)
	}
	readAll("after removing a bucket and stopping its nodes")
	run(7, blocks[7])
	readAll("after replacing n5's lost disk")

	// Backups: a backup, a mistake undone by a point-in-time restore, a
	// node's snapshot.
	out = run(8, blocks[8])
	for _, want := range []string{"monday.tako: archive", "monday.tako: ok", "keys reverted", "by hand", "snapshot of"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the backups block printed no %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "n3-snapshot", "TAKO-OWNED")); err != nil {
		t.Fatalf("the snapshot of n3: %v", err)
	}
	readAll("after a backup and a point-in-time restore")

	run(9, blocks[9])
	waitFor(t, "every process stopped", func() bool {
		for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:5703", "127.0.0.1:4710", "127.0.0.1:4711", "127.0.0.1:4700"} {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				return false
			}
		}
		return true
	})
}

func httpGetHeader(url, header string) (string, error) {
	code, h, _, err := httpDo(context.Background(), "GET", url, nil, nil)
	if err != nil {
		return "", err
	}
	if code != 200 {
		return "", fmt.Errorf("%s: %d", url, code)
	}
	return h.Get(header), nil
}
