package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// rssKiB returns a process's resident memory (VmRSS) in KiB.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// latencyP99 runs 4 well-behaved clients reading one key for d, each with
// its own keep-alive connection, and returns their p99 and how many of
// their requests failed.
func latencyP99(base string, d time.Duration) (time.Duration, int) {
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 5 * time.Second}
			for time.Now().Before(deadline) {
				start := time.Now()
				resp, err := c.Get(base + "/values/k")
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				took := time.Since(start)
				mu.Lock()
				if ok {
					lat = append(lat, took)
				} else {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(lat) == 0 {
		return time.Hour, failed
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100], failed
}

// TestAbusiveClientsDoNotStarveOthers runs a node and, one after the other,
// three abusive clients: a slowloris (1,000 connections that send headers
// a byte at a time and never finish), a client that opens 10,000
// connections and sends nothing, and a client that pipelines 100,000
// binary-protocol requests without reading the answers. Meanwhile four
// well-behaved clients read a key: their p99 must stay under 10 times its
// unloaded value (with a 20 ms floor for this shared machine), none of
// their requests may fail, and the node's resident memory may not grow by
// more than 100 MB.
func TestAbusiveClientsDoNotStarveOthers(t *testing.T) {
	dir := t.TempDir()
	cfgPath, base := standaloneConfig(t, dir, "        limits: {max_connections: 2000, header_timeout: 2s}\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	binaryAddr := cfg.Nodes()[0].BinaryAddr()
	httpAddr := strings.TrimPrefix(base, "http://")
	n1 := start(t, dir, "tako-node", "-id", "n1", "-cfg", cfgPath)
	waitHealthy(t, n1, base)
	if code, _, _, err := httpDo(t.Context(), "POST", base+"/values/k", bytes.Repeat([]byte("v"), 100), nil); err != nil || code != 200 {
		t.Fatalf("POST: %d %v", code, err)
	}
	pid := n1.cmd.Process.Pid
	unloaded, _ := latencyP99(base, 2*time.Second)
	limit := max(10*unloaded, 20*time.Millisecond)
	t.Logf("unloaded p99 %v: the limit under abuse is %v", unloaded, limit)
	rssBefore := rssKiB(t, pid)

	check := func(t *testing.T, what string) {
		t.Helper()
		p99, failed := latencyP99(base, 3*time.Second)
		rss := rssKiB(t, pid)
		t.Logf("%s: the other clients' p99 %v (unloaded %v), %d failed; node RSS %d MiB (before %d MiB)",
			what, p99, unloaded, failed, rss/1024, rssBefore/1024)
		if p99 > limit {
			t.Errorf("%s: p99 %v, more than %v", what, p99, limit)
		}
		if failed > 0 {
			t.Errorf("%s: %d requests of well-behaved clients failed", what, failed)
		}
		if rss-rssBefore > 100<<10 {
			t.Errorf("%s: the node's memory grew by %d MiB", what, (rss-rssBefore)/1024)
		}
	}

	t.Run("slowloris", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 1000 {
			c, err := net.Dial("tcp", httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET /values/k HTTP/1.1\r\nHost: x\r\n")
			conns = append(conns, c)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // a header byte a while, never the end
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				for _, c := range conns {
					c.Write([]byte("X"))
				}
			}
		})
		check(t, "1,000 slowloris connections")
		close(stop)
		wg.Wait()
		// header_timeout (2 s) cut them, and said so.
		if n := metricValue(base, `tako_http_timeouts_total{listener="http",phase="header"}`); n < 900 {
			t.Errorf("tako_http_timeouts_total{phase=\"header\"} = %v, want the ~1,000 slowloris connections", n)
		}
	})

	t.Run("10,000 connections", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 10_000 {
			c, err := net.Dial("tcp", httpAddr)
			if err != nil {
				t.Fatalf("after %d connections: %v", len(conns), err)
			}
			conns = append(conns, c)
		}
		check(t, "10,000 idle connections")
		if open := metricValue(base, `tako_connections_open{listener="http"}`); open > 2000 {
			t.Errorf("%v HTTP connections open, more than max_connections 2000", open)
		}
		if evicted := metricValue(base, `tako_connections_evicted_total{listener="http"}`); evicted < 8000 {
			t.Errorf("only %v idle connections evicted", evicted)
		}
	})

	t.Run("pipelining without reading", func(t *testing.T) {
		c, err := net.Dial("tcp", binaryAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Hello, then OpGet (0x03) of "k" as requests 1, 2, ...: see
		// docs/protocol.md.
		c.Write([]byte{'T', 'A', 'K', 'O', 0, 1, 0, 0})
		done := make(chan struct{})
		go func() {
			defer close(done)
			frame := make([]byte, 16)
			var batch bytes.Buffer
			for id := uint64(1); id <= 100_000; id++ {
				binary.BigEndian.PutUint32(frame[0:], 12)
				frame[4] = 0x03
				binary.BigEndian.PutUint64(frame[5:], id)
				binary.BigEndian.PutUint16(frame[13:], 1)
				frame[15] = 'k'
				batch.Write(frame)
				if batch.Len() > 64<<10 {
					c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(batch.Bytes()); err != nil {
						return // the node stopped reading, and we gave up
					}
					batch.Reset()
				}
			}
		}()
		check(t, "a client pipelining 100,000 requests without reading")
		if n := metricValue(base, "tako_wire_throttled_total"); n < 1 {
			t.Errorf("tako_wire_throttled_total = %v: the node did not count holding the pipelining client back", n)
		}
		c.Close()
		<-done
	})
}
