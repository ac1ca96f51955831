package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// httpWrite posts value to key on n's HTTP handler, with X-Timestamp ts
// unless it is "", and returns the status, the X-Timestamp answered and the
// body.
func httpWrite(n *Node, key, value, ts string) (int, int64, string) {
	req := httptest.NewRequest("POST", "/values/"+key, strings.NewReader(value))
	if ts != "" {
		req.Header.Set("X-Timestamp", ts)
	}
	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, req)
	got, _ := strconv.ParseInt(rec.Header().Get("X-Timestamp"), 10, 64)
	return rec.Code, got, rec.Body.String()
}

// TestEveryDoorHoldsTimestampsToTheRule answers the observations of the
// issue one by one: a negative timestamp, one at 2^63-1, one just under
// max_timestamp_ahead, each through the doors they came through; what
// breaks the rule is refused and counted by door, and nothing moves the
// node's clock.
func TestEveryDoorHoldsTimestampsToTheRule(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	n := c.nodes["n1"]
	h := wireHandler{n}
	ctx := context.Background()
	now := time.Now().UnixMicro()
	ahead9 := now + (9 * time.Minute).Microseconds()

	// The public binary put with timestamp -5: refused, nothing stored.
	resp := h.Handle(ctx, &wire.Request{Op: wire.OpPut, Key: []byte("neg"), Record: wire.Record{Timestamp: -5, Value: []byte("x")}})
	if resp.Err == nil || resp.Err.Code != wire.CodeBadRequest {
		t.Fatalf("binary put at -5: %+v, want bad request", resp)
	}
	// The replica put at 2^63-1: refused, and the node's clock is whole.
	resp = h.Handle(ctx, &wire.Request{Op: wire.OpReplicaPut, Key: []byte("max"), Record: wire.Record{Timestamp: math.MaxInt64, Value: []byte("x")}})
	if resp.Err == nil || resp.Err.Code != wire.CodeBadRequest {
		t.Fatalf("replica put at 2^63-1: %+v, want bad request", resp)
	}
	for _, k := range []string{"neg", "max"} {
		if _, found := c.localRecord(t, "n1", k); found {
			t.Errorf("%s was stored", k)
		}
	}
	// X-Timestamp 2^63-1 on HTTP: 400, with a message that did not overflow.
	code, _, body := httpWrite(n, "huge", "x", strconv.FormatInt(math.MaxInt64, 10))
	if code != 400 || !strings.Contains(body, "s ahead") || strings.Contains(body, " -") {
		t.Errorf("X-Timestamp 2^63-1: %d %q, want 400 saying how far ahead, without an overflow", code, body)
	}
	// A client's timestamp 9 minutes ahead is accepted for its key...
	if code, ts, body := httpWrite(n, "ahead", "x", strconv.FormatInt(ahead9, 10)); code != 200 || ts != ahead9 {
		t.Fatalf("X-Timestamp 9 minutes ahead: %d %d %q", code, ts, body)
	}
	// ...and moves no clock: a write the node stamps, of another key, is
	// stamped now, and a client with a correct clock writes another key.
	code, ts, _ := httpWrite(n, "other", "y", "")
	if code != 200 || ts > time.Now().Add(time.Second).UnixMicro() {
		t.Errorf("a write stamped by the node after a client's timestamp 9 minutes ahead: %d at %d, %.0f s ahead of now", code, ts, float64(ts-time.Now().UnixMicro())/1e6)
	}
	if code, _, body := httpWrite(c.nodes["n2"], "third", "z", strconv.FormatInt(time.Now().UnixMicro(), 10)); code != 200 {
		t.Errorf("a correct client's write of another key: %d %q", code, body)
	}
	// The key written 9 minutes ahead: a write without X-Timestamp still
	// wins (200, stamped above it), never 409.
	code, ts, body = httpWrite(c.nodes["n2"], "ahead", "newer", "")
	if code != 200 || ts <= ahead9 {
		t.Errorf("a write without X-Timestamp of a key 9 minutes ahead: %d at %d %q, want 200 above %d", code, ts, body, ahead9)
	}
	// Every refusal was counted by its door.
	for door, want := range map[string]float64{doorBinary: 1, doorReplica: 1, doorHTTP: 1} {
		if got := testutil.ToFloat64(n.metrics.timestampsRefused.WithLabelValues(door)); got != want {
			t.Errorf("tako_timestamps_refused_total{door=%q} = %v, want %v", door, got, want)
		}
	}
}

