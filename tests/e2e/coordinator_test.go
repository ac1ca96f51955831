package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/takodb/tako/internal/coordinator"
)

// managed is a cluster whose nodes and proxy follow coordinators (-c).
type managed struct {
	*cluster
	coordAddr map[string]string // coordinator id → HOST:PORT
	coords    map[string]*process
	cfgs      map[string]string // coordinator id → its configuration file
	layout    func(extra string, without map[string]bool) string
}

// startManaged writes a configuration with the given coordinators (the
// first is the master when master is true) and buckets, starts the
// coordinators, then every node and a proxy with -c for each coordinator.
func startManaged(t *testing.T, coordIDs []string, master bool, buckets [][]string, bpk int) *managed {
	t.Helper()
	m := &managed{
		cluster:   &cluster{t: t, dir: t.TempDir(), nodes: map[string]*process{}, http: map[string]string{}, binary: map[string]string{}},
		coordAddr: map[string]string{}, coords: map[string]*process{}, cfgs: map[string]string{},
	}
	for _, id := range coordIDs {
		m.coordAddr[id] = fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	}
	ports := map[string][2]int{}
	for _, ids := range buckets {
		for _, id := range ids {
			p := freePorts(t, 2)
			ports[id] = [2]int{p[0], p[1]}
			m.http[id] = fmt.Sprintf("http://127.0.0.1:%d", p[0])
			m.binary[id] = fmt.Sprintf("127.0.0.1:%d", p[1])
		}
	}
	m.layout = func(extra string, without map[string]bool) string {
		var b strings.Builder
		if master {
			fmt.Fprintf(&b, "master_coordinator: %s\n", coordIDs[0])
		}
		b.WriteString("coordinators:\n")
		for _, id := range coordIDs {
			host, port, _ := strings.Cut(m.coordAddr[id], ":")
			fmt.Fprintf(&b, "  %s: [%s, %s]\n", id, host, port)
		}
		fmt.Fprintf(&b, "active_deployment: main\ndeployments:\n  main:\n%s    hash:\n      buckets_per_key: %d\n    buckets:\n", extra, bpk)
		for i, ids := range buckets {
			fmt.Fprintf(&b, "      b%d:\n", i+1)
			for _, id := range ids {
				if !without[id] {
					fmt.Fprintf(&b, "        %s: [127.0.0.1, %d, %d]\n", id, ports[id][0], ports[id][1])
				}
			}
		}
		return b.String()
	}
	for _, id := range coordIDs {
		m.cfgs[id] = writeFile(t, m.dir, "tako-"+id+".yaml", m.layout("", nil))
		m.startCoordinator(id)
	}
	m.cfg = m.cfgs[coordIDs[0]]
	for id := range m.http {
		m.startNode(id)
	}
	for id, p := range m.nodes {
		waitHealthy(t, p, m.http[id])
	}
	m.base = fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
	m.startProxy()
	return m
}

func (m *managed) cFlags() []string {
	var args []string
	for _, addr := range m.coordAddr {
		args = append(args, "-c", addr)
	}
	return args
}

func (m *managed) startCoordinator(id string) {
	m.coords[id] = start(m.t, m.dir, "tako-coordinator", "-id", id, "-cfg", m.cfgs[id], "-v", m.dir)
	waitHealthy(m.t, m.coords[id], "http://"+m.coordAddr[id])
}

func (m *managed) startNode(id string) {
	m.nodes[id] = start(m.t, m.dir, "tako-node", append([]string{"-id", id, "-v", m.dir}, m.cFlags()...)...)
}

func (m *managed) startProxy() {
	port := strings.TrimPrefix(m.base, "http://127.0.0.1:")
	m.proxy = start(m.t, m.dir, "tako-proxy", append([]string{"-p", port, "-b", "127.0.0.1", "-v", m.dir}, m.cFlags()...)...)
	waitHealthy(m.t, m.proxy, m.base)
}

