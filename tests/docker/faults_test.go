package docker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// downtime records when services (nodes, by their compose service name)
// were down, so that operations sent to a service while it was down are
// not held against the cluster: a client whose entry point is down must
// use another.
type downtime struct {
	mu        sync.Mutex
	intervals map[string][][2]time.Time
}

// down marks service as down from now until the returned function is
// called.
func (d *downtime) down(service string) (up func()) {
	from := time.Now()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.intervals == nil {
			d.intervals = map[string][][2]time.Time{}
		}
		d.intervals[service] = append(d.intervals[service], [2]time.Time{from, time.Now()})
	}
}

// overlaps reports whether o was sent to a service while it was down.
func (d *downtime) overlaps(o *op) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, iv := range d.intervals[o.entry] {
		if o.start.Before(iv[1]) && o.end.After(iv[0]) {
			return true
		}
	}
	return false
}

// fault is one fault test: what it does, and which nodes it takes down
// together (the keys of which lose their quorum when those are more than a
// minority of the key's replicas).
type fault struct {
	name     string
	together []string // node ids down at the same time
	inject   func(t *testing.T, d *downtime)
}

// nodeService returns the compose service of node id ("n3": "tako-node-03").
func nodeService(id string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
	return fmt.Sprintf("tako-node-%02d", n)
}

func nodeServices() []string {
	var s []string
	for i := 1; i <= 10; i++ {
		s = append(s, nodeService(fmt.Sprint("n", i)))
	}
	return s
}

// workloadResult is what runWorkload measured.
type workloadResult struct {
	verdict
	// checked and checkedFailed count the operations on keys that kept a
	// quorum of their replicas, sent to a service that was up.
	checked, checkedFailed int
	// atDownEntry counts failed operations sent to a service while it was
	// down.
	atDownEntry int
	history     []*op
}

