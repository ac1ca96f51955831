package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/wire"
)

// slowUpload is a raw HTTP upload of size bytes, of which it sends sent
// bytes and then waits, until finish sends the rest.
type slowUpload struct {
	key    string
	nc     net.Conn
	size   int
	wrote  chan error          // the first part was written, or could not be
	answer chan *http.Response // the answer, nil when none could be read
}

// startSlowUpload opens a connection to addr, sends the headers of a POST
// of size bytes to key and, in the background, sent bytes of its body.
func startSlowUpload(t *testing.T, addr, key string, size, sent int) *slowUpload {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	u := &slowUpload{key: key, nc: nc, size: size, wrote: make(chan error, 1), answer: make(chan *http.Response, 1)}
	fmt.Fprintf(nc, "POST /values/%s HTTP/1.1\r\nHost: tako\r\nContent-Length: %d\r\n\r\n", key, size)
	go func() {
		chunk := make([]byte, 1<<20)
		for left := sent; left > 0; left -= len(chunk) {
			if _, err := nc.Write(chunk[:min(left, len(chunk))]); err != nil {
				u.wrote <- err
				return
			}
		}
		u.wrote <- nil
	}()
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			u.answer <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		u.answer <- resp
	}()
	return u
}

// TestSlowUploadsStayWithinTheBudget: eight clients start uploads of 63
// MiB to a node with the default max_bytes_in_flight (256 MiB, of which
// 240 MiB for requests over 64 KiB), send 62 MiB each, and stop. Three fit
// in the budget; the other five wait 1 s and get 503 with Retry-After.
// The node's heap and resident memory grow by less than the budget (not
// by 8 × 63 MiB, or twice that), a binary-port Put of 60 MiB is refused
// with CodeOverloaded meanwhile (one budget for both ports), and small
// writes and reads, on both ports, are all served at once. Once the three
// uploads finish they are stored, and the budget is free again.
func TestSlowUploadsStayWithinTheBudget(t *testing.T) {
	const (
		uploads  = 8
		size     = 63 << 20
		sent     = 62 << 20
		budget   = 256 << 20 // the default max_bytes_in_flight
		admitted = 3         // 63 MiB uploads in budget - budget/16
	)
	dir := t.TempDir()
	cfgPath, base := standaloneConfig(t, dir, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Active.Limits.MaxBytesInFlight; got != budget {
		t.Fatalf("the default max_bytes_in_flight is %d, the test expects %d", got, budget)
	}
	httpAddr := strings.TrimPrefix(base, "http://")
	binaryAddr := cfg.Nodes()[0].BinaryAddr()
	n1 := start(t, dir, "tako-node", "-id", "n1", "-cfg", cfgPath)
	waitHealthy(t, n1, base)
	pid := n1.cmd.Process.Pid
	for i := range 20 { // warm up
		if code, _, _, err := httpDo(t.Context(), "POST", fmt.Sprintf("%s/values/small%d", base, i), []byte("v"), nil); err != nil || code != 200 {
			t.Fatalf("POST: %d %v", code, err)
		}
	}
	heap := func() float64 { return metricValue(base, "go_memstats_heap_alloc_bytes") }
	heapBefore, rssBefore := heap(), float64(rssKiB(t, pid)<<10)

	// Small requests, and the peak memory, all along: in phase 0 while
	// the uploads are under way, in phase 1 while the three that fit
	// finish and are stored.
	stop := make(chan struct{})
	var phase atomic.Int32
	type figures struct {
		served, failed int
		slowest        time.Duration
		heap, rss      float64 // peaks
	}
	var small struct {
		sync.Mutex
		phases [2]figures
		errs   []string
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		conn, err := wire.Dial(t.Context(), binaryAddr, wire.DialOptions{})
		if err != nil {
			t.Errorf("dialing the binary port: %v", err)
			return
		}
		defer conn.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			key := fmt.Sprintf("small%d", i%20)
			code, _, _, err := httpDo(t.Context(), "POST", base+"/values/"+key, []byte(strings.Repeat("s", 100)), nil)
			if err == nil && code == 200 {
				code, _, _, err = httpDo(t.Context(), "GET", base+"/values/"+key, nil, nil)
			}
			var werr error
			if err == nil && code == 200 {
				_, werr = conn.Call(t.Context(), &wire.Request{Op: wire.OpPut, Key: []byte(key),
					Record: wire.Record{Timestamp: time.Now().UnixMicro(), Value: []byte("binary")}})
			}
			took := time.Since(start)
			h, r := heap(), float64(rssKiB(t, pid)<<10)
			small.Lock()
			f := &small.phases[phase.Load()]
			f.heap, f.rss = max(f.heap, h), max(f.rss, r)
			f.slowest = max(f.slowest, took)
			if err != nil || code != 200 || werr != nil {
				f.failed++
				small.errs = append(small.errs, fmt.Sprintf("%s: %d %v %v", key, code, err, werr))
			} else {
				f.served++
			}
			small.Unlock()
		}
	})

	ups := make([]*slowUpload, uploads)
	for i := range ups {
		ups[i] = startSlowUpload(t, httpAddr, fmt.Sprintf("big%d", i), size, sent)
	}
	// Three take their 63 MiB in and get their 62 MiB read; the others
	// are answered 503 after the budget's wait.
	var full, refused []*slowUpload
	deadline := time.After(30 * time.Second)
	for len(full)+len(refused) < uploads {
		select {
		case <-deadline:
			t.Fatalf("after 30 s, %d uploads were read and %d refused, want %d and %d", len(full), len(refused), admitted, uploads-admitted)
		case <-time.After(10 * time.Millisecond):
		}
		for _, u := range ups {
			if slices.Contains(full, u) || slices.Contains(refused, u) {
				continue
			}
			select {
			case resp := <-u.answer:
				if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
					t.Fatalf("an upload that did not fit: %v, want 503 with Retry-After: 1", resp)
				}
				refused = append(refused, u)
			case err := <-u.wrote:
				if err != nil {
					// Refused while it was sending: its answer is on the way.
					u.wrote <- err
					continue
				}
				full = append(full, u)
			default:
			}
		}
	}
	if len(full) != admitted {
		t.Fatalf("%d uploads were read, %d refused; want %d and %d", len(full), len(refused), admitted, uploads-admitted)
	}
	if got, want := metricValue(base, "tako_http_bytes_reserved"), float64(admitted*size); got != want {
		t.Errorf("tako_http_bytes_reserved %.0f, want %.0f", got, want)
	}
	if got := metricValue(base, "tako_http_budget_refused_total"); got != uploads-admitted {
		t.Errorf("tako_http_budget_refused_total %.0f, want %d", got, uploads-admitted)
	}

	// The binary port shares the budget: a 60 MiB Put does not fit.
	conn, err := wire.Dial(t.Context(), binaryAddr, wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = conn.Call(t.Context(), &wire.Request{Op: wire.OpPut, Key: []byte("binary-big"),
		Record: wire.Record{Timestamp: time.Now().UnixMicro(), Value: make([]byte, 60<<20)}})
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeOverloaded {
		t.Errorf("a 60 MiB binary Put while the uploads hold the budget: %v, want CodeOverloaded", err)
	}
	if got := metricValue(base, "tako_wire_budget_refused_total"); got != 1 {
		t.Errorf("tako_wire_budget_refused_total %.0f, want 1", got)
	}
	time.Sleep(time.Second) // the small requests go on a while longer
	heapHeld, rssHeld := heap(), float64(rssKiB(t, pid)<<10)

	phase.Store(1)
	for i, u := range full {
		if _, err := u.nc.Write(make([]byte, size-sent)); err != nil {
			t.Fatalf("finishing upload %d: %v", i, err)
		}
		select {
		case resp := <-u.answer:
			if resp == nil || resp.StatusCode != 200 {
				t.Errorf("upload %d, finished: %v, want 200", i, resp)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("upload %d, finished: no answer in 20 s", i)
		}
	}
	close(stop)
	wg.Wait()
	if got := metricValue(base, "tako_http_bytes_reserved"); got != 0 {
		t.Errorf("tako_http_bytes_reserved %.0f once every upload is answered, want 0", got)
	}
	// The finished uploads were stored whole.
	for _, u := range full {
		code, h, _, err := httpDo(t.Context(), "HEAD", base+"/values/"+u.key, nil, nil)
		if err != nil || code != 200 || h.Get("Content-Length") != fmt.Sprint(size) {
			t.Errorf("HEAD %s: %d, Content-Length %s, %v; want 200 and %d", u.key, code, h.Get("Content-Length"), err, size)
		}
	}

	small.Lock()
	defer small.Unlock()
	under, storing := small.phases[0], small.phases[1]
	mib := func(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }
	t.Logf("budget %d MiB; before the uploads: heap %s, RSS %s; with %d uploads under way (%d held): heap %s, RSS %s, peaks %s and %s; small requests %d served, %d failed, slowest %v",
		budget>>20, mib(heapBefore), mib(rssBefore), uploads, admitted, mib(heapHeld), mib(rssHeld), mib(under.heap), mib(under.rss),
		under.served, under.failed, under.slowest.Round(time.Millisecond))
	t.Logf("while the %d uploads that fit finish and are stored: peaks heap %s, RSS %s; small requests %d served, %d failed, slowest %v",
		admitted, mib(storing.heap), mib(storing.rss), storing.served, storing.failed, storing.slowest.Round(time.Millisecond))
	if under.heap-heapBefore > budget {
		t.Errorf("with the uploads under way the heap grew by %s, more than the budget (%d MiB)", mib(under.heap-heapBefore), budget>>20)
	}
	if under.rss-rssBefore > budget {
		t.Errorf("with the uploads under way the resident memory grew by %s, more than the budget (%d MiB)", mib(under.rss-rssBefore), budget>>20)
	}
	if under.failed+storing.failed > 0 || under.served < 50 {
		t.Errorf("small requests: %d served, %d failed (%v); want at least 50 while the uploads are under way, and none failed",
			under.served, under.failed+storing.failed, small.errs)
	}
	// While the uploads hold the budget nothing gives it back, so a small
	// request that had to wait for it would have been answered 503 after
	// the budget's wait (1 s) and counted as failed above: none failed is
	// the proof that none waited. The bound below only catches a stall; it
	// is loose because CI runs this next to the container suite on 2 cores
	// (a run saw 920 ms with none waiting).
	if under.slowest > 3*time.Second {
		t.Errorf("with the uploads under way, the slowest small request took %v: small requests must not stall behind the uploads", under.slowest)
	}
}
