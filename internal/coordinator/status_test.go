package coordinator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// fakeNode serves a /metrics page like a node's, with counters a test
// moves on.
type fakeNode struct {
	mu         sync.Mutex
	code       int // the status of the answer; 0 means 200
	start      time.Time
	keys       int64
	reads      int64 // tako_coordinated_reads_total{outcome="ok"}
	writes     int64 // tako_coordinated_writes_total{outcome="ok"}
	restamped  int64 // not requests of their own
	httpHealth int64 // tako_http_requests_total{op="health"}
	httpGets   int64 // counted among the reads
	scrapes    int64 // tako_http_requests_total{op="metrics"}, not counted
	synced     int64
	recovering bool
	refill     *fakeRefill   // nil: the node exports no refill metrics
	delay      time.Duration // how long the answer takes
}

// fakeRefill is the refill a fakeNode exports; its zero value exports
// every refill metric as 0, like a node that runs none.
type fakeRefill struct {
	active                      bool
	bytesLeft, keysLeft         int64
	rate, eta                   float64
	receivedBytes, receivedKeys int64
}

// text renders the refill metrics.
func (r *fakeRefill) text() string {
	active := 0
	if r.active {
		active = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE tako_refill_active gauge\ntako_refill_active %d\n", active)
	fmt.Fprintf(&b, "# TYPE tako_refill_bytes_remaining gauge\ntako_refill_bytes_remaining %d\n", r.bytesLeft)
	fmt.Fprintf(&b, "# TYPE tako_refill_keys_remaining gauge\ntako_refill_keys_remaining %d\n", r.keysLeft)
	fmt.Fprintf(&b, "# TYPE tako_refill_bytes_per_second gauge\ntako_refill_bytes_per_second %g\n", r.rate)
	fmt.Fprintf(&b, "# TYPE tako_refill_eta_seconds gauge\ntako_refill_eta_seconds %g\n", r.eta)
	fmt.Fprintf(&b, "# TYPE tako_refill_received_bytes_total counter\ntako_refill_received_bytes_total %d\n", r.receivedBytes)
	fmt.Fprintf(&b, "# TYPE tako_refill_received_keys_total counter\ntako_refill_received_keys_total %d\n", r.receivedKeys)
	return b.String()
}

// set changes the fake node under its lock.
func (f *fakeNode) set(change func(f *fakeNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	code, delay := f.code, f.delay
	text := f.text()
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	if code != 0 {
		http.Error(w, "broken", code)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, text)
}

// text renders the metrics; f.mu must be held.
func (f *fakeNode) text() string {
	recovering := 0
	if f.recovering {
		recovering = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP tako_build_info Always 1.\n# TYPE tako_build_info gauge\n")
	fmt.Fprintf(&b, "tako_build_info{program=\"tako-node\",version=\"v1.2.3\"} 1\n")
	fmt.Fprintf(&b, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %s\n",
		strconv.FormatFloat(float64(f.start.UnixMilli())/1e3, 'g', -1, 64))
	fmt.Fprintf(&b, "# TYPE tako_store_keys gauge\ntako_store_keys %d\n", f.keys)
	fmt.Fprintf(&b, "# TYPE tako_store_disk_bytes gauge\ntako_store_disk_bytes %d\n", 10*f.keys)
	fmt.Fprintf(&b, "# TYPE tako_coordinated_reads_total counter\n")
	fmt.Fprintf(&b, "tako_coordinated_reads_total{outcome=\"ok\"} %d\n", f.reads)
	fmt.Fprintf(&b, "tako_coordinated_reads_total{outcome=\"unavailable\"} 2\n")
	fmt.Fprintf(&b, "# TYPE tako_coordinated_writes_total counter\n")
	fmt.Fprintf(&b, "tako_coordinated_writes_total{outcome=\"ok\"} %d\n", f.writes)
	fmt.Fprintf(&b, "tako_coordinated_writes_total{outcome=\"restamped\"} %d\n", f.restamped)
	fmt.Fprintf(&b, "# TYPE tako_http_requests_total counter\n")
	fmt.Fprintf(&b, "tako_http_requests_total{code=\"200\",op=\"get\"} %d\n", f.httpGets)
	fmt.Fprintf(&b, "tako_http_requests_total{code=\"200\",op=\"health\"} %d\n", f.httpHealth)
	fmt.Fprintf(&b, "tako_http_requests_total{code=\"200\",op=\"metrics\"} %d\n", f.scrapes)
	fmt.Fprintf(&b, "# TYPE tako_http_request_duration_seconds histogram\n")
	fmt.Fprintf(&b, "tako_http_request_duration_seconds_bucket{op=\"get\",le=\"0.1\"} 3\n")
	fmt.Fprintf(&b, "tako_http_request_duration_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n")
	fmt.Fprintf(&b, "tako_http_request_duration_seconds_sum{op=\"get\"} 0.01\n")
	fmt.Fprintf(&b, "tako_http_request_duration_seconds_count{op=\"get\"} 3\n")
	fmt.Fprintf(&b, "# TYPE tako_repair_pass_progress_ratio gauge\ntako_repair_pass_progress_ratio 0.25\n")
	fmt.Fprintf(&b, "# TYPE tako_repair_passes_total counter\ntako_repair_passes_total 3\n")
	fmt.Fprintf(&b, "# TYPE tako_repair_synced_epoch gauge\ntako_repair_synced_epoch %d\n", f.synced)
	fmt.Fprintf(&b, "# TYPE tako_peer_up gauge\n")
	fmt.Fprintf(&b, "tako_peer_up{peer=\"n4\"} 0\ntako_peer_up{peer=\"n3\"} 1\ntako_peer_up{peer=\"n2\"} 0\n")
	fmt.Fprintf(&b, "# TYPE tako_config_epoch gauge\ntako_config_epoch %d\n", f.synced)
	fmt.Fprintf(&b, "# TYPE tako_node_recovering gauge\ntako_node_recovering %d\n", recovering)
	if f.refill != nil {
		b.WriteString(f.refill.text())
	}
	return b.String()
}

// httpPort starts an httptest server of h and returns its port.
func httpPort(t *testing.T, h http.Handler) int {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return p
}

// getStatus asks url (a Server's base URL) for GET /status.
func getStatus(t *testing.T, url string) Status {
	t.Helper()
	resp, err := http.Get(url + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /status: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /status: Content-Type %q, want application/json", ct)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	return st
}

// statusFixture is a Server whose configuration names fake nodes: a
// migration from blue (b1: n1 n2, b2: n3 n4) to green (the same and b3: n5).
// n1 and n5 answer, n2 answers 500, n3 is recovering, n4 has no HTTP port.
// n3 refills (n3Refill); n1 exports the refill metrics as 0, n5 not at all.
type statusFixture struct {
	srv   *Server
	url   string // of the Server's handler
	clock *fixedClock
	epoch int64
	nodes map[string]*fakeNode
}

func newStatusFixture(t *testing.T) *statusFixture {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fx := &statusFixture{clock: &fixedClock{now: t0}, epoch: t0.UnixMicro(), nodes: map[string]*fakeNode{}}
	start := t0.Add(-time.Hour)
	fx.nodes["n1"] = &fakeNode{start: start, keys: 1000, reads: 100, writes: 50, httpHealth: 5, synced: fx.epoch}
	fx.nodes["n2"] = &fakeNode{start: start, code: http.StatusInternalServerError}
	fx.nodes["n3"] = &fakeNode{start: start, keys: 7, synced: fx.epoch - 1, recovering: true, refill: &n3Refill}
	fx.nodes["n5"] = &fakeNode{start: start, synced: fx.epoch + 5}
	fx.nodes["n1"].refill = &fakeRefill{}
	port := map[string]int{}
	for id, f := range fx.nodes {
		port[id] = httpPort(t, f)
	}
	node := func(id string) string {
		if id == "n4" {
			return fmt.Sprintf("[127.0.0.1, %d]", 17004)
		}
		return fmt.Sprintf("[127.0.0.1, %d, %d]", port[id], 17000+int(id[1]-'0'))
	}
	var b strings.Builder
	b.WriteString("coordinators:\n  c1: [127.0.0.1, 4712]\nactive_deployment: blue\ntarget_deployment: green\ndeployments:\n")
	for _, d := range []string{"blue", "green"} {
		fmt.Fprintf(&b, "  %s:\n    hash:\n      buckets_per_key: 2\n    buckets:\n", d)
		fmt.Fprintf(&b, "      b1:\n        n1: %s\n        n2: %s\n", node("n1"), node("n2"))
		fmt.Fprintf(&b, "      b2:\n        n3: %s\n        n4: %s\n", node("n3"), node("n4"))
		if d == "green" {
			fmt.Fprintf(&b, "      b3:\n        n5: %s\n", node("n5"))
		}
	}
	fx.srv = newTestServer(t, t.TempDir(), "c1", b.String(), fx.clock.Now)
	web := httptest.NewServer(fx.srv.Handler())
	t.Cleanup(web.Close)
	fx.url = web.URL
	return fx
}

// n3Refill is the refill of the fixture's n3: 540 MiB and 12,345 keys to
// go at 180 MiB/s, 3 s left, after 1 GiB and 40,000 keys.
var n3Refill = fakeRefill{active: true, bytesLeft: 540 << 20, keysLeft: 12345, rate: 180 << 20, eta: 3,
	receivedBytes: 1 << 30, receivedKeys: 40000}

// nodeByID returns the node id of st.
func nodeByID(t *testing.T, st Status, id string) NodeStatus {
	t.Helper()
	for _, n := range st.Nodes {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no node %s in the status", id)
	return NodeStatus{}
}

func TestStatus(t *testing.T) {
	fx := newStatusFixture(t)

	// The first request scrapes at once: nothing has yet.
	st := getStatus(t, fx.url)
	checkStatusShape(t, fx, st)
	n1 := nodeByID(t, st, "n1")
	want := NodeStatus{
		ID: "n1", Deployments: []string{"blue", "green"}, Bucket: "b1", HTTP: n1.HTTP, Binary: "127.0.0.1:17001",
		State: "up", Version: "v1.2.3", UptimeSeconds: 3600, Keys: 1000, DiskBytes: 10000,
		RequestsPerSecond: 0, RepairProgress: 0.25, RepairPasses: 3, SyncedEpoch: fx.epoch,
		PeersDown: []string{"n2", "n4"}, ConfigEpoch: fx.epoch, LastSeen: fx.clock.Now(),
	}
	checkNode(t, n1, want)
	if !strings.HasPrefix(n1.HTTP, "127.0.0.1:") {
		t.Errorf("n1: http %q, want 127.0.0.1:PORT", n1.HTTP)
	}

	// Two seconds later, 20 more requests: 10 reads, 6 writes and 4 health
	// checks (the get is among the reads, the restamp a retry, the scrape
	// not a request).
	fx.clock.Set(fx.clock.Now().Add(2 * time.Second))
	fx.nodes["n1"].set(func(f *fakeNode) {
		f.reads += 10
		f.writes += 6
		f.httpHealth += 4
		f.httpGets += 10
		f.restamped += 3
		f.scrapes++
		f.keys = 1200
	})
	fx.srv.collector.scrape(context.Background(), false)
	st = getStatus(t, fx.url)
	checkStatusShape(t, fx, st)
	want.UptimeSeconds, want.Keys, want.DiskBytes, want.RequestsPerSecond, want.LastSeen = 3602, 1200, 12000, 10, fx.clock.Now()
	checkNode(t, nodeByID(t, st, "n1"), want)

	// n1 stops answering: down, its last answer's time kept.
	seenAt := fx.clock.Now()
	fx.clock.Set(seenAt.Add(2 * time.Second))
	fx.nodes["n1"].set(func(f *fakeNode) { f.code = http.StatusServiceUnavailable })
	fx.srv.collector.scrape(context.Background(), false)
	st = getStatus(t, fx.url)
	n1 = nodeByID(t, st, "n1")
	checkNode(t, n1, NodeStatus{
		ID: "n1", Deployments: []string{"blue", "green"}, Bucket: "b1", HTTP: n1.HTTP, Binary: "127.0.0.1:17001",
		State: "down", Error: n1.Error, SyncedEpoch: -1, LastSeen: seenAt,
	})
	if !strings.Contains(n1.Error, "503") {
		t.Errorf("n1: error %q, want it to say 503", n1.Error)
	}
	if st.NodesDown != 2 || st.Migration.NodesSynced != 1 {
		t.Errorf("with n1 down: nodes_down %d, nodes_synced %d; want 2, 1", st.NodesDown, st.Migration.NodesSynced)
	}

	// It answers again: no rate until two answers in a row.
	fx.clock.Set(fx.clock.Now().Add(2 * time.Second))
	fx.nodes["n1"].set(func(f *fakeNode) { f.code = 0 })
	fx.srv.collector.scrape(context.Background(), false)
	if n1 := nodeByID(t, getStatus(t, fx.url), "n1"); n1.State != "up" || n1.RequestsPerSecond != 0 {
		t.Errorf("n1 back: state %s, %v req/s; want up, 0", n1.State, n1.RequestsPerSecond)
	}
}

// TestStatusRefill: /status gives a node that refills a "refill" object
// with its progress, and gives none to a node that exports the refill
// metrics as 0 or not at all, nor to one whose refill has ended.
func TestStatusRefill(t *testing.T) {
	fx := newStatusFixture(t)
	const want = `{"bytes_remaining":566231040,"keys_remaining":12345,"bytes_per_second":188743680,` +
		`"eta_seconds":3,"received_bytes":1073741824,"received_keys":40000}`
	checkRefills(t, fx.url, map[string]string{"n3": want})
	if n3 := nodeByID(t, getStatus(t, fx.url), "n3"); n3.State != "recovering" {
		t.Errorf("n3 refilling: state %s, want recovering", n3.State)
	}

	// The refill ends and the node recovers: its gauges drop to 0.
	fx.nodes["n3"].set(func(f *fakeNode) {
		f.recovering = false
		f.refill = &fakeRefill{receivedBytes: 1<<30 + 540<<20, receivedKeys: 52345}
	})
	fx.srv.collector.scrape(context.Background(), false)
	checkRefills(t, fx.url, map[string]string{})
	if n3 := nodeByID(t, getStatus(t, fx.url), "n3"); n3.State != "up" {
		t.Errorf("n3 refilled: state %s, want up", n3.State)
	}
}

// TestRefillProgress: a node shows a refill while tako_refill_active is 1,
// or while it is recovering with bytes still to come; never otherwise, and
// the refill does not change its state.
func TestRefillProgress(t *testing.T) {
	streaming := &RefillProgress{BytesRemaining: 540 << 20, KeysRemaining: 12345, BytesPerSecond: 180 << 20,
		ETASeconds: 3, ReceivedBytes: 1 << 30, ReceivedKeys: 40000}
	for _, tt := range []struct {
		name       string
		recovering bool
		refill     *fakeRefill
		want       *RefillProgress
	}{
		{"no refill metrics", false, nil, nil},
		{"recovering without refill metrics", true, nil, nil},
		{"refill metrics all 0", false, &fakeRefill{}, nil},
		{"recovering, streaming", true, &n3Refill, streaming},
		{"streaming, not recovering", false, &n3Refill, streaming},
		{"recovering between streams, bytes to go", true, &fakeRefill{bytesLeft: 100, keysLeft: 2, receivedBytes: 50},
			&RefillProgress{BytesRemaining: 100, KeysRemaining: 2, ReceivedBytes: 50}},
		{"recovering, nothing left to stream", true, &fakeRefill{receivedBytes: 50, receivedKeys: 1}, nil},
		{"bytes to go, neither recovering nor streaming", false, &fakeRefill{bytesLeft: 100}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeNode{recovering: tt.recovering, refill: tt.refill}
			m, err := parseMetrics(strings.NewReader(f.text()))
			if err != nil {
				t.Fatal(err)
			}
			var ns NodeStatus
			fillReading(&ns, nodeSeen{reading: readNode(m)})
			got, _ := json.Marshal(ns.Refill)
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Errorf("refill %s, want %s", got, want)
			}
			if wantState := map[bool]string{false: "up", true: "recovering"}[tt.recovering]; ns.State != wantState {
				t.Errorf("state %s, want %s", ns.State, wantState)
			}
		})
	}
}

// checkRefills checks the "refill" object of every node in the JSON of
// /status: want has it by node id, compact; a node not in want has none.
func checkRefills(t *testing.T, url string, want map[string]string) {
	t.Helper()
	_, _, body := get(t, http.DefaultClient, url+"/status")
	var st struct {
		Nodes []map[string]json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /status: %v\n%s", err, body)
	}
	for _, n := range st.Nodes {
		var id string
		_ = json.Unmarshal(n["id"], &id)
		got := "none"
		if raw, ok := n["refill"]; ok {
			var b bytes.Buffer
			if err := json.Compact(&b, raw); err != nil {
				t.Fatal(err)
			}
			got = b.String()
		}
		if w, ok := want[id]; !ok && got != "none" || ok && got != w {
			t.Errorf("%s: refill %s, want %s", id, got, cmp.Or(w, "none"))
		}
	}
}

// checkStatusShape checks what the fixture's status says whatever n1 does.
func checkStatusShape(t *testing.T, fx *statusFixture, st Status) {
	t.Helper()
	if st.Coordinator != "c1" || st.Epoch != fx.epoch || !st.GeneratedAt.Equal(fx.clock.Now()) {
		t.Errorf("coordinator %q, epoch %d, generated_at %v; want c1, %d, %v", st.Coordinator, st.Epoch, st.GeneratedAt, fx.epoch, fx.clock.Now())
	}
	if st.Active != "blue" || st.Target != "green" {
		t.Errorf("active %q, target %q; want blue, green", st.Active, st.Target)
	}
	cfg, _ := fx.srv.Current()
	checkDeployments(t, cfg, st.Deployments)
	var ids []string
	for _, n := range st.Nodes {
		ids = append(ids, n.ID)
	}
	if got := strings.Join(ids, " "); got != "n1 n2 n3 n4 n5" {
		t.Errorf("nodes %s, want n1 n2 n3 n4 n5", got)
	}
	n2 := nodeByID(t, st, "n2")
	checkNode(t, n2, NodeStatus{
		ID: "n2", Deployments: []string{"blue", "green"}, Bucket: "b1", HTTP: n2.HTTP, Binary: "127.0.0.1:17002",
		State: "down", Error: n2.Error, SyncedEpoch: -1,
	})
	if !strings.Contains(n2.Error, "500") {
		t.Errorf("n2: error %q, want it to say 500", n2.Error)
	}
	if n3 := nodeByID(t, st, "n3"); n3.State != "recovering" || n3.Keys != 7 || n3.SyncedEpoch != fx.epoch-1 {
		t.Errorf("n3: state %s, keys %d, synced %d; want recovering, 7, %d", n3.State, n3.Keys, n3.SyncedEpoch, fx.epoch-1)
	}
	checkNode(t, nodeByID(t, st, "n4"), NodeStatus{
		ID: "n4", Deployments: []string{"blue", "green"}, Bucket: "b2", Binary: "127.0.0.1:17004",
		State: "unknown", Error: "the node has no HTTP port to ask", SyncedEpoch: -1,
	})
	if n5 := nodeByID(t, st, "n5"); n5.State != "up" || strings.Join(n5.Deployments, ",") != "green" || n5.Bucket != "b3" {
		t.Errorf("n5: state %s, deployments %v, bucket %s; want up, [green], b3", n5.State, n5.Deployments, n5.Bucket)
	}
	if n1 := nodeByID(t, st, "n1"); n1.State == "up" {
		if st.NodesDown != 1 {
			t.Errorf("nodes_down %d, want 1 (n2)", st.NodesDown)
		}
		// n1 and n5 synced under the served epoch; n3 behind, n2 and n4 unknown.
		want := MigrationProgress{NodesSynced: 2, NodesTotal: 5}
		if st.Migration == nil || *st.Migration != want {
			t.Errorf("migration %+v, want %+v", st.Migration, want)
		}
	}
}

// checkNode compares a node's status with want, field by field.
func checkNode(t *testing.T, got, want NodeStatus) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("node %s:\n got %s\nwant %s", want.ID, g, w)
	}
}

// checkDeployments checks the roles, the buckets and their arcs: each
// deployment's arcs tile the hash space, the shares sum to 1, and every arc
// belongs to the bucket the ring gives its hashes first.
func checkDeployments(t *testing.T, cfg *config.Config, ds []DeploymentStatus) {
	t.Helper()
	if len(ds) != 2 || ds[0].Name != "blue" || ds[0].Role != "active" || ds[1].Name != "green" || ds[1].Role != "target" {
		t.Fatalf("deployments %+v, want blue (active) then green (target)", ds)
	}
	wantBuckets := []string{"b1:n1,n2 b2:n3,n4", "b1:n1,n2 b2:n3,n4 b3:n5"}
	for i, d := range ds {
		if d.BucketsPerKey != 2 {
			t.Errorf("%s: buckets_per_key %d, want 2", d.Name, d.BucketsPerKey)
		}
		var got []string
		for _, b := range d.Buckets {
			got = append(got, b.Name+":"+strings.Join(b.Nodes, ","))
		}
		if strings.Join(got, " ") != wantBuckets[i] {
			t.Errorf("%s: buckets %v, want %s", d.Name, got, wantBuckets[i])
		}
		checkArcs(t, cfg.Deployments[d.Name], d)
	}
}

func checkArcs(t *testing.T, dep *config.Deployment, d DeploymentStatus) {
	t.Helper()
	type arc struct {
		start, end uint64
		bucket     string
	}
	var arcs []arc
	share := 0.0
	for _, b := range d.Buckets {
		if b.Share <= 0.05 {
			t.Errorf("%s/%s: share %v, want a fair part of the ring", d.Name, b.Name, b.Share)
		}
		share += b.Share
		width := uint64(0)
		for _, a := range b.Arcs {
			arcs = append(arcs, arc{a[0], a[1], b.Name})
			width += a[1] - a[0]
		}
		if math.Abs(float64(width)/hashSpace-b.Share) > 1e-12 {
			t.Errorf("%s/%s: share %v, but its arcs cover %v", d.Name, b.Name, b.Share, float64(width)/hashSpace)
		}
	}
	if math.Abs(share-1) > 1e-9 {
		t.Errorf("%s: shares sum to %v, want 1", d.Name, share)
	}
	// Sorted by start, the arcs tile [0, 2^32) without gaps or overlaps.
	for i := 1; i < len(arcs); i++ {
		for j := i; j > 0 && arcs[j].start < arcs[j-1].start; j-- {
			arcs[j], arcs[j-1] = arcs[j-1], arcs[j]
		}
	}
	next := uint64(0)
	for _, a := range arcs {
		if a.start != next || a.end <= a.start {
			t.Fatalf("%s: arc [%d, %d) of %s, want one starting at %d", d.Name, a.start, a.end, a.bucket, next)
		}
		next = a.end
	}
	if next != hashSpace {
		t.Errorf("%s: the arcs end at %d, want 2^32", d.Name, next)
	}
	// Each arc's first and last hash belong to its bucket first.
	for _, a := range arcs {
		for _, h := range []uint64{a.start, a.end - 1, (a.start + a.end) / 2} {
			if got := dep.Buckets[dep.Ring.LookupHash(nil, uint32(h), 1)[0]].Name; got != a.bucket {
				t.Fatalf("%s: hash %d in an arc of %s, but the ring gives it %s first", d.Name, h, a.bucket, got)
			}
		}
	}
}

func TestStatusPage(t *testing.T) {
	fx := newStatusFixture(t)
	resp, err := http.Get(fx.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %s, Content-Type %q; want 200, text/html", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{`fetch("status"`, `"data-node"`, `"data-state"`, `"data-refill"`, "http://www.w3.org/2000/svg"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /: the page has no %s", want)
		}
	}
	for _, path := range []string{"/nothing", "/index.html"} {
		if code, _, _ := get(t, http.DefaultClient, fx.url+path); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
	}
	getStatus(t, fx.url)
	// A request is counted once its handler returned, which can be a
	// moment after its client read the answer.
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, metrics = get(t, http.DefaultClient, fx.url+"/metrics")
		missing := ""
		for _, want := range []string{`path="/"`, `path="/status"`} {
			if !strings.Contains(metrics, "tako_coordinator_requests_total{code=\"200\","+want+"}") {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics does not count %s:\n%s", missing, metrics)
		}
	}
}

