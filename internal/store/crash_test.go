package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The crash test runs its writer in a child process, this same test binary
// re-executed with -test.run=^TestCrashChild$ and crashChildEnv naming the
// store's directory (the pattern of groupcache's http_test.go), and kills it
// with SIGKILL while it writes.
const (
	crashChildEnv = "TAKO_STORE_CRASH_CHILD_DIR"
	// crashWriters is how many goroutines of the child write at once.
	crashWriters = 8
	// crashMinAcks is how many acknowledged writes the parent waits for
	// before it kills the child.
	crashMinAcks = 2000
	// crashChildLimit bounds the child's life should the parent not kill it.
	crashChildLimit = 30 * time.Second
)

// crashKey and crashRecord are the key and record of the child's i-th write.
func crashKey(i int64) []byte { return fmt.Appendf(nil, "k%d", i) }

func crashRecord(i int64) Record {
	return Record{Timestamp: i + 1, Value: bytes.Repeat(fmt.Appendf(nil, "v%d;", i), 8)}
}

// TestCrashChild is the child of TestCrashKeepsAcknowledgedWrites; run
// alone, it skips. It Puts crashRecord(i) under crashKey(i) for i = 0, 1, ...
// from several goroutines, and prints "ack i" only after Put(i) returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("the child of TestCrashKeepsAcknowledgedWrites; runs only when that test starts it")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(crashChildLimit)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range crashWriters {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if _, err := s.Put(context.Background(), crashKey(i), crashRecord(i)); err != nil {
					t.Errorf("Put(%d): %v", i, err)
					return
				}
				// One small write per line: lines from different
				// goroutines do not interleave.
				if _, err := os.Stdout.Write(fmt.Appendf(nil, "ack %d\n", i)); err != nil {
					t.Errorf("acknowledging %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Errorf("not killed within %v", crashChildLimit)
	s.Close()
}

// TestCrashKeepsAcknowledgedWrites kills a process that is writing to a
// store on the real disk and checks that every write it acknowledged is in
// the store when it is reopened.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Should the child hang, kill it so that its stdout ends.
	timer := time.AfterFunc(crashChildLimit, func() { cmd.Process.Kill() })
	defer timer.Stop()

	acked := make(map[int64]bool)
	killed := false
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		s, ok := strings.CutPrefix(lines.Text(), "ack ")
		if !ok {
			t.Logf("child: %s", lines.Text())
			continue
		}
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", lines.Text())
		}
		// An ack read after the kill was still acknowledged before it.
		acked[i] = true
		if !killed && len(acked) >= crashMinAcks {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("killing the child: %v", err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("the child acknowledged only %d writes (%v); stderr:\n%s", len(acked), err, stderr.Bytes())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("the child ended with %v, want killed by a signal; stderr:\n%s", err, stderr.Bytes())
	}

	s := openTest(t, nil, dir)
	ctx := context.Background()
	var highest int64
	for i := range acked {
		highest = max(highest, i)
		got, err := s.Get(ctx, crashKey(i))
		if err != nil || !sameRecord(got, crashRecord(i)) {
			t.Errorf("acknowledged write %d: Get = %v, %v; want %v", i, got, err, crashRecord(i))
		}
	}
	unacked := 0
	for i := range highest + crashWriters {
		if _, err := s.Get(ctx, crashKey(i)); err == nil && !acked[i] {
			unacked++
		}
	}
	t.Logf("killed after %d acknowledged writes, all present; %d writes in flight at the kill were kept too", len(acked), unacked)
}
