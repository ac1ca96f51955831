package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
)

// TestDeletedKeysStayDeletedWhenANodeRejoins checks the contract's promise
// that a deleted key never comes back, for a node that a migration removed
// and a later one adds back with its old disk.
//
// Three buckets of one node each keep every key on two of them. 200 keys
// are written; a migration moves n1's bucket out, and n1 is stopped with
// its disk, which still holds the keys it had. 100 keys are deleted, and
// the test waits until n2 and n3 have dropped the tombstones (their grace
// is 4 s), so that nothing in the cluster remembers the deletes. Then a
// second migration adds n1's bucket back, with n1 on its old disk. Once
// that migration has converged, has been promoted, and two more repair
// passes have run, every deleted key must still answer 404 on every node
// and through the proxy, and every kept key must still read back.
//
// The two cases differ in the order in which n1 comes back: started while
// the configuration does not name it (it then waits and serves nothing)
// and named afterwards, or named first and started afterwards.
func TestDeletedKeysStayDeletedWhenANodeRejoins(t *testing.T) {
	tests := []struct {
		name string
		// startFirst starts n1 before the configuration names it again.
		startFirst bool
		// mirror puts n4 in bucket b1 with n1: both leave, both come back
		// on their old disks, n4 seconds after n1 (each is suspect to the
		// other).
		mirror bool
		// unaware stops n1 once the migration out of b1 converged, before
		// its promotion: n1 never learns that it was removed, and comes
		// back from a configuration in which it held its ranges.
		unaware bool
	}{
		{name: "started-then-named", startFirst: true},
		{name: "named-then-started", startFirst: false},
		{name: "a bucket of two", mirror: true},
		{name: "stopped before it saw its removal", unaware: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case mostly waits for repair passes and the grace on
			// a cluster of its own: two at a time (-parallel defaults to
			// the cores) take half the 84 s they took one after the other.
			t.Parallel()
			testRejoinKeepsDeletes(t, tt.startFirst, tt.mirror, tt.unaware)
		})
	}
}

// Settings of the rejoin test's deployments: repair runs often and
// tombstones are dropped soon, so that the deletes are forgotten by n2 and
// n3 within seconds.
const (
	rejoinRepairInterval = 2 * time.Second
	rejoinTombstoneGrace = 4 * time.Second
	// rejoinTimeout bounds each wait for the cluster: several repair
	// passes on a slow, shared machine.
	rejoinTimeout = 60 * time.Second
)

