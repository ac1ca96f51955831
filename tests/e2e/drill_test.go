package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDisasterDrillReadsEveryFileAtOnce is the original README's disaster
// drill, run as a new user runs it: tako-cluster on the ten-node local
// cluster (examples/local_cluster.yaml, every key on four nodes, the default
// quorums), files uploaded through the proxy and read back with curl (or
// wget); the cluster stopped with Ctrl-C (SIGINT), the data of n1, n2, n5
// and n10 deleted, the cluster started again, and every file read again at
// once: as soon as tako-cluster says it is up (every process answers
// /health, the wiped nodes with "ok: recovering"), without waiting for the
// wiped nodes to refill. Every file must come back byte for byte, because a
// key stays readable while any live replica holds it: a recovering replica
// fetches what it lacks from the key's other replicas before it answers
// (read-through), so its answer counts toward the read quorum.
// TestClusterKeepsEverythingThroughLostDisks is the same loss with every
// node waited for until it has refilled. docs/operations.md shows the drill
// as shell commands.
func TestDisasterDrillReadsEveryFileAtOnce(t *testing.T) {
	tool := findHTTPTool(t)
	dir := t.TempDir()
	cfg, nodeHTTP := localClusterOnFreePorts(t, dir)
	varDir := filepath.Join(dir, "var")
	port := freePorts(t, 1)[0]
	base := fmt.Sprintf("http://localhost:%d", port)
	runCluster := func() *process {
		t.Helper()
		tc := start(t, dir, "tako-cluster", cfg, "-p", strconv.Itoa(port), "-v", varDir)
		waitClusterUp(t, tc, base)
		return tc
	}

	files := drillFiles(t, filepath.Join(dir, "files"), 300)
	tc := runCluster()
	uploaded := 0
	for _, f := range files {
		code, body, err := tool.post(f.path, base+"/values/"+f.key)
		if err != nil || code != 200 {
			t.Fatalf("uploading %s with %s: %d %v %s", f.key, tool.name, code, err, body)
		}
		uploaded++
	}
	t.Logf("uploaded %d files (%s) with %s through the proxy", uploaded, drillSizes(files), tool.name)
	if r := readFiles(t, tool, base, files, filepath.Join(dir, "got"), 1); r.failed() > 0 {
		t.Fatalf("before the disaster: %s", r)
	}

	stopWithCtrlC(t, tc)
	lost := []string{"n1", "n2", "n5", "n10"}
	for _, id := range lost {
		d := filepath.Join(varDir, "data", id)
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("the data of %s is not where tako-cluster -h says (DIR/data/ID): %v", id, err)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stopped the cluster with SIGINT and deleted %s/data/{%s}", varDir, strings.Join(lost, ","))

	restart := time.Now()
	tc = runCluster()
	t.Logf("tako-cluster up and the proxy serving %v after the restart", time.Since(restart).Round(time.Millisecond))
	// Whether the reads met the wiped nodes still recovering: otherwise
	// this run says nothing of read-through.
	wiped := map[string]string{}
	for _, id := range lost {
		wiped[id] = nodeHTTP[id]
	}
	w := watchRecovery(wiped)
	r := readFiles(t, tool, base, files, filepath.Join(dir, "got-after"), drillReaders)
	w.stop()
	t.Logf("right after the restart: %s, in %v", r, time.Since(restart).Round(time.Millisecond))
	var last time.Time // when the last wiped node had refilled
	for _, id := range lost {
		at, ok := w.recovered[id]
		when := "still recovering when the reads ended"
		if ok {
			when = fmt.Sprintf("/health plain ok %v after the reads began", at.Sub(r.began).Round(time.Millisecond))
		} else {
			at = time.Now()
		}
		if at.After(last) {
			last = at
		}
		t.Logf("  %s: /health said %q as the reads began; %s", id, w.first[id], when)
	}
	during, failedDuring := r.before(last)
	t.Logf("  %d reads began while a wiped node was recovering, %d of them failed", during, failedDuring)
	if during == 0 {
		t.Logf("  (the wiped nodes had refilled before the first read: this run did not exercise read-through)")
	}
	for _, e := range r.examples {
		t.Logf("  %s", e)
	}
	if r.failed() > 0 {
		t.Errorf("%d of %d files not read back right at once after losing the disks of %s, although every key kept at least one live replica: by status %s",
			r.failed(), len(files), strings.Join(lost, ", "), r.byStatus())
	}
	stopWithCtrlC(t, tc)
}

// drillReaders is how many downloads run at once right after the restart,
// as `xargs -P 8` runs them: the wiped nodes of so small a cluster refill
// within a second, and one download after the other would put only a few
// reads in that window.
const drillReaders = 8

// drillFile is one file of the drill, and the key it is stored under.
type drillFile struct {
	key, path string
	data      []byte
}

// drillFiles writes n files of mixed sizes into dir: most a few bytes to a
// few hundred, one in six about 64 KiB, one in fifty about 1 MiB. The bytes
// come from a fixed seed.
func drillFiles(t *testing.T, dir string, n int) []drillFile {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 300))
	files := make([]drillFile, n)
	for i := range files {
		var size int
		switch {
		case i%50 == 7:
			size = 1<<20 - 4096 + r.IntN(8192)
		case i%6 == 1:
			size = 64<<10 - 512 + r.IntN(1024)
		default:
			size = 1 + r.IntN(400)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		name := fmt.Sprintf("file-%03d.bin", i)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[i] = drillFile{key: "files/" + name, path: p, data: data}
	}
	return files
}

