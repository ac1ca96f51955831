package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size (mount's syntax: "64m") on a
// new directory and unmounts it when the test ends. It skips the test, with
// the reason, when it cannot: mounting needs root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a size-limited tmpfs (mount -t tmpfs -o size=" + size + ")")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs of %s on %s: %v: %s", size, dir, err, bytes.TrimSpace(out))
	}
	// Registered before the node starts, so it runs after the node's own
	// cleanup has killed it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestFullDiskRefusesWritesAndResumes fills a real node's disk, a 192 MiB
// tmpfs, with writes until the node answers 507: meanwhile it keeps
// serving reads and loses nothing it acknowledged. Once a filler file is
// deleted, writes succeed again without a restart; after a restart every
// acknowledged write is still there.
//
// Pebble preallocates each write-ahead log at 35 MiB (110% of a memtable),
// and its first memtables are small, so the first writes may start several
// logs (a CI run on a 64 MiB disk found 45 MiB gone after 4 writes). So
// the node takes 2 MiB of writes first, and only then does the filler take
// all but 3 MiB above the 8 MiB reserve (-min-free 8MiB): the writes that
// follow fill those 3 MiB, and deleting the filler leaves the restart room
// to write its log out.
func TestFullDiskRefusesWritesAndResumes(t *testing.T) {
	disk := mountTmpfs(t, "192m")
	filler := filepath.Join(disk, "filler")
	dir := t.TempDir()
	cfg, base := standaloneConfig(t, dir, "")
	store := filepath.Join(disk, "n1")
	args := []string{"-id", "n1", "-cfg", cfg, "-v", dir, "-f", store, "-min-free", "8MiB"}
	n1 := start(t, dir, "tako-node", args...)
	waitHealthy(t, n1, base)
	ctx := context.Background()

	acked := map[string][]byte{}
	for i := range 32 {
		key := fmt.Sprintf("warm-%02d", i)
		value := bytes.Repeat([]byte{byte(i)}, 64<<10)
		if code, _, body, err := httpDo(ctx, "POST", base+"/values/"+key, value, nil); err != nil || code != 200 {
			t.Fatalf("a write on an empty disk: %d %v %s", code, err, body)
		}
		acked[key] = value
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(disk, &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	size := free - (8<<20 + 3<<20)
	if size <= 0 {
		t.Fatalf("only %d bytes free on the %s tmpfs after 2 MiB of writes", free, "192m")
	}
	if err := os.WriteFile(filler, bytes.Repeat([]byte{0xf1}, int(size)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1f MiB free after 2 MiB of writes; a filler of %.1f MiB leaves 3 MiB above the reserve", float64(free)/(1<<20), float64(size)/(1<<20))

	// Writers put 64 KiB values until each has seen a 507.
	var mu sync.Mutex
	var refusal string
	var wg sync.WaitGroup
	var unexpected []string
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				key := fmt.Sprintf("w%d-%04d", w, i)
				value := make([]byte, 64<<10)
				for j := range value {
					value[j] = byte(r.Uint32())
				}
				code, _, body, err := httpDo(ctx, "POST", base+"/values/"+key, value, nil)
				mu.Lock()
				switch {
				case err == nil && code == 200:
					acked[key] = value
				case err == nil && code == 507:
					refusal = string(body)
				default:
					unexpected = append(unexpected, fmt.Sprintf("%s: %d %v %.200s", key, code, err, body))
				}
				mu.Unlock()
				if err != nil || code != 200 || i > 5000 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("writes answered neither 200 nor 507: %v", unexpected)
	}
	if refusal == "" || len(acked) < 20 {
		t.Fatalf("%d writes acknowledged and then %q; want 507 after at least 20", len(acked), refusal)
	}
	if !strings.Contains(refusal, "insufficient storage") || !strings.Contains(refusal, "reserve") {
		t.Errorf("the 507 says %q; want the reason", refusal)
	}
	t.Logf("%d writes of 64 KiB acknowledged, then 507: %s", len(acked), strings.TrimSpace(refusal))

	checkAll := func(when string) {
		t.Helper()
		for key, want := range acked {
			code, _, body, err := httpDo(ctx, "GET", base+"/values/"+key, nil, nil)
			if err != nil || code != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s: GET %s = %d %v (%d bytes), want the %d bytes acknowledged", when, key, code, err, len(body), len(want))
			}
		}
	}
	checkAll("while the disk is full")
	if code, _, _, err := httpDo(ctx, "GET", base+"/health", nil, nil); err != nil || code != 200 {
		t.Errorf("/health while the disk is full: %d %v", code, err)
	}
	if code, _, body, _ := httpDo(ctx, "POST", base+"/values/still-full", []byte("x"), nil); code != 507 {
		t.Errorf("a small write while the disk is full: %d %s, want 507", code, body)
	}
	if out := n1.output(); !strings.Contains(out, "disk nearly full") {
		t.Errorf("the node did not log that its disk is nearly full:\n%s", out)
	}

	// Space comes back: writes go through again, by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	resumed := bytes.Repeat([]byte("resumed"), 10<<10)
	waitFor(t, "writes to be accepted again", func() bool {
		code, _, _, err := httpDo(ctx, "POST", base+"/values/resumed", resumed, nil)
		return err == nil && code == 200
	})
	t.Logf("writes accepted again %v after the filler was deleted", time.Since(freed).Round(time.Millisecond))
	acked["resumed"] = resumed
	for i := range 10 {
		key := fmt.Sprintf("after-%d", i)
		value := bytes.Repeat([]byte{byte(i)}, 64<<10)
		if code, _, body, err := httpDo(ctx, "POST", base+"/values/"+key, value, nil); err != nil || code != 200 {
			t.Fatalf("a write after space came back: %d %v %s", code, err, body)
		}
		acked[key] = value
	}
	if out := n1.output(); !strings.Contains(out, "accepting writes") {
		t.Errorf("the node did not log that it accepts writes again:\n%s", out)
	}
	checkAll("after space came back")

	// Nothing acknowledged is lost across a restart either.
	if err := n1.stop(t); err != nil {
		t.Fatalf("stopping the node: %v\n%s", err, n1.output())
	}
	n1 = start(t, dir, "tako-node", args...)
	waitHealthy(t, n1, base)
	checkAll("after a restart")
}

// TestDamagedTableRefusesToStartWithOneLine flips bytes in a table (.sst)
// of a stopped node's store: the node refuses to start, exit status 4,
// with one line that names the file and says what to do. Doing it (the
// store moved aside, the node started again) refills the node from its
// replica; at no point does it serve the changed bytes.
func TestDamagedTableRefusesToStartWithOneLine(t *testing.T) {
	c := startCluster(t, [][]string{{"n1", "n2"}}, 1, "    write_quorum: all\n    read_quorum: one\n")
	ctx := context.Background()

	// Values of 8 KiB stay in the tables (16 KiB and more go to blob
	// files); 40 MiB of them fill a 32 MiB memtable, which is flushed to
	// a table.
	want := map[string][]byte{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range 640 {
				key := fmt.Sprintf("w%d-%04d", w, i)
				value := make([]byte, 8<<10)
				for j := range value {
					value[j] = byte(r.Uint32())
				}
				code, _, body, err := httpDo(ctx, "POST", c.http["n1"]+"/values/"+key, value, nil)
				if err != nil || code != 200 {
					errs <- fmt.Errorf("POST %s: %d %v %s", key, code, err, body)
					return
				}
				mu.Lock()
				want[key] = value
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var tables []string
	waitFor(t, "n2 to flush a table", func() bool {
		tables, _ = filepath.Glob(filepath.Join(c.dataDir("n2"), "*.sst"))
		return len(tables) > 0
	})
	if err := c.nodes["n2"].stop(t); err != nil {
		t.Fatalf("stopping n2: %v", err)
	}
	table := tables[0]
	b, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+16; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(table, b, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin("tako-node"), "-id", "n2", "-cfg", c.cfg, "-v", c.dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("n2 on a damaged store still runs after 60 s; stderr:\n%s", stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 {
		t.Fatalf("n2 on a damaged store exited with %v, want status 4; stderr:\n%s", err, stderr.String())
	}
	out := strings.TrimSpace(stderr.String())
	lines := strings.Split(out, "\n")
	last := lines[len(lines)-1]
	for _, w := range []string{"tako-node: ", table, "damaged", "checksum", "aside", c.dataDir("n2")} {
		if !strings.Contains(last, w) {
			t.Errorf("the last line %q lacks %q", last, w)
		}
	}
	if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Errorf("n2 printed a panic or a stack trace:\n%s", out)
	}
	t.Logf("n2 refused to start: %s", last)

	// What the line says: move the store aside and start the node. It
	// recovers from n1; then, with n1 stopped, everything it answers
	// comes from its own store.
	if err := os.Rename(c.dataDir("n2"), c.dataDir("n2")+".damaged"); err != nil {
		t.Fatal(err)
	}
	c.restartNode("n2")
	if err := c.nodes["n1"].stop(t); err != nil {
		t.Fatalf("stopping n1: %v", err)
	}
	for key, v := range want {
		code, _, body, err := httpDo(ctx, "GET", c.http["n2"]+"/values/"+key, nil, nil)
		if err != nil || code != 200 || !bytes.Equal(body, v) {
			t.Fatalf("n2 alone after it recovered: GET %s = %d %v (%d bytes), want the %d bytes written", key, code, err, len(body), len(v))
		}
	}
	t.Logf("n2 serves all %d values from its refilled store", len(want))
}

// TestDiskFilledBySomethingElse: while four writers put 64 KiB values,
// another writer (a runaway log, say) fills the node's disk, a 160 MiB
// tmpfs, to the last byte and keeps it full. The node must not die with a
// stack trace: it keeps serving reads and refuses writes with 507, or,
// if Pebble met the full disk in its log, it stops with exit status 3 and
// one line. Either way nothing acknowledged is lost: once the filler is
// deleted, writes are accepted again (after a restart if it stopped), and
// every acknowledged value reads back. A node started on the full disk
// starts too, its store read-only, and serves reads; once space is back it
// restarts itself in place and takes writes.
func TestDiskFilledBySomethingElse(t *testing.T) {
	disk := mountTmpfs(t, "160m")
	filler := filepath.Join(disk, "runaway.log")
	dir := t.TempDir()
	cfg, base := standaloneConfig(t, dir, "")
	store := filepath.Join(disk, "n1")
	args := []string{"-id", "n1", "-cfg", cfg, "-v", dir, "-f", store, "-min-free", "16MiB"}
	n1 := start(t, dir, "tako-node", args...)
	waitHealthy(t, n1, base)
	ctx := context.Background()
	waitFor(t, "the node to make its ballast", func() bool {
		return strings.Contains(n1.output(), "made the ballast")
	})

	var mu sync.Mutex
	acked := map[string][]byte{}
	codes := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%05d", w, i)
				value := make([]byte, 64<<10)
				for j := range value {
					value[j] = byte(r.Uint32())
				}
				code, _, _, err := httpDo(ctx, "POST", base+"/values/"+key, value, nil)
				mu.Lock()
				if err == nil {
					codes[code]++
					if code == 200 {
						acked[key] = value
					}
				} else {
					codes[-1]++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	// The filler writes 256 KiB at a time until the disk is full, and
	// tries again every few milliseconds for 3 s, taking whatever the
	// node gives back.
	time.Sleep(300 * time.Millisecond)
	f, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xf1}, 256<<10)
	var fullAt time.Time
	for fullAt.IsZero() || time.Since(fullAt) < 3*time.Second {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			if fullAt.IsZero() {
				fullAt = time.Now()
			}
			if _, err := f.Write(chunk[:4<<10]); err != nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	f.Close()
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("answers while the disk filled (-1: no answer): %v; %d writes acknowledged", codes, len(acked))
	mu.Unlock()

	checkNoStackTrace := func(p *process) {
		t.Helper()
		out := p.output()
		if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") || strings.Contains(out, "fatal error") {
			t.Fatalf("%s printed a panic or a stack trace:\n%s", p.name, out)
		}
	}
	checkAll := func(when string) {
		t.Helper()
		for key, want := range acked {
			code, _, body, err := httpDo(ctx, "GET", base+"/values/"+key, nil, nil)
			if err != nil || code != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s: GET %s = %d %v (%d bytes), want the %d bytes acknowledged", when, key, code, err, len(body), len(want))
			}
		}
	}
	checkNoStackTrace(n1)
	// What the node said while the disk filled: when it stops and starts
	// again below, the new process's output alone no longer has it.
	said := ""
	select {
	case <-n1.done:
		// It stopped: with status 3 and one line, then it must start on
		// the full disk and serve reads.
		var exit *exec.ExitError
		if !errors.As(n1.err, &exit) || exit.ExitCode() != 3 {
			t.Fatalf("the node ended with %v on a full disk, want exit status 3", n1.err)
		}
		out := strings.TrimSpace(n1.output())
		t.Logf("the node stopped: %s", out[strings.LastIndex(out, "\n")+1:])
		said = out
		n1 = start(t, dir, "tako-node", args...)
		waitHealthy(t, n1, base)
	default:
		t.Logf("the node runs on")
	}
	checkAll("on the full disk")
	if code, _, body, err := httpDo(ctx, "POST", base+"/values/while-full", []byte("x"), nil); err != nil || code != 507 {
		t.Errorf("a write on the full disk: %d %v %s, want 507", code, err, body)
	}
	if said += n1.output(); !strings.Contains(said, "deleted the ballast") {
		t.Errorf("the node did not say it gave its ballast back:\n%s", said)
	}
	checkNoStackTrace(n1)

	// A node that starts on the full disk (a crash, a restart by its
	// supervisor) starts and serves reads: no crash loop.
	if err := n1.stop(t); err != nil {
		t.Fatalf("stopping the node on the full disk: %v\n%s", err, n1.output())
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(disk, &fs); err == nil {
		t.Logf("starting again with %d bytes free", int64(fs.Bavail)*int64(fs.Bsize))
	}
	n1 = start(t, dir, "tako-node", args...)
	waitHealthy(t, n1, base)
	checkAll("after a start on the full disk")
	if code, _, body, err := httpDo(ctx, "POST", base+"/values/while-full", []byte("x"), nil); err != nil || code != 507 || !strings.Contains(string(body), "read-only") {
		t.Errorf("a write after a start on the full disk: %d %v %s, want 507 saying the store opened read-only", code, err, body)
	}
	if !strings.Contains(n1.output(), "opening it read-only") {
		t.Errorf("the node started on a full disk without saying it opens its store read-only:\n%s", n1.output())
	}
	checkNoStackTrace(n1)

	// The filler is deleted: writes are accepted again, by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "writes to be accepted again", func() bool {
		code, _, _, err := httpDo(ctx, "POST", base+"/values/after", []byte("after"), nil)
		return err == nil && code == 200
	})
	acked["after"] = []byte("after")
	if out := n1.output(); !strings.Contains(out, "restarting in place") {
		t.Errorf("writes are accepted again, but the node did not restart in place to open its store for writes:\n%s", out)
	}
	checkAll("once space is back")
	if err := n1.stop(t); err != nil {
		t.Fatalf("stopping the node: %v\n%s", err, n1.output())
	}
	n1 = start(t, dir, "tako-node", args...)
	waitHealthy(t, n1, base)
	checkAll("after a restart")
	checkNoStackTrace(n1)
}