func testRejoinKeepsDeletes(t *testing.T, startFirst, mirror, unaware bool) {
	began := time.Now()
	layout, away := [][]string{{"n1"}, {"n2"}, {"n3"}}, []string{"n1"}
	if mirror {
		layout, away = [][]string{{"n1", "n4"}, {"n2"}, {"n3"}}, []string{"n1", "n4"}
	}
	m := startManaged(t, []string{"c1"}, true, layout, 2)
	ctx := context.Background()
	header, _, _ := strings.Cut(m.layout("", nil), "active_deployment:")
	all := []string{"b1", "b2", "b3"}
	without := []string{"b2", "b3"}
	file := func(active string, activeBuckets []string, target string, targetBuckets []string) string {
		s := header + "active_deployment: " + active + "\n"
		if target != "" {
			s += "target_deployment: " + target + "\n"
		}
		s += "deployments:\n" + rejoinDeploymentYAML(m, active, activeBuckets, mirror)
		if target != "" {
			s += rejoinDeploymentYAML(m, target, targetBuckets, mirror)
		}
		return s
	}

	// Three buckets, with the short repair interval and grace.
	everyone := append(append([]string{}, away...), "n2", "n3")
	rejoinReload(t, m, file("three", all, "", nil), "the three-bucket configuration")
	rejoinWaitEpoch(t, m, append(everyone, "p1")...)
	for _, id := range everyone {
		waitHealthy(t, m.nodes[id], m.http[id])
	}

	// 200 keys; the even ones will be deleted, the odd ones kept.
	var deleted, kept []string
	values := map[string]string{}
	for i := range 200 {
		k, v := fmt.Sprintf("rejoin/%03d", i), fmt.Sprintf("value %d", i)
		if code, _, body, err := httpDo(ctx, "POST", m.base+"/values/"+k, []byte(v), nil); err != nil || code != 200 {
			t.Fatalf("POST %s: %d %v %s", k, code, err, body)
		}
		values[k] = v
		if i%2 == 0 {
			deleted = append(deleted, k)
		} else {
			kept = append(kept, k)
		}
	}

	// Migrate n1's bucket out, promote, and stop n1 with its disk kept.
	rejoinReload(t, m, file("three", all, "two", without), "the target without b1")
	rejoinWaitUntil(t, "the migration out of b1 to converge", func() bool { return migrationConverged(t, m.coordAddr["c1"]) })
	stopAway := func() {
		for _, id := range away {
			t.Logf("%s holds about %v records when it stops", id, metricValue(m.http[id], "tako_store_keys"))
			if err := m.nodes[id].stop(t); err != nil {
				t.Fatalf("stopping %s: %v", id, err)
			}
		}
	}
	if unaware {
		// n1 stops first: its last configuration is the migration, in
		// which it still holds its ranges. The promotion then needs the
		// force file, as n1 cannot say that it finished a pass.
		stopAway()
		m.force("c1")
		rejoinReload(t, m, file("two", without, "", nil), "the promotion of the target without b1")
		rejoinWaitEpoch(t, m, "n2", "n3", "p1")
	} else {
		rejoinReload(t, m, file("two", without, "", nil), "the promotion of the target without b1")
		// n1 follows the new epoch before it stops: its cached
		// configuration (DIR/etc/n1) is then one that does not name it.
		rejoinWaitEpoch(t, m, append(everyone, "p1")...)
		stopAway()
	}

	// Delete 100 keys while n1 is away.
	for _, k := range deleted {
		if code, _, body, err := httpDo(ctx, "DELETE", m.base+"/values/"+k, nil, nil); err != nil || (code != 200 && code != 204) {
			t.Fatalf("DELETE %s: %d %v %s", k, code, err, body)
		}
	}
	for _, k := range deleted {
		if code, _, _, err := httpDo(ctx, "GET", m.base+"/values/"+k, nil, nil); err != nil || code != 404 {
			t.Fatalf("GET %s right after its delete: %d %v, want 404", k, code, err)
		}
	}

	// Wait until n2 and n3 have collected the tombstones: neither holds
	// any record of a deleted key any more.
	rejoinWaitUntil(t, "n2 and n3 to drop the tombstones of the deleted keys", func() bool {
		for _, k := range deleted {
			if held := rejoinHolders(m.http["n2"], k); held == nil || len(held) > 0 {
				return false
			}
		}
		return true
	})
	t.Logf("tombstones collected after %v: n2 dropped %v, n3 dropped %v", time.Since(began).Round(time.Millisecond),
		metricValue(m.http["n2"], `tako_gc_records_dropped_total{kind="tombstone"}`),
		metricValue(m.http["n3"], `tako_gc_records_dropped_total{kind="tombstone"}`))

	// Bring n1 back on its old disk, in a migration that adds b1 again.
	back := file("two", without, "again", all)
	if startFirst {
		m.startNode("n1")
		// n1 starts from its cache and hears from the coordinator a
		// configuration that does not name it: it waits, serving nothing.
		epoch := m.coordinatorEpoch("c1")
		rejoinWaitUntil(t, "n1 to wait for a configuration that names it", func() bool {
			return strings.Contains(m.nodes["n1"].output(), fmt.Sprintf("epoch %d is not the one awaited", epoch))
		})
		if code, _, _, err := httpDo(ctx, "GET", m.http["n1"]+"/health", nil, nil); err == nil && code == 200 {
			t.Fatal("n1 is healthy although the configuration does not name it")
		}
		rejoinReload(t, m, back, "the target that adds b1 back")
	} else {
		rejoinReload(t, m, back, "the target that adds b1 back")
		rejoinWaitEpoch(t, m, "n2", "n3", "p1")
		m.startNode("n1")
	}
	if mirror {
		// n4 a few seconds after n1, as two containers that start one
		// after the other.
		time.Sleep(5 * time.Second)
		m.startNode("n4")
	}
	for _, id := range away {
		waitHealthy(t, m.nodes[id], m.http[id])
	}
	rejoinWaitEpoch(t, m, append(everyone, "p1")...)
	rejoinWaitUntil(t, "the migration that adds b1 back to converge", func() bool { return migrationConverged(t, m.coordAddr["c1"]) })
	rejoinReload(t, m, file("again", all, "", nil), "the promotion of the target with b1")
	promoted := rejoinWaitEpoch(t, m, append(everyone, "p1")...)

	// Let every node finish a clean pass under the promoted configuration,
	// then two more passes.
	passes := map[string]float64{}
	for _, id := range everyone {
		rejoinWaitUntil(t, id+" to finish a clean repair pass under the promoted configuration", func() bool {
			return metricValue(m.http[id], "tako_repair_synced_epoch") >= float64(promoted)
		})
		passes[id] = metricValue(m.http[id], "tako_repair_passes_total")
	}
	for _, id := range everyone {
		rejoinWaitUntil(t, id+" to make two more repair passes", func() bool {
			return metricValue(m.http[id], "tako_repair_passes_total") >= passes[id]+2
		})
	}

	// Count, for every place a client can read from, the deleted keys that
	// answer anything but 404.
	type count struct {
		back     int
		byStatus map[string]int
	}
	readers := append(everyone, "p1")
	counts := map[string]*count{}
	anyBack := false
	for _, id := range readers {
		c := &count{byStatus: map[string]int{}}
		counts[id] = c
		base := m.base
		if id != "p1" {
			base = m.http[id]
		}
		for _, k := range deleted {
			code, _, _, err := httpDo(ctx, "GET", base+"/values/"+k, nil, nil)
			if err == nil && code == 404 {
				continue
			}
			c.back++
			anyBack = true
			if err != nil {
				c.byStatus["error"]++
			} else {
				c.byStatus[fmt.Sprint(code)]++
			}
		}
	}
	if anyBack {
		// What each replica holds of the deleted keys, to tell where
		// they came back from.
		holders := map[string]int{}
		for _, k := range deleted {
			for id := range rejoinHolders(m.http["n2"], k) {
				holders[id]++
			}
		}
		var b strings.Builder
		for _, id := range readers {
			fmt.Fprintf(&b, "\n  GET on %s: %d of %d deleted keys answer other than 404 %v", id, counts[id].back, len(deleted), counts[id].byStatus)
		}
		fmt.Fprintf(&b, "\n  replicas holding a record of a deleted key (GET /where on n2): %v", holders)
		t.Errorf("deleted keys came back after n1 rejoined on its old disk:%s", b.String())
	}
	var lost []string
	for _, k := range kept {
		code, _, body, err := httpDo(ctx, "GET", m.base+"/values/"+k, nil, nil)
		if err != nil || code != 200 || string(body) != values[k] {
			lost = append(lost, fmt.Sprintf("%s: %d %v %q", k, code, err, body))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d kept keys do not read back through the proxy:\n  %s", len(lost), len(kept), strings.Join(lost, "\n  "))
	}
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// rejoinDeploymentYAML writes deployment name of the given buckets of m,
// each holding the one node of the same number (b1: n1, ...), with the
// rejoin test's repair interval and tombstone grace.
func rejoinDeploymentYAML(m *managed, name string, buckets []string, mirror bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    background_repair_interval: %v\n    tombstone_grace: %v\n    hash:\n      buckets_per_key: 2\n    buckets:\n",
		name, rejoinRepairInterval, rejoinTombstoneGrace)
	for _, bucket := range buckets {
		ids := []string{"n" + strings.TrimPrefix(bucket, "b")}
		if mirror && bucket == "b1" {
			ids = append(ids, "n4")
		}
		fmt.Fprintf(&b, "      %s:\n", bucket)
		for _, id := range ids {
			port := strings.TrimPrefix(m.http[id], "http://127.0.0.1:")
			bport := strings.TrimPrefix(m.binary[id], "127.0.0.1:")
			fmt.Fprintf(&b, "        %s: [127.0.0.1, %s, %s]\n", id, port, bport)
		}
	}
	return b.String()
}

// rejoinReload gives coordinator c1 a new file and fails the test unless
// it serves it (a newer epoch) soon.
func rejoinReload(t *testing.T, m *managed, content, what string) {
	t.Helper()
	before := m.coordinatorEpoch("c1")
	logBefore := len(m.coords["c1"].output())
	m.reload("c1", content)
	rejoinWaitUntil(t, "the coordinator to answer the reload of "+what, func() bool {
		return m.coordinatorEpoch("c1") != before || strings.Contains(m.coords["c1"].output()[logBefore:], "refusing the reload")
	})
	if m.coordinatorEpoch("c1") == before {
		t.Fatalf("the coordinator refused %s:\n%s", what, m.coords["c1"].output()[logBefore:])
	}
}

// rejoinWaitEpoch waits until the given processes (p1: the proxy) follow
// the epoch the coordinator serves, and returns it.
func rejoinWaitEpoch(t *testing.T, m *managed, ids ...string) int64 {
	t.Helper()
	epoch := m.coordinatorEpoch("c1")
	rejoinWaitUntil(t, fmt.Sprintf("%v to follow epoch %d", ids, epoch), func() bool {
		for _, id := range ids {
			base := m.base
			if id != "p1" {
				base = m.http[id]
			}
			if processEpoch(base) != epoch {
				return false
			}
		}
		return true
	})
	return epoch
}

// rejoinHolders asks the node at base where key lives (GET /where/KEY)
// and returns the replicas that hold a record of it, a tombstone or a
// value. It returns nil when the answer is incomplete: the request or a
// replica failed.
func rejoinHolders(base, key string) map[string]bool {
	resp, err := http.Get(base + "/where/" + key)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil
	}
	var p httpapi.Placement
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil
	}
	held := map[string]bool{}
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, r := range b.Nodes {
				if r.Error != "" {
					return nil
				}
				if r.Found {
					held[r.ID] = true
				}
			}
		}
	}
	return held
}

// rejoinWaitUntil polls cond until it holds, for at most rejoinTimeout.
func rejoinWaitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(rejoinTimeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", rejoinTimeout, what)
		}
	}
}
