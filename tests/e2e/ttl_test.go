package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
)

// ttlSeconds is the X-TTL of the values that expire in these tests.
const ttlSeconds = 2

// expiryRead is one read of a key written with a TTL, and what it found.
type expiryRead struct {
	key        string
	start, end time.Time
	code       int
	body       string
}

// TestKeysExpireUnderLoadAndStayExpired: values written with X-TTL through
// the proxy and every node's HTTP port, under a load of reads, are read
// while they live and never after their expiry (on one machine the clocks
// agree, so the bound is the request's own length); a replica that was
// down while its keys were overwritten with values that expire, and
// expired, comes back holding the older, permanent values, and none of
// them is read, at once or after repair and garbage collection, which
// drop the expired values everywhere.
func TestKeysExpireUnderLoadAndStayExpired(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "    background_repair_interval: 1s\n    tombstone_grace: 1s\n")
	ctx := context.Background()
	entries := []string{c.base, c.http["n1"], c.http["n2"], c.http["n3"]}

	// Permanent values everywhere, then n3 goes down keeping them.
	const old = 40
	for i := range old {
		if code, _, body, err := httpDo(ctx, "POST", c.base+"/values/old"+strconv.Itoa(i), []byte("permanent"), nil); err != nil || code != 200 {
			t.Fatalf("permanent write: %d %s %v", code, body, err)
		}
	}
	waitFor(t, "every permanent value on n3", func() bool {
		for i := range old {
			code, _, _, err := httpDo(ctx, "GET", c.http["n3"]+"/values/old"+strconv.Itoa(i), nil, nil)
			if err != nil || code != 200 {
				return false
			}
		}
		return true
	})
	c.nodes["n3"].kill()
	entries = entries[:3]

	// Under load: writers with X-TTL (the old keys, and fresh ones), and
	// readers of the fresh ones, until every value has expired.
	type ack struct{ start, end time.Time }
	var mu sync.Mutex
	acked := map[string]ack{}
	var reads []expiryRead
	var wg sync.WaitGroup
	writes := make(chan string)
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for key := range writes {
				start := time.Now()
				code, h, body, err := httpDo(ctx, "POST", entries[r.IntN(len(entries))]+"/values/"+key, []byte("expires"), map[string]string{"X-TTL": strconv.Itoa(ttlSeconds)})
				if err != nil || code != 200 {
					t.Errorf("write of %s with X-TTL: %d %s %v", key, code, body, err)
					continue
				}
				if h.Get("X-Timestamp") == "" {
					t.Errorf("write of %s: no X-Timestamp", key)
				}
				// The answer says when the value expires: X-TTL after
				// the write, by the clock of the process that took it.
				at, _ := strconv.ParseInt(h.Get("X-Expires-At"), 10, 64)
				if lo, hi := start.Add(ttlSeconds*time.Second).UnixMicro(), time.Now().Add(ttlSeconds*time.Second).UnixMicro(); at < lo || at > hi {
					t.Errorf("write of %s with X-TTL %d: X-Expires-At %q, want between %d and %d", key, ttlSeconds, h.Get("X-Expires-At"), lo, hi)
				}
				mu.Lock()
				acked[key] = ack{start, time.Now()}
				mu.Unlock()
			}
		})
	}
	stopReads := make(chan struct{})
	var readers sync.WaitGroup
	for rd := range 4 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(rd), 9))
			for {
				select {
				case <-stopReads:
					return
				default:
				}
				key := "fresh" + strconv.Itoa(r.IntN(200))
				start := time.Now()
				code, _, body, err := httpDo(ctx, "GET", entries[r.IntN(len(entries))]+"/values/"+key, nil, nil)
				if err != nil {
					t.Errorf("read of %s: %v", key, err)
					return
				}
				mu.Lock()
				reads = append(reads, expiryRead{key, start, time.Now(), code, string(body)})
				mu.Unlock()
			}
		})
	}
	for i := range old {
		writes <- "old" + strconv.Itoa(i)
	}
	for i := range 200 {
		writes <- "fresh" + strconv.Itoa(i)
	}
	close(writes)
	wg.Wait()
	time.Sleep(ttlSeconds*time.Second + 500*time.Millisecond)
	close(stopReads)
	readers.Wait()

	live, expired, absent := 0, 0, 0
	for _, rd := range reads {
		a, written := acked[rd.key]
		switch {
		case !written || rd.start.Before(a.end):
			absent++ // raced the write: either answer is right
		case rd.start.After(a.end.Add(ttlSeconds * time.Second)):
			// Expired before the read began, by any clock of this machine.
			if rd.code != 404 || !strings.Contains(rd.body, "expired") {
				t.Errorf("%s read %d %q at %s, after its expiry (written by %s, X-TTL %d)", rd.key, rd.code, rd.body, rd.start.Format(time.StampMicro), a.end.Format(time.StampMicro), ttlSeconds)
			}
			expired++
		case rd.end.Before(a.start.Add(ttlSeconds * time.Second)):
			// Acknowledged before the read began, and alive until it ended.
			if rd.code != 200 || rd.body != "expires" {
				t.Errorf("%s read %d %q while it lived", rd.key, rd.code, rd.body)
			}
			live++
		}
	}
	t.Logf("%d writes with X-TTL %d acknowledged; %d reads: %d while the value lived, %d after it expired (404), %d raced a write or the expiry",
		len(acked), ttlSeconds, len(reads), live, expired, len(reads)-live-expired)
	if live == 0 || expired == 0 {
		t.Fatalf("the load read %d live and %d expired values: it tested nothing", live, expired)
	}

	// n3 comes back with the permanent values under the expired ones:
	// none of them is read, at once, nor after repair and collection.
	c.restartNode("n3")
	readAllExpired := func(when string) {
		for i := range old {
			key := "old" + strconv.Itoa(i)
			for _, base := range []string{c.base, c.http["n1"], c.http["n2"], c.http["n3"]} {
				code, _, body, err := httpDo(ctx, "GET", base+"/values/"+key, nil, nil)
				if err != nil || code != 404 {
					t.Fatalf("%s: %s%s/values/%s: %d %q %v; want 404", when, base, "", key, code, body, err)
				}
			}
		}
	}
	readAllExpired("n3 just back")
	waitFor(t, "the expired values collected from every replica", func() bool {
		for i := range old {
			p := where(t, c.base, "old"+strconv.Itoa(i))
			for _, d := range p.Deployments {
				for _, b := range d.Buckets {
					for _, n := range b.Nodes {
						if n.Error != "" || n.Found {
							return false
						}
					}
				}
			}
		}
		return true
	})
	readAllExpired("after collection")
	code, out := takoCmd(t, c.dir, "-s", c.base, "where", "old0")
	if code != 0 || strings.Contains(out, "permanent") || strings.Count(out, "not found") < 3 {
		t.Fatalf("tako where old0 after collection: exit %d\n%s", code, out)
	}
	metrics := ""
	for _, id := range []string{"n1", "n2", "n3"} {
		_, _, body, _ := httpDo(ctx, "GET", c.http[id]+"/metrics", nil, nil)
		metrics += string(body)
	}
	if !strings.Contains(metrics, `tako_gc_records_dropped_total{kind="expired"}`) {
		t.Fatalf("no node counts expired records dropped in /metrics")
	}
}