// drillSizes sums up the sizes of files.
func drillSizes(files []drillFile) string {
	var small, mid, large, total int
	for _, f := range files {
		switch n := len(f.data); {
		case n >= 512<<10:
			large++
		case n >= 32<<10:
			mid++
		default:
			small++
		}
		total += len(f.data)
	}
	return fmt.Sprintf("%d under 512 B, %d of ~64 KiB, %d of ~1 MiB, %.1f MiB in all", small, mid, large, float64(total)/(1<<20))
}

// drillReads is what reading every file back gave.
type drillReads struct {
	began    time.Time   // when the first read began
	starts   []time.Time // when each read began
	bad      []bool      // whether each read failed
	ok       int
	failures map[string]int // by status code, or by what went wrong
	examples []string       // the first few failures, with the answer's body
}

// before returns how many reads began before t, and how many of those
// failed.
func (r drillReads) before(t time.Time) (reads, failed int) {
	for i, s := range r.starts {
		if s.Before(t) {
			reads++
			if r.bad[i] {
				failed++
			}
		}
	}
	return reads, failed
}

func (r drillReads) failed() int {
	n := 0
	for _, c := range r.failures {
		n += c
	}
	return n
}

func (r drillReads) byStatus() string {
	var parts []string
	for what, n := range r.failures {
		parts = append(parts, fmt.Sprintf("%s: %d", what, n))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (r drillReads) String() string {
	return fmt.Sprintf("%d of %d files read back byte for byte, %d failures (%s)", r.ok, r.ok+r.failed(), r.failed(), r.byStatus())
}

// readFiles downloads every file into scratch, at most parallel at a time
// (as `xargs -P` runs them; 1 is a shell loop), and compares each with what
// was uploaded.
func readFiles(t *testing.T, tool httpTool, base string, files []drillFile, scratch string, parallel int) drillReads {
	t.Helper()
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	type result struct {
		start time.Time
		what  string // what went wrong; "" when the file came back right
		why   string // the answer, when it went wrong
	}
	results := make([]result, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f := files[i]
				out := filepath.Join(scratch, filepath.Base(f.path))
				results[i].start = time.Now()
				code, err := tool.get(base+"/values/"+f.key, out)
				got, _ := os.ReadFile(out)
				switch body := strings.TrimSpace(string(got)); {
				case err != nil:
					results[i].what, results[i].why = tool.name+" failed", err.Error()
				case code != 200:
					if len(body) > 300 {
						body = body[:300] + "..."
					}
					results[i].what, results[i].why = strconv.Itoa(code), body
				case !bytes.Equal(got, f.data):
					results[i].what, results[i].why = "200 with other bytes", fmt.Sprintf("%d bytes, want %d", len(got), len(f.data))
				}
			}
		}()
	}
	r := drillReads{failures: map[string]int{}, began: time.Now()}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, res := range results {
		r.starts = append(r.starts, res.start)
		r.bad = append(r.bad, res.what != "")
		if res.what == "" {
			r.ok++
			continue
		}
		r.failures[res.what]++
		if len(r.examples) < 5 {
			r.examples = append(r.examples, fmt.Sprintf("GET %s: %s: %s", files[i].key, res.what, res.why))
		}
	}
	return r
}

// localClusterOnFreePorts writes into dir a copy of
// examples/local_cluster.yaml whose every port is a free one, and returns its
// path and the nodes' HTTP base URLs by id.
func localClusterOnFreePorts(t *testing.T, dir string) (string, map[string]string) {
	t.Helper()
	b, err := os.ReadFile("../../examples/local_cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`(?m)^(\s*)(\w+):(\s*)\[127\.0\.0\.1, (\d+)(?:, (\d+))?\]`)
	nodeHTTP := map[string]string{}
	coordinators := 0
	copied := entry.ReplaceAllStringFunc(string(b), func(s string) string {
		m := entry.FindStringSubmatch(s)
		if m[5] == "" { // a coordinator: one port
			coordinators++
			return fmt.Sprintf("%s%s:%s[127.0.0.1, %d]", m[1], m[2], m[3], freePorts(t, 1)[0])
		}
		p := freePorts(t, 2)
		nodeHTTP[m[2]] = fmt.Sprintf("http://127.0.0.1:%d", p[0])
		return fmt.Sprintf("%s%s:%s[127.0.0.1, %d, %d]", m[1], m[2], m[3], p[0], p[1])
	})
	if len(nodeHTTP) != 10 || coordinators != 1 || !strings.Contains(copied, "buckets_per_key: 2") {
		t.Fatalf("examples/local_cluster.yaml is no longer a coordinator and ten nodes on 127.0.0.1, every key on two buckets; this drill expects them:\n%s", copied)
	}
	return writeFile(t, dir, "local_cluster.yaml", copied), nodeHTTP
}

// waitClusterUp waits until the proxy at base answers /health and
// tako-cluster has printed its table and "Ctrl-C stops the cluster": every
// process it started answers /health with 200, a recovering node included
// ("ok: recovering"). That is when the user at its terminal goes on. The
// proxy alone is not enough: it answers /health as soon as it has the
// configuration, which may be before every node listens.
func waitClusterUp(t *testing.T, p *process, base string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it served: %v\n%s", p.name, p.err, p.output())
		default:
		}
		if strings.Contains(p.output(), "Ctrl-C stops the cluster") {
			if resp, err := http.Get(base + "/health"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not up, or no 200 from %s/health, after 30 s\n%s", p.name, base, p.output())
		}
	}
}