// coordinatorEpoch returns the epoch the coordinator serves.
func (m *managed) coordinatorEpoch(id string) int64 {
	m.t.Helper()
	resp, err := http.Get("http://" + m.coordAddr[id] + "/configuration")
	if err != nil {
		m.t.Fatal(err)
	}
	resp.Body.Close()
	e, err := strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
	if err != nil {
		m.t.Fatalf("coordinator %s epoch: %v", id, err)
	}
	return e
}

// reload rewrites a coordinator's file and sends it SIGHUP.
func (m *managed) reload(id, content string) {
	m.t.Helper()
	if err := os.WriteFile(m.cfgs[id], []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
	if err := m.coords[id].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		m.t.Fatal(err)
	}
}

// force creates the force file of coordinator id (coordinator.ForceFile in
// its state directory), so that it serves its next reload even if that
// reload would leave keys without a write quorum of their current replicas.
// The tests that cut their cluster down before they load any data use it.
func (m *managed) force(id string) {
	m.t.Helper()
	writeFile(m.t, filepath.Join(m.dir, "coordinator", id), coordinator.ForceFile, "")
}

var epochMetric = regexp.MustCompile(`(?m)^tako_config_epoch ([0-9.e+]+)$`)

// processEpoch reads tako_config_epoch from a process's /metrics.
func processEpoch(base string) int64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	mm := epochMetric.FindStringSubmatch(b.String())
	if mm == nil {
		return -1
	}
	f, _ := strconv.ParseFloat(mm[1], 64)
	return int64(f)
}

// everyone returns the base URL of every node and of the proxy.
func (m *managed) everyone() map[string]string {
	all := map[string]string{"p1": m.base}
	for id, u := range m.http {
		all[id] = u
	}
	return all
}