// TestAWriteThatCannotWinIsNot409: a key whose stored version breaks the
// rule (stored before the rule existed) cannot be overwritten by a write
// the cluster stamps: it answers 503 naming tako purge, not 409; and the
// stored record is counted, not spread. A purge removes it.
func TestAWriteThatCannotWinIsNot409(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	ctx := context.Background()
	poison := store.Record{Timestamp: math.MaxInt64 - 1, Value: []byte("from before the rule")}
	for _, id := range []string{"n1", "n2"} {
		if _, err := c.nodes[id].store.Put(ctx, []byte("poisoned"), poison); err != nil {
			t.Fatal(err)
		}
	}
	code, _, body := httpWrite(c.nodes["n1"], "poisoned", "new", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "purge") {
		t.Fatalf("a write without X-Timestamp of a poisoned key: %d %q, want 503 naming purge", code, body)
	}
	if got := testutil.ToFloat64(c.nodes["n1"].metrics.timestampsRefused.WithLabelValues(doorStored)); got == 0 {
		t.Error("the poisoned record was not counted")
	}
	// The clock did not follow it.
	if ts := c.nodes["n1"].clock.Now(); ts > time.Now().Add(time.Second).UnixMicro() {
		t.Errorf("the clock moved to %d", ts)
	}
	// tako purge's request removes it from both replicas, and the key can
	// be written again.
	req := httptest.NewRequest("POST", "/purge/poisoned", nil)
	rec := httptest.NewRecorder()
	c.nodes["n2"].Handler().ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"removed":["n1","n2"]`) {
		t.Fatalf("POST /purge/poisoned: %d %q", rec.Code, rec.Body.String())
	}
	for _, id := range []string{"n1", "n2"} {
		// The refused write's requests may still land after the purge:
		// what must be gone is the poisoned version.
		if rec, found := c.localRecord(t, id, "poisoned"); found && rec.Timestamp == poison.Timestamp {
			t.Errorf("%s still holds the purged version", id)
		}
	}
	if code, _, body := httpWrite(c.nodes["n1"], "poisoned", "new", ""); code != 200 {
		t.Errorf("a write after the purge: %d %q", code, body)
	}
}

// FuzzTimestampDoors sends a timestamp through each door of a node: HTTP,
// the public binary put, the replica put, a refill batch, a record that
// repair fetches from a peer, and one a read-through finds on a peer. Each
// accepts it exactly when 1 ≤ ts ≤ now + max_timestamp_ahead, stores
// nothing otherwise, and never moves the node's clock.
func FuzzTimestampDoors(f *testing.F) {
	const doors = 6
	now := time.Now().UnixMicro()
	for _, ts := range []int64{now, 1, 0, -5, math.MinInt64, math.MaxInt64, now + 9*60e6, now + 11*60e6} {
		for door := range doors {
			f.Add(uint8(door), ts)
		}
	}
	c := startCluster(f, [][]string{{"n1"}, {"n2"}}, 2, "    background_repair: no\n")
	n, peer := c.nodes["n1"], c.nodes["n2"]
	peerNode, _, _ := c.cfg.Node("n2")
	ahead := n.settings(n.cfg.Load()).MaxTimestampAhead
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, door uint8, ts int64) {
		door %= doors
		key := fmt.Sprintf("fuzz/%d", seq.Add(1))
		ctx := context.Background()
		// Judged before and after the call, for a rule at the edge.
		before := hlc.Check(ts, time.Now().UnixMicro(), ahead) == nil
		var accepted bool
		switch door {
		case 0:
			code, _, _ := httpWrite(n, key, "v", strconv.FormatInt(ts, 10))
			accepted = code == 200
			if code != 200 && code != 400 {
				t.Fatalf("HTTP door answered %d", code)
			}
		case 1:
			resp := wireHandler{n}.Handle(ctx, &wire.Request{Op: wire.OpPut, Key: []byte(key), Record: wire.Record{Timestamp: ts, Value: []byte("v")}})
			accepted = resp.Err == nil
		case 2:
			resp := wireHandler{n}.Handle(ctx, &wire.Request{Op: wire.OpReplicaPut, Key: []byte(key), Record: wire.Record{Timestamp: ts, Value: []byte("v")}})
			accepted = resp.Err == nil
		case 3:
			if _, _, err := n.applyStream(ctx, refillUnit{Lo: 0, Hi: math.MaxUint32}, []wire.StreamEntry{{Key: []byte(key), Record: wire.Record{Timestamp: ts, Value: []byte("v")}}}); err != nil {
				t.Fatal(err)
			}
			_, err := n.store.Get(ctx, []byte(key))
			accepted = err == nil
		case 4, 5:
			// The peer holds the record already (stored before the rule,
			// or by a wrong clock).
			if _, err := peer.store.Put(ctx, []byte(key), store.Record{Timestamp: ts, Value: []byte("v")}); err != nil {
				t.Fatal(err)
			}
			if door == 4 {
				var stats passStats
				accepted = n.pullRecords(ctx, n.remote(peerNode), []string{key}, &stats) == nil
				break
			}
			refused := testutil.ToFloat64(n.metrics.timestampsRefused.WithLabelValues(doorReadThrough))
			if _, found, err := n.readThrough(ctx, []byte(key), store.Record{}, false); err != nil || !found {
				t.Fatalf("read-through of a key the peer holds: found %v, %v", found, err)
			}
			accepted = testutil.ToFloat64(n.metrics.timestampsRefused.WithLabelValues(doorReadThrough)) == refused
			if accepted {
				// It keeps what it read in the background.
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					if _, err := n.store.Get(ctx, []byte(key)); err == nil {
						break
					}
				}
			}
		}
		after := hlc.Check(ts, time.Now().UnixMicro(), ahead) == nil
		if door == 1 && ts == 0 {
			before, after = true, true // an OpPut at 0 asks the node to stamp it
		}
		if accepted && !before && !after || !accepted && before && after {
			t.Fatalf("door %d, timestamp %d: accepted %v, the rule says %v", door, ts, accepted, before)
		}
		rec, err := n.store.Get(ctx, []byte(key))
		if accepted != (err == nil) || err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("door %d, timestamp %d: accepted %v, stored %v %v", door, ts, accepted, rec, err)
		}
		if got := n.clock.Now(); got > time.Now().Add(time.Second).UnixMicro() {
			t.Fatalf("door %d, timestamp %d moved the clock to %d", door, ts, got)
		}
	})
}

// TestWhereShowsRecordsThatBreakTheRule: GET /where names the replica
// whose stored record breaks the timestamp rule, and why.
func TestWhereShowsRecordsThatBreakTheRule(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	ctx := context.Background()
	if _, err := c.nodes["n2"].store.Put(ctx, []byte("k"), store.Record{Timestamp: -5, Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes["n1"].store.Put(ctx, []byte("k"), store.Record{Timestamp: 10, Value: []byte("fine")}); err != nil {
		t.Fatal(err)
	}
	p, err := c.nodes["n1"].Where(ctx, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	broken := map[string]string{}
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, r := range b.Nodes {
				broken[r.ID] = r.BrokenTimestamp
			}
		}
	}
	if broken["n1"] != "" || !strings.Contains(broken["n2"], "before 1") {
		t.Errorf("where says %q", broken)
	}
}