// stopWithCtrlC sends SIGINT, as Ctrl-C in its terminal does, and waits
// for a clean exit.
func stopWithCtrlC(t *testing.T, p *process) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s exited with %v after SIGINT\n%s", p.name, p.err, p.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after SIGINT", p.name)
	}
}

// recoveryWatch polls nodes' /health until each answers a plain "ok"
// (no longer "ok: recovering ...").
type recoveryWatch struct {
	halt chan struct{}
	done chan struct{}
	// Valid once stop returned:
	first     map[string]string    // what each said first, or why it did not answer
	recovered map[string]time.Time // when each first said plain "ok"
}

func watchRecovery(nodes map[string]string) *recoveryWatch {
	w := &recoveryWatch{halt: make(chan struct{}), done: make(chan struct{}), first: map[string]string{}, recovered: map[string]time.Time{}}
	hc := &http.Client{Timeout: time.Second}
	go func() {
		defer close(w.done)
		for {
			for id, base := range nodes {
				if _, ok := w.recovered[id]; ok {
					continue
				}
				said := ""
				if resp, err := hc.Get(base + "/health"); err != nil {
					said = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					said = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
				}
				if _, ok := w.first[id]; !ok {
					w.first[id] = said
				}
				if said == "200 ok" {
					w.recovered[id] = time.Now()
				}
			}
			if len(w.recovered) == len(nodes) {
				return
			}
			select {
			case <-w.halt:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch and waits for it.
func (w *recoveryWatch) stop() {
	close(w.halt)
	<-w.done
}

// httpTool is the command-line HTTP client a user has at hand: curl, or
// else wget, run as a shell loop runs it, one process per file.
type httpTool struct{ name, path string }

// findHTTPTool returns curl, or wget when there is no curl, or skips the
// test when there is neither.
func findHTTPTool(t *testing.T) httpTool {
	t.Helper()
	for _, name := range []string{"curl", "wget"} {
		if p, err := exec.LookPath(name); err == nil {
			return httpTool{name: name, path: p}
		}
	}
	t.Skip("neither curl nor wget is installed")
	return httpTool{}
}

// post uploads file to url (curl --data-binary @FILE, wget --post-file
// FILE) and returns the status code and the answer's body.
func (h httpTool) post(file, url string) (int, []byte, error) {
	out := file + ".answer"
	defer os.Remove(out)
	var code int
	var err error
	if h.name == "curl" {
		code, err = h.run(out, "--data-binary", "@"+file, url)
	} else {
		code, err = h.run(out, "--post-file="+file, url)
	}
	body, _ := os.ReadFile(out)
	return code, body, err
}

// get downloads url into out, whatever the status, and returns the status
// code.
func (h httpTool) get(url, out string) (int, error) { return h.run(out, url) }

var wgetStatus = regexp.MustCompile(`(?m)^\s*HTTP/\S+ (\d{3})`)

// run runs the tool with args, the body going to out, and returns the
// status code of the answer. An error means no answer was had.
func (h httpTool) run(out string, args ...string) (int, error) {
	var cmd *exec.Cmd
	if h.name == "curl" {
		cmd = exec.Command(h.path, append([]string{"-sS", "-o", out, "-w", "%{http_code}"}, args...)...)
	} else {
		// -S prints the answers' headers (to stderr), the only place
		// wget tells the status; it exits 8 on a 4xx or 5xx.
		cmd = exec.Command(h.path, append([]string{"-q", "-S", "--tries=1", "--content-on-error", "-O", out}, args...)...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if h.name == "curl" {
		if err != nil {
			return 0, fmt.Errorf("curl: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return strconv.Atoi(strings.TrimSpace(stdout.String()))
	}
	m := wgetStatus.FindAllStringSubmatch(stderr.String(), -1)
	if m == nil {
		return 0, fmt.Errorf("wget: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strconv.Atoi(m[len(m)-1][1])
}