// where asks base's GET /where/KEY.
func where(t *testing.T, base, key string) httpapi.Placement {
	t.Helper()
	code, _, body, err := httpDo(context.Background(), "GET", base+"/where/"+key, nil, nil)
	if err != nil || code != 200 {
		t.Fatalf("where %s: %d %s %v", key, code, body, err)
	}
	var p httpapi.Placement
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("where %s: %v: %s", key, err, body)
	}
	return p
}

// TestTheCLIAndWhereShowExpiries: tako put -ttl, tako get -t and tako
// where show when a value expires; GET and /stat answer X-Expires-At; a
// newer write without a TTL makes the key permanent; bad TTLs are refused
// with a one-line reason and change nothing; and a backup restored into
// another cluster keeps each value's expiry.
func TestTheCLIAndWhereShowExpiries(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "    max_ttl: 1h\n")
	ctx := context.Background()
	dir := c.dir
	put := func(args ...string) (int, string) {
		return takoCmdIn(t, dir, "k-value", append([]string{"-s", c.base, "put"}, args...)...)
	}
	before := time.Now().UnixMicro()
	if code, out := put("-ttl", "10m", "-t", "session"); code != 0 {
		t.Fatalf("tako put -ttl 10m: exit %d: %s", code, out)
	}
	after := time.Now().UnixMicro()
	code, h, _, err := httpDo(ctx, "GET", c.base+"/values/session", nil, nil)
	exp, _ := strconv.ParseInt(h.Get("X-Expires-At"), 10, 64)
	if err != nil || code != 200 || exp < before+10*time.Minute.Microseconds() || exp > after+10*time.Minute.Microseconds() {
		t.Fatalf("GET session: %d, X-Expires-At %q; want 200 and ten minutes after the put", code, h.Get("X-Expires-At"))
	}
	code, h, _, _ = httpDo(ctx, "GET", c.http["n2"]+"/stat/session", nil, nil)
	if code != 200 || h.Get("X-Expires-At") != strconv.FormatInt(exp, 10) {
		t.Fatalf("/stat/session: %d, X-Expires-At %q, want %d", code, h.Get("X-Expires-At"), exp)
	}
	if code, out := takoCmd(t, dir, "-s", c.base, "get", "-t", "session"); code != 0 || !strings.Contains(out, fmt.Sprintf("expires: %d", exp)) {
		t.Fatalf("tako get -t session: exit %d: %s", code, out)
	}
	if code, out := takoCmd(t, dir, "-s", c.base, "where", "session"); code != 0 || strings.Count(out, fmt.Sprintf("expires at %d", exp)) != 2 {
		t.Fatalf("tako where session: exit %d, want each replica's expiry %d:\n%s", code, exp, out)
	}

	// Refused, one line each, nothing changed.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"-ttl", "1500ms", "session"}, "whole number of seconds"},
		{[]string{"-ttl", "0s", "session"}, "whole number of seconds"},
		{[]string{"-ttl", "2h", "session"}, "max_ttl"},
	} {
		if code, out := put(bad.args...); code != 2 || !strings.Contains(out, bad.want) {
			t.Errorf("tako put %v: exit %d, want 2 and %q: %s", bad.args, code, bad.want, out)
		}
	}
	for _, hdr := range []map[string]string{{"X-TTL": "0"}, {"X-TTL": "-1"}, {"X-TTL": "soon"}, {"X-TTL": "7200"}, {"X-Expires-At": "5"}} {
		for _, entry := range []string{c.http["n1"], c.base} {
			code, _, body, _ := httpDo(ctx, "POST", entry+"/values/session", []byte("other"), hdr)
			if reason := strings.TrimSpace(string(body)); code != 400 || strings.Count(reason, "\n") != 0 || strings.Contains(reason, "bad request") {
				t.Errorf("POST %s with %v: %d %q, want 400 with a one-line reason (the status says \"bad request\")", entry, hdr, code, body)
			}
		}
	}
	code, h, _, _ = httpDo(ctx, "GET", c.base+"/values/session", nil, nil)
	if code != 200 || h.Get("X-Expires-At") != strconv.FormatInt(exp, 10) {
		t.Fatalf("after the refusals: %d, X-Expires-At %q, want %d unchanged", code, h.Get("X-Expires-At"), exp)
	}

	// A backup carries the expiry into another cluster; a value that
	// expired before the restore stays absent there.
	if code, _, body, err := httpDo(ctx, "POST", c.base+"/values/brief", []byte("brief"), map[string]string{"X-TTL": "1"}); err != nil || code != 200 {
		t.Fatalf("POST brief: %d %s %v", code, body, err)
	}
	archive := dir + "/ttl.tako"
	if code, out := takoCmd(t, dir, "backup", "-cfg", c.cfg, archive); code != 0 {
		t.Fatalf("tako backup: exit %d: %s", code, out)
	}
	time.Sleep(1100 * time.Millisecond)
	other := startCluster(t, [][]string{{"m1"}, {"m2"}, {"m3"}}, 2, "")
	if code, out := takoCmd(t, dir, "restore", "-cfg", other.cfg, archive); code != 0 {
		t.Fatalf("tako restore: exit %d: %s", code, out)
	}
	code, h, _, _ = httpDo(ctx, "GET", other.base+"/values/session", nil, nil)
	if code != 200 || h.Get("X-Expires-At") != strconv.FormatInt(exp, 10) {
		t.Fatalf("restored session: %d, X-Expires-At %q, want %d", code, h.Get("X-Expires-At"), exp)
	}
	if code, _, body, _ := httpDo(ctx, "GET", other.base+"/values/brief", nil, nil); code != 404 || !strings.Contains(string(body), "expired") {
		t.Fatalf("restored brief, expired before the restore: %d %q, want 404 expired", code, body)
	}

	// A newer write without a TTL makes the key permanent.
	if code, out := put("session"); code != 0 {
		t.Fatalf("tako put session: exit %d: %s", code, out)
	}
	code, h, _, _ = httpDo(ctx, "GET", c.base+"/values/session", nil, nil)
	if code != 200 || h.Get("X-Expires-At") != "" {
		t.Fatalf("after a write without a TTL: %d, X-Expires-At %q; want 200 and none", code, h.Get("X-Expires-At"))
	}
}

// takoCmdIn runs the tako command as takoCmd does, with stdin as its
// standard input.
func takoCmdIn(t *testing.T, dir, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin("tako"), args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("tako %s: %v", strings.Join(args, " "), err)
	return 0, ""
}