// runWorkload runs 6 clients doing reads (50%), writes (40%) and deletes
// (10%) of 150 keys, each through the proxy or a node's HTTP port chosen at
// random, while f injects its fault. Then it waits for every node to be
// healthy, reads every key once more through the proxy, and checks the
// whole history (see check).
func runWorkload(t *testing.T, c *compose, f fault) workloadResult {
	const clients, keys = 6, 150
	prefix := strings.ReplaceAll(f.name, " ", "-")
	h := &history{}
	d := &downtime{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	entries := append([]string{"tako-proxy"}, nodeServices()...)
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), uint64(time.Now().UnixNano())))
			avoid := map[string]time.Time{} // entries that just failed
			for seq := 0; ctx.Err() == nil; seq++ {
				entry := "tako-proxy"
				if rng.IntN(2) == 1 {
					entry = entries[1+rng.IntN(len(entries)-1)]
				}
				if time.Now().Before(avoid[entry]) {
					entry = "tako-proxy"
				}
				o := &op{client: cl, key: fmt.Sprintf("%s/%d", prefix, rng.IntN(keys)), entry: entry}
				method, body := "GET", []byte(nil)
				switch p := rng.IntN(10); {
				case p < 4:
					o.kind, method = opWrite, "POST"
					o.value = fmt.Sprintf("c%d-%d", cl, seq)
					body = []byte(o.value)
				case p < 5:
					o.kind, method = opDelete, "DELETE"
				}
				o.start = time.Now()
				code, hdr, resp := c.doAt(entry, method, "/values/"+o.key, body)
				o.end = time.Now()
				o.code = code
				if hdr != nil {
					o.ts, _ = strconv.ParseInt(hdr.Get("X-Timestamp"), 10, 64)
				}
				if o.kind == opRead && code == 200 {
					o.value = string(resp)
				}
				if code >= 500 {
					o.reason = string(resp)
				}
				if code == 0 && entry != "tako-proxy" {
					avoid[entry] = time.Now().Add(3 * time.Second)
				}
				h.add(o)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	t.Logf("%s: injecting the fault", f.name)
	f.inject(t, d)
	time.Sleep(3 * time.Second)
	cancel()
	wg.Wait()
	c.waitHealthy(t, nodeServices()...)

	// The final reads, once every node is back.
	final := map[*op]bool{}
	for i := range keys {
		o := &op{client: -1, kind: opRead, key: fmt.Sprintf("%s/%d", prefix, i), entry: "tako-proxy"}
		for attempt := 0; attempt < 5; attempt++ {
			o.start = time.Now()
			code, hdr, resp := c.doAt(o.entry, "GET", "/values/"+o.key, nil)
			o.end, o.code = time.Now(), code
			if hdr != nil {
				o.ts, _ = strconv.ParseInt(hdr.Get("X-Timestamp"), 10, 64)
			}
			o.value = string(resp)
			if code == 200 || code == 404 {
				break
			}
			time.Sleep(time.Second)
		}
		if o.code != 200 && o.code != 404 {
			t.Errorf("%s: the final read failed after the fault healed: %v", f.name, o)
		}
		final[o] = true
		h.ops = append(h.ops, o)
	}

	res := workloadResult{verdict: check(h.ops, final), history: h.ops}
	keptQuorum := quorumKeeper(t, f.together)
	for _, o := range h.ops {
		if final[o] || !o.failed() {
			continue
		}
		if d.overlaps(o) {
			res.atDownEntry++
		}
	}
	failures := map[string]int{} // "entry kind code" → count
	for _, o := range h.ops {
		if final[o] || d.overlaps(o) || !keptQuorum(o.key) {
			continue
		}
		res.checked++
		if o.failed() {
			res.checkedFailed++
			failures[fmt.Sprintf("%s %s %d", o.entry, o.kind, o.code)]++
			if res.checkedFailed <= 3 {
				t.Logf("%s: failed: %v: %s", f.name, o, o.reason)
			}
		}
	}
	if len(failures) > 0 {
		t.Logf("%s: failures on keys that kept a quorum, by entry, operation and status: %v", f.name, failures)
	}
	t.Logf("%s: %v", f.name, res.verdict)
	t.Logf("%s: %d of %d operations on keys that kept a quorum failed; %d more failed at a node while it was down",
		f.name, res.checkedFailed, res.checked, res.atDownEntry)
	if res.lost > 0 || res.stale > 0 {
		t.Errorf("%s: %d lost, %d stale", f.name, res.lost, res.stale)
		logKeys(t, h.ops, res.badKeys, 2)
	}
	if !res.histVerdict.OK() {
		t.Errorf("%s: internal/history: %d anomalies, %d keys unknown", f.name, res.histVerdict.Anomalies(), len(res.histVerdict.Unknown))
	}
	if res.checkedFailed*100 > res.checked {
		t.Errorf("%s: %d of %d operations failed on keys that kept a quorum of their replicas (more than 1%%)", f.name, res.checkedFailed, res.checked)
	}
	if res.acked < 100 {
		t.Errorf("%s: only %d writes and deletes were acknowledged: the workload did not run", f.name, res.acked)
	}
	return res
}