func TestStatusMigrationStillScrapes(t *testing.T) {
	fx := newStatusFixture(t)
	_, _, body := get(t, http.DefaultClient, fx.url+"/migration")
	var st MigrationStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /migration: %v\n%s", err, body)
	}
	if st.Nodes["n1"].SyncedEpoch != fx.epoch || st.Nodes["n5"].SyncedEpoch != fx.epoch+5 || st.Nodes["n2"].SyncedEpoch != -1 || st.Synced != 2 {
		t.Errorf("GET /migration: %s", body)
	}
}

func TestStatusSlowNodeIsDown(t *testing.T) {
	fx := newStatusFixture(t)
	fx.nodes["n5"].set(func(f *fakeNode) { f.delay = 3 * time.Second })
	begin := time.Now()
	n5 := nodeByID(t, getStatus(t, fx.url), "n5")
	if took := time.Since(begin); took > 2500*time.Millisecond {
		t.Errorf("the scrape took %v: a node gets 1 s", took)
	}
	if n5.State != "down" || !strings.Contains(n5.Error, "deadline exceeded") {
		t.Errorf("n5 answering in 3 s: state %s, error %q; want down, a deadline", n5.State, n5.Error)
	}
}

func TestStatusRunScrapes(t *testing.T) {
	n1 := &fakeNode{start: time.Now(), keys: 1}
	ln, port := listen(t)
	text := fmt.Sprintf("coordinators:\n  c1: [127.0.0.1, %d]\nactive_deployment: d\ndeployments:\n  d:\n    buckets:\n      b1:\n        n1: [127.0.0.1, %d, %d]\n",
		port, httpPort(t, n1), freePort(t))
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "c1.yaml"), text)
	s, err := NewServer(ServerOptions{ID: "c1", ConfigPath: filepath.Join(dir, "c1.yaml"), StateDir: filepath.Join(dir, "state"),
		Logger: testLogger(t), StatusInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, s, ln)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for keys := int64(2); keys <= 4; keys++ {
		n1.set(func(f *fakeNode) { f.keys = keys })
		waitUntil(t, 5*time.Second, fmt.Sprintf("showing %d keys", keys), func() bool {
			return nodeByID(t, getStatus(t, url), "n1").Keys == keys
		})
	}
	stop()
	// Run waited for the scraping goroutine: nothing scrapes any more.
	n1.set(func(f *fakeNode) { f.scrapes = 0 })
	before := s.collector.snapshot(context.Background())["n1"].at
	time.Sleep(100 * time.Millisecond)
	if after := s.collector.snapshot(context.Background())["n1"].at; !after.Equal(before) {
		t.Errorf("a scrape at %v after Run returned", after)
	}
}