// TestReloadReachesEveryProcessWithinASecond changes the configuration of a
// 10-node cluster, sends SIGHUP, and measures how long it takes until every
// node and the proxy follow the new epoch.
func TestReloadReachesEveryProcessWithinASecond(t *testing.T) {
	m := startManaged(t, []string{"c1"}, true, [][]string{{"n1", "n2"}, {"n3", "n4"}, {"n5", "n6"}, {"n7", "n8"}, {"n9", "n10"}}, 2)
	before := m.coordinatorEpoch("c1")
	for id, u := range m.everyone() {
		if e := processEpoch(u); e != before {
			t.Fatalf("%s follows epoch %d, the coordinator serves %d", id, e, before)
		}
	}
	start := time.Now()
	m.reload("c1", m.layout("    request_timeout: 3s\n", nil))
	var after int64
	for after = m.coordinatorEpoch("c1"); after == before; after = m.coordinatorEpoch("c1") {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the coordinator did not take the new file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if after < before {
		t.Fatalf("epoch went down: %d → %d", before, after)
	}
	pending := m.everyone()
	for len(pending) > 0 && time.Since(start) < 10*time.Second {
		for id, u := range pending {
			if processEpoch(u) == after {
				delete(pending, id)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("SIGHUP to all 11 processes on epoch %d: %v", after, took)
	if len(pending) > 0 {
		t.Fatalf("processes still on the old configuration after %v: %v", took, pending)
	}
	if took > time.Second {
		t.Errorf("the reload took %v to reach every process, want under 1 s", took)
	}
	// An unchanged file keeps its epoch, across a reload and a restart.
	m.reload("c1", m.layout("    request_timeout: 3s\n", nil))
	time.Sleep(200 * time.Millisecond)
	if e := m.coordinatorEpoch("c1"); e != after {
		t.Fatalf("reloading an unchanged file moved the epoch %d → %d", after, e)
	}
	if err := m.coords["c1"].stop(t); err != nil {
		t.Fatalf("coordinator exit: %v", err)
	}
	m.startCoordinator("c1")
	if e := m.coordinatorEpoch("c1"); e != after {
		t.Fatalf("restarting on an unchanged file moved the epoch %d → %d", after, e)
	}
}

// TestInvalidReloadChangesNothing sends SIGHUP after writing an invalid
// file: the coordinator logs why and keeps serving the last good one.
func TestInvalidReloadChangesNothing(t *testing.T) {
	m := startManaged(t, []string{"c1"}, true, [][]string{{"n1"}, {"n2"}}, 2)
	before := m.coordinatorEpoch("c1")
	m.reload("c1", m.layout("    colour: blue\n", nil))
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.coords["c1"].output(), "colour") {
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator did not log why the file is invalid:\n%s", m.coords["c1"].output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(m.coords["c1"].output(), `deployment \"main\"`) && !strings.Contains(m.coords["c1"].output(), `deployment "main"`) {
		t.Errorf("the log does not name the deployment:\n%s", m.coords["c1"].output())
	}
	if e := m.coordinatorEpoch("c1"); e != before {
		t.Fatalf("an invalid reload changed the epoch %d → %d", before, e)
	}
	for id, u := range m.everyone() {
		if e := processEpoch(u); e != before {
			t.Errorf("%s moved to epoch %d", id, e)
		}
	}
	if code, _, _, err := httpDo(context.Background(), "POST", m.base+"/values/still", []byte("ok"), nil); err != nil || code != 200 {
		t.Fatalf("POST after an invalid reload: %d %v", code, err)
	}
}

// TestNodesAndProxyStartFromTheirCacheWithoutACoordinator stops the
// coordinator, restarts a node and the proxy, and reads every key.
func TestNodesAndProxyStartFromTheirCacheWithoutACoordinator(t *testing.T) {
	m := startManaged(t, []string{"c1"}, true, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2)
	ctx := context.Background()
	for i := range 100 {
		if code, _, _, err := httpDo(ctx, "POST", fmt.Sprintf("%s/values/k%d", m.base, i), []byte(fmt.Sprint(i)), nil); err != nil || code != 200 {
			t.Fatalf("POST: %d %v", code, err)
		}
	}
	if err := m.coords["c1"].stop(t); err != nil {
		t.Fatal(err)
	}
	if err := m.nodes["n2"].stop(t); err != nil {
		t.Fatal(err)
	}
	if err := m.proxy.stop(t); err != nil {
		t.Fatal(err)
	}
	m.restartNode("n2")
	m.startProxy()
	if !strings.Contains(m.nodes["n2"].output(), "cache") {
		t.Errorf("n2 does not say it started from its cache:\n%s", m.nodes["n2"].output())
	}
	for i := range 100 {
		code, _, body, err := httpDo(ctx, "GET", fmt.Sprintf("%s/values/k%d", m.base, i), nil, nil)
		if err != nil || code != 200 || string(body) != fmt.Sprint(i) {
			t.Fatalf("GET k%d without a coordinator: %d %v %q", i, code, err, body)
		}
		code, _, body, err = httpDo(ctx, "GET", fmt.Sprintf("%s/values/k%d", m.http["n2"], i), nil, nil)
		if err != nil || code != 200 || string(body) != fmt.Sprint(i) {
			t.Fatalf("GET k%d via the restarted n2: %d %v %q", i, code, err, body)
		}
	}
}

// TestEveryoneAdoptsTheHighestEpoch runs two coordinators without a master,
// serving different files; everyone follows the one with the higher epoch.
func TestEveryoneAdoptsTheHighestEpoch(t *testing.T) {
	m := startManaged(t, []string{"c1", "c2"}, false, [][]string{{"n1"}, {"n2"}}, 2)
	// c2 reloads a changed file last: its epoch is the highest.
	c2Before := m.coordinatorEpoch("c2")
	m.reload("c2", m.layout("    request_timeout: 4s\n", nil))
	waitFor(t, "c2's new epoch", func() bool {
		e := m.coordinatorEpoch("c2")
		return e != c2Before && e > m.coordinatorEpoch("c1")
	})
	want := m.coordinatorEpoch("c2")
	waitFor(t, "everyone on c2's epoch", func() bool {
		for _, u := range m.everyone() {
			if processEpoch(u) != want {
				return false
			}
		}
		return true
	})
	// Then c1 gets a newer one: everyone moves to it.
	m.reload("c1", m.layout("    request_timeout: 5s\n", nil))
	waitFor(t, "c1's new epoch", func() bool { return m.coordinatorEpoch("c1") > want })
	want = m.coordinatorEpoch("c1")
	waitFor(t, "everyone on c1's epoch", func() bool {
		for _, u := range m.everyone() {
			if processEpoch(u) != want {
				return false
			}
		}
		return true
	})
}

// TestFollowerCoordinatorServesTheMastersConfiguration edits only the
// master's file; a process that knows only the follower still gets it.
func TestFollowerCoordinatorServesTheMastersConfiguration(t *testing.T) {
	m := startManaged(t, []string{"c1", "c2"}, true, [][]string{{"n1"}, {"n2"}}, 2)
	before := m.coordinatorEpoch("c1")
	m.reload("c1", m.layout("    request_timeout: 4s\n", nil))
	waitFor(t, "the follower on the master's new epoch", func() bool {
		e := m.coordinatorEpoch("c1")
		return e != before && m.coordinatorEpoch("c2") == e
	})
	want := m.coordinatorEpoch("c1")
	// A proxy that is told only of the follower.
	port := freePorts(t, 1)[0]
	p := start(t, m.dir, "tako-proxy", "-id", "p2", "-p", fmt.Sprint(port), "-b", "127.0.0.1", "-v", m.dir, "-c", m.coordAddr["c2"])
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, p, base)
	if e := processEpoch(base); e != want {
		t.Fatalf("proxy following the follower is on epoch %d, want the master's %d", e, want)
	}
}

// TestNodeRemovedFromTheConfigurationStopsTakingPart reloads a
// configuration without n4: it answers 503 but for /health, and the others
// keep serving every key without it.
func TestNodeRemovedFromTheConfigurationStopsTakingPart(t *testing.T) {
	m := startManaged(t, []string{"c1"}, true, [][]string{{"n1"}, {"n2"}, {"n3", "n4"}}, 3)
	ctx := context.Background()
	before := m.coordinatorEpoch("c1")
	m.reload("c1", m.layout("", map[string]bool{"n4": true}))
	waitFor(t, "the new epoch", func() bool { return m.coordinatorEpoch("c1") != before })
	want := m.coordinatorEpoch("c1")
	waitFor(t, "n4 not healthy", func() bool {
		resp, err := http.Get(m.http["n4"] + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	if code, _, _, _ := httpDo(ctx, "GET", m.http["n4"]+"/values/x", nil, nil); code != 503 {
		t.Fatalf("GET on the removed n4: %d, want 503", code)
	}
	waitFor(t, "everyone on the new epoch", func() bool {
		for id, u := range m.everyone() {
			if e := processEpoch(u); e != want {
				t.Logf("%s on epoch %d, want %d", id, e, want)
				return false
			}
		}
		return true
	})
	for i := range 30 {
		k := fmt.Sprintf("%s/values/after%d", m.base, i)
		if code, _, _, err := httpDo(ctx, "POST", k, []byte("v"), nil); err != nil || code != 200 {
			t.Fatalf("POST without n4: %d %v", code, err)
		}
		if code, _, _, err := httpDo(ctx, "GET", k, nil, nil); err != nil || code != 200 {
			t.Fatalf("GET without n4: %d %v", code, err)
		}
	}
	if !strings.Contains(m.nodes["n4"].output(), "not in the new configuration") {
		t.Errorf("n4 does not say it was removed:\n%s", m.nodes["n4"].output())
	}
}