// quorumKeeper returns whether a key keeps a write and read quorum of its
// replicas while the nodes down are down.
func quorumKeeper(t *testing.T, down []string) func(key string) bool {
	cfg, err := config.Load("../../deploy/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	isDown := map[string]bool{}
	for _, id := range down {
		isDown[id] = true
	}
	return func(key string) bool {
		replicas := cfg.Replicas(nil, []byte(key))
		up := 0
		for _, r := range replicas {
			if !isDown[r.ID] {
				up++
			}
		}
		d := cfg.Active
		return up >= d.WriteQuorum.Required(len(replicas)) && up >= d.ReadQuorum.Required(len(replicas))
	}
}

// TestFaultsOnContainers starts the compose cluster once, checks the
// README's requests through the published proxy, then injects one fault
// after the other under load, each on its own keys, and checks every
// history.
func TestFaultsOnContainers(t *testing.T) {
	c := upCluster(t)
	t.Run("README requests", func(t *testing.T) {
		if code, h, _ := c.do("POST", "/values/greeting", []byte("hello, world")); code != 200 || h.Get("X-Timestamp") == "" {
			t.Fatalf("POST: %d", code)
		}
		if code, _, body := c.do("GET", "/values/greeting", nil); code != 200 || string(body) != "hello, world" {
			t.Fatalf("GET: %d %q", code, body)
		}
		if code, _, body := c.do("GET", "/stat/greeting", nil); code != 200 || len(body) < 16 {
			t.Fatalf("GET /stat: %d %q", code, body)
		}
		if code, _, _ := c.do("DELETE", "/values/greeting", nil); code/100 != 2 {
			t.Fatalf("DELETE: %d", code)
		}
		if code, _, _ := c.do("GET", "/values/greeting", nil); code != 404 {
			t.Fatalf("GET after DELETE: %d", code)
		}
	})
	network := c.project + "_default"
	faults := []fault{
		killNode(c, "kill -9 a node", "n3"),
		{name: "kill a whole bucket", together: []string{"n1", "n2"}, inject: func(t *testing.T, d *downtime) {
			up1, up2 := d.down("tako-node-01"), d.down("tako-node-02")
			run(t, nil, "docker", "kill", "-s", "KILL", c.container("tako-node-01"), c.container("tako-node-02"))
			time.Sleep(10 * time.Second)
			run(t, nil, "docker", "start", c.container("tako-node-01"), c.container("tako-node-02"))
			c.waitHealthy(t, "tako-node-01", "tako-node-02")
			up1()
			up2()
		}},
		{name: "cut a node off the network for 20 s", together: []string{"n7"}, inject: func(t *testing.T, d *downtime) {
			up := d.down("tako-node-07")
			run(t, nil, "docker", "network", "disconnect", network, c.container("tako-node-07"))
			time.Sleep(20 * time.Second)
			run(t, nil, "docker", "network", "connect", "--alias", "tako-node-07", network, c.container("tako-node-07"))
			c.waitHealthy(t, "tako-node-07")
			up()
		}},
		freezeNode(c, "freeze a node for 20 s", "n5"),
		loseVolume(c, "lose a node's volume", "n9"),
		// One node at a time: every key keeps its quorum.
		{name: "rolling restart", inject: func(t *testing.T, d *downtime) {
			for _, s := range nodeServices() {
				up := d.down(s)
				run(t, nil, "docker", "restart", "-t", "10", c.container(s))
				c.waitHealthy(t, s)
				up()
			}
		}},
		{name: "stop the coordinator", together: []string{"n6"}, inject: func(t *testing.T, d *downtime) {
			run(t, nil, "docker", "stop", "-t", "5", c.container("tako-coordinator-1"))
			time.Sleep(5 * time.Second)
			// A node restarted meanwhile serves from its cached configuration.
			up := d.down("tako-node-06")
			since := time.Now().Add(-time.Second).Format(time.RFC3339)
			run(t, nil, "docker", "restart", "-t", "10", c.container("tako-node-06"))
			c.waitHealthy(t, "tako-node-06")
			up()
			logs := run(t, nil, "docker", "logs", "--since", since, c.container("tako-node-06"))
			if !strings.Contains(logs, "starting from the cached configuration") {
				t.Errorf("tako-node-06 restarted while the coordinator was down and did not start from its cache:\n%s", logs)
			}
			time.Sleep(10 * time.Second)
			run(t, nil, "docker", "start", c.container("tako-coordinator-1"))
		}},
		{name: "a node's clock 5 s ahead", together: []string{"n4"}, inject: func(t *testing.T, d *downtime) {
			up := d.down("tako-node-04")
			c.recreate(t, "tako-node-04", "-test-clock-offset", "5s")
			c.waitHealthy(t, "tako-node-04")
			up()
			time.Sleep(20 * time.Second)
			up = d.down("tako-node-04")
			c.recreate(t, "tako-node-04")
			c.waitHealthy(t, "tako-node-04")
			up()
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			res := runWorkload(t, c, f)
			if f.name == "a node's clock 5 s ahead" {
				// The fault was real: node 4 stamped writes ahead.
				ahead := 0
				for _, o := range res.history {
					if o.entry == "tako-node-04" && o.acked() && o.ts > o.end.Add(4*time.Second).UnixMicro() {
						ahead++
					}
				}
				t.Logf("%s: %d acknowledged writes through tako-node-04 were stamped more than 4 s ahead", f.name, ahead)
				if ahead == 0 {
					t.Errorf("no write through tako-node-04 was stamped ahead: the clock offset did not take effect")
				}
			}
		})
	}
}

// recreate recreates service's container with the same volume and extra
// arguments on its command line.
func (c *compose) recreate(t *testing.T, service string, extra ...string) {
	t.Helper()
	id := "n" + strings.TrimLeft(strings.TrimPrefix(service, "tako-node-"), "0")
	args := []string{"/bin/tako-node", "-id", id, "-c", "tako-coordinator-1:4712", "-v", "/var/tako"}
	args = append(args, extra...)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	override := filepath.Join(t.TempDir(), "override.yml")
	yaml := fmt.Sprintf("version: \"3\"\nservices:\n  %s:\n    command: [%s]\n", service, strings.Join(quoted, ", "))
	if err := os.WriteFile(override, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, c.env, "docker-compose", "-f", "docker-compose.yml", "-f", override, "-p", c.project,
		"up", "-d", "--no-deps", "--force-recreate", service)
	c.forget(service)
}

// logKeys logs the history of up to n of keys, for the reader of a failure.
func logKeys(t *testing.T, ops []*op, keys []string, n int) {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] || len(seen) == n {
			continue
		}
		seen[k] = true
		var kops []*op
		for _, o := range ops {
			if o.key == k {
				kops = append(kops, o)
			}
		}
		slices.SortFunc(kops, func(a, b *op) int { return a.start.Compare(b.start) })
		var b strings.Builder
		for _, o := range kops {
			fmt.Fprintf(&b, "\n  %v", o)
		}
		t.Logf("history of %s:%s", k, b.String())
	}
}

