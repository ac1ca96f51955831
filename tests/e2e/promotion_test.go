package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// deploymentYAML writes one deployment of the given buckets.
func deploymentYAML(name string, buckets map[string][]string, order []string, addr map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n    background_repair_interval: 1s\n    hash:\n      buckets_per_key: 2\n    buckets:\n", name)
	for _, bn := range order {
		ids, ok := buckets[bn]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "      %s:\n", bn)
		for _, id := range ids {
			fmt.Fprintf(&b, "        %s: %s\n", id, addr[id])
		}
	}
	return b.String()
}

func migrationConverged(t *testing.T, coordAddr string) bool {
	resp, err := http.Get("http://" + coordAddr + "/migration")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var st struct {
		Converged bool `json:"converged"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Logf("GET /migration: %v", err)
		return false
	}
	return st.Converged
}

// TestMigrationAddThenRemoveABucket grows a cluster from two buckets to
// three through a migration, then shrinks it to two others: the coordinator
// refuses each promotion until background repair has brought the target in
// sync, accepts it after, and no key is lost on the way, although the nodes
// of the removed bucket are stopped in the end.
func TestMigrationAddThenRemoveABucket(t *testing.T) {
	m := startManaged(t, []string{"c1"}, true, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}}, 2)
	addr := map[string]string{}
	for id, u := range m.http {
		port := strings.TrimPrefix(u, "http://127.0.0.1:")
		bport := strings.TrimPrefix(m.binary[id], "127.0.0.1:")
		addr[id] = fmt.Sprintf("[127.0.0.1, %s, %s]", port, bport)
	}
	header, _, _ := strings.Cut(m.layout("", nil), "active_deployment:")
	order := []string{"b1", "b2", "b3"}
	two := map[string][]string{"b1": {"n1", "n2"}, "b2": {"n3", "n4"}}
	three := map[string][]string{"b1": {"n1", "n2"}, "b2": {"n3", "n4"}, "b3": {"n5", "n6"}}
	last := map[string][]string{"b2": {"n3", "n4"}, "b3": {"n5", "n6"}}
	file := func(active string, activeB map[string][]string, target string, targetB map[string][]string) string {
		s := header + "active_deployment: " + active + "\n"
		if target != "" {
			s += "target_deployment: " + target + "\n"
		}
		s += "deployments:\n" + deploymentYAML(active, activeB, order, addr)
		if target != "" {
			s += deploymentYAML(target, targetB, order, addr)
		}
		return s
	}
	reload := func(content string) (accepted bool) {
		before := m.coordinatorEpoch("c1")
		logBefore := len(m.coords["c1"].output())
		m.reload("c1", content)
		waitFor(t, "the coordinator to answer the reload", func() bool {
			out := m.coords["c1"].output()[logBefore:]
			return m.coordinatorEpoch("c1") != before || strings.Contains(out, "refusing the reload")
		})
		return m.coordinatorEpoch("c1") != before
	}
	// Cutting the empty cluster down to two buckets moves no data, but the
	// coordinator refuses such a cut without a migration: force it.
	m.force("c1")
	if !reload(file("two", two, "", nil)) {
		t.Fatal("the two-bucket configuration was refused")
	}
	// Load keys into the two-bucket cluster.
	ctx := context.Background()
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		waitHealthy(t, m.nodes[id], m.http[id])
	}
	values := map[string]string{}
	for i := range 300 {
		k, v := fmt.Sprintf("grow/%d", i), fmt.Sprintf("value %d", i)
		if code, _, _, err := httpDo(ctx, "POST", m.base+"/values/"+k, []byte(v), nil); err != nil || code != 200 {
			t.Fatalf("POST %s: %d %v", k, code, err)
		}
		values[k] = v
	}
	// Migrate to three buckets.
	if !reload(file("two", two, "three", three)) {
		t.Fatal("adding the target was refused")
	}
	// Promoting at once is refused: repair has not filled b3 yet.
	if reload(file("three", three, "", nil)) {
		t.Fatal("a promotion was accepted before the migration converged")
	}
	if !strings.Contains(m.coords["c1"].output(), "have not finished a repair pass") {
		t.Errorf("the refusal does not say what is out of sync:\n%s", m.coords["c1"].output())
	}
	waitFor(t, "the migration to converge", func() bool { return migrationConverged(t, m.coordAddr["c1"]) })
	if !reload(file("three", three, "", nil)) {
		t.Fatalf("the promotion was refused after the migration converged:\n%s", m.coords["c1"].output())
	}
	// Now remove b1: migrate to b2 + b3, wait, promote.
	if !reload(file("three", three, "last", last)) {
		t.Fatal("adding the shrinking target was refused")
	}
	waitFor(t, "the second migration to converge", func() bool { return migrationConverged(t, m.coordAddr["c1"]) })
	if !reload(file("last", last, "", nil)) {
		t.Fatalf("the second promotion was refused:\n%s", m.coords["c1"].output())
	}
	// n1 and n2 are out: stop them for good and wipe their disks.
	waitFor(t, "everyone on the last configuration", func() bool {
		e := m.coordinatorEpoch("c1")
		for _, id := range []string{"n3", "n4", "n5", "n6"} {
			if processEpoch(m.http[id]) != e {
				return false
			}
		}
		return processEpoch(m.base) == e
	})
	for _, id := range []string{"n1", "n2"} {
		if err := m.nodes[id].stop(t); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(m.dataDir(id))
	}
	for k, v := range values {
		code, _, body, err := httpDo(ctx, "GET", m.base+"/values/"+k, nil, nil)
		if err != nil || code != 200 || string(body) != v {
			t.Fatalf("%s after adding b3 and removing b1: %d %v %q, want %q", k, code, err, body, v)
		}
	}
}