// killNode kills node id's container with SIGKILL, waits 5 s and starts it
// again.
func killNode(c *compose, name, id string) fault {
	service := nodeService(id)
	return fault{name: name, together: []string{id}, inject: func(t *testing.T, d *downtime) {
		up := d.down(service)
		run(t, nil, "docker", "kill", "-s", "KILL", c.container(service))
		time.Sleep(5 * time.Second)
		run(t, nil, "docker", "start", c.container(service))
		c.waitHealthy(t, service)
		up()
	}}
}

// freezeNode pauses node id's container for 20 s.
func freezeNode(c *compose, name, id string) fault {
	service := nodeService(id)
	return fault{name: name, together: []string{id}, inject: func(t *testing.T, d *downtime) {
		up := d.down(service)
		run(t, nil, "docker", "pause", c.container(service))
		time.Sleep(20 * time.Second)
		run(t, nil, "docker", "unpause", c.container(service))
		c.waitHealthy(t, service)
		up()
	}}
}

// loseVolume removes node id's container and volume and starts it empty;
// the node must recover its data by background repair.
func loseVolume(c *compose, name, id string) fault {
	service := nodeService(id)
	return fault{name: name, together: []string{id}, inject: func(t *testing.T, d *downtime) {
		up := d.down(service)
		c.compose("rm", "-s", "-f", service)
		run(t, nil, "docker", "volume", "rm", c.project+"_"+id)
		c.compose("up", "-d", "--no-deps", service)
		c.waitHealthy(t, service)
		up()
		c.waitFor(service+" to recover its lost data", 60*time.Second, func() bool {
			return strings.Contains(c.compose("logs", "--no-color", service), "node recovered")
		})
	}}
}
