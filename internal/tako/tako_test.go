package tako

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/coordinator"
	"github.com/takodb/tako/internal/testcluster"
)

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the command in-process with args, stdin and the environment
// env (TAKO_SERVER only).
func run(t *testing.T, server, stdin string, args ...string) result {
	t.Helper()
	env := func(name string) string {
		if name == "TAKO_SERVER" {
			return server
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	code := Main(args, env, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// want checks the exit code, and that a failure said one line on stderr.
func (r result) want(t *testing.T, code int, what string) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d; stdout %q; stderr %q", what, r.code, code, r.stdout, r.stderr)
	}
	if code != 0 && (strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "tako: ")) {
		t.Errorf("%s: stderr is not one line \"tako: ...\": %q", what, r.stderr)
	}
	return r
}

func startCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	c, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2, Extra: []string{"request_timeout: 500ms"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPutGetStatDelete(t *testing.T) {
	c := startCluster(t)
	server := c.HTTPURL("n1")

	run(t, server, "hello, world", "put", "greeting").want(t, 0, "put from stdin")
	if r := run(t, server, "", "get", "greeting").want(t, 0, "get"); r.stdout != "hello, world" || r.stderr != "" {
		t.Errorf("get: stdout %q stderr %q, want the value as stored", r.stdout, r.stderr)
	}
	r := run(t, server, "", "get", "-t", "greeting").want(t, 0, "get -t")
	line, _, _ := strings.Cut(r.stderr, "\n")
	ts, err := strconv.ParseInt(strings.TrimPrefix(line, "timestamp: "), 10, 64)
	if err != nil || !strings.HasPrefix(line, "timestamp: ") || r.stdout != "hello, world" {
		t.Fatalf("get -t: stdout %q stderr %q, want \"timestamp: N\" on stderr", r.stdout, r.stderr)
	}
	if r := run(t, server, "", "stat", "greeting").want(t, 0, "stat"); r.stdout != strconv.FormatInt(ts, 10)+"\n" {
		t.Errorf("stat: %q, want %d", r.stdout, ts)
	}
	// Flags after the arguments work too, and -s overrides TAKO_SERVER.
	if r := run(t, "localhost:1", "", "get", "greeting", "-t", "-s", server).want(t, 0, "get KEY -t -s"); !strings.HasPrefix(r.stderr, "timestamp: ") {
		t.Errorf("get KEY -t: stderr %q", r.stderr)
	}

	// A value from a file, binary and without a newline.
	file := filepath.Join(t.TempDir(), "value")
	value := "\x00\xffbinary\r\n\x01"
	if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, server, "", "put", "-t", "bin", file).want(t, 0, "put -t FILE")
	if !strings.HasPrefix(r.stdout, "timestamp: ") {
		t.Errorf("put -t: stdout %q, want the stored timestamp", r.stdout)
	}
	if r := run(t, server, "", "get", "bin").want(t, 0, "get bin"); r.stdout != value {
		t.Errorf("get bin: %q, want %q", r.stdout, value)
	}
	run(t, server, "from stdin", "put", "bin", "-").want(t, 0, "put KEY -")

	// A write older than the stored version loses: 409, exit 1.
	r = run(t, server, "older", "put", "-at", "1000", "greeting").want(t, 1, "put -at an old timestamp")
	if !strings.Contains(r.stderr, "a newer version exists") || !strings.Contains(r.stderr, strconv.FormatInt(ts, 10)) {
		t.Errorf("put -at old: stderr %q", r.stderr)
	}
	if r := run(t, server, "", "get", "greeting").want(t, 0, "get after the lost write"); r.stdout != "hello, world" {
		t.Errorf("the lost write changed the value to %q", r.stdout)
	}

	run(t, server, "", "delete", "greeting").want(t, 0, "delete")
	r = run(t, server, "", "get", "greeting").want(t, 1, "get after delete")
	if r.stdout != "" || !strings.Contains(r.stderr, `"greeting": not found: deleted at`) {
		t.Errorf("get after delete: stdout %q stderr %q", r.stdout, r.stderr)
	}
	run(t, server, "", "stat", "greeting").want(t, 1, "stat after delete")
	if r := run(t, server, "", "get", "never-written").want(t, 1, "get of a key never written"); !strings.HasSuffix(r.stderr, "not found\n") {
		t.Errorf("get of a missing key: %q", r.stderr)
	}
}

// TestKeysAreEscaped: keys with "/", "+", "%", spaces and dot segments
// reach the node as written.
func TestKeysAreEscaped(t *testing.T) {
	c := startCluster(t)
	server := c.HTTPURL("n2")
	for _, key := range []string{"a/b", "a//b", "./x/../y", "1+1=2", "100%", "sp ace?q=1#frag", "ünï", "-dash"} {
		run(t, server, "v:"+key, "put", "--", key).want(t, 0, "put "+key)
		v, err := c.Node("n3").Get(context.Background(), []byte(key))
		if err != nil || string(v.Value) != "v:"+key {
			t.Errorf("key %q stored as %+v %v", key, v, err)
		}
		if r := run(t, server, "", "get", "--", key).want(t, 0, "get "+key); r.stdout != "v:"+key {
			t.Errorf("get %q: %q", key, r.stdout)
		}
	}
}

func TestWhere(t *testing.T) {
	c := startCluster(t)
	server := c.HTTPURL("n1")
	run(t, server, "hello", "put", "-at", "1700000000000000", "greeting").want(t, 0, "put")
	r := run(t, server, "", "where", "greeting").want(t, 0, "where")
	replicas := c.Config.Replicas(nil, []byte("greeting"))
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2+len(replicas) || !strings.HasPrefix(lines[0], `key "greeting", hash `) {
		t.Fatalf("where: %d lines, want a header, the column names and %d replicas:\n%s", len(lines), len(replicas), r.stdout)
	}
	for _, col := range []string{"DEPLOYMENT", "BUCKET", "NODE", "BINARY", "TIMESTAMP", "TIME", "STATE"} {
		if !strings.Contains(lines[1], col) {
			t.Errorf("the column names lack %s: %q", col, lines[1])
		}
	}
	for i, nd := range replicas {
		f := strings.Fields(lines[2+i])
		// test (active) BUCKET NODE BINARY TIMESTAMP DATE TIME UTC STATE
		if len(f) != 10 || f[0] != "test" || f[1] != "(active)" || f[2] != nd.Bucket || f[3] != nd.ID || f[4] != nd.BinaryAddr() ||
			f[5] != "1700000000000000" || f[6] != "2023-11-14" || f[7] != "22:13:20.000000" || f[9] != "value" {
			t.Errorf("row %d: %q, want %s in ring order with the write", i, lines[2+i], nd.ID)
		}
	}
	// A replica down shows its error, the other its value.
	var down string
	for _, nd := range replicas {
		if nd.ID != "n1" {
			down = nd.ID
		}
	}
	if err := c.StopNode(down); err != nil {
		t.Fatal(err)
	}
	r = run(t, server, "", "where", "greeting").want(t, 0, "where with a replica down")
	for _, line := range strings.Split(r.stdout, "\n")[2:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == down && !strings.Contains(line, "error: ") {
			t.Errorf("the stopped replica's row: %q, want its error", line)
		}
	}
	// The coordinator does not serve /where/.
	coord := httptest.NewServer(http.NotFoundHandler())
	defer coord.Close()
	if r := run(t, coord.URL, "", "where", "greeting").want(t, 2, "where on a coordinator"); !strings.Contains(r.stderr, "does not serve /where/KEY") {
		t.Errorf("where on a coordinator: %q", r.stderr)
	}
}

// TestPurge: tako purge removes a key from every replica and says from
// which; an absent key is on none; with a replica down it purges the
// others and exits 1 naming it.
func TestPurge(t *testing.T) {
	c := startCluster(t)
	server := c.HTTPURL("n1")
	run(t, server, "hello", "put", "greeting").want(t, 0, "put")
	replicas := c.Config.Replicas(nil, []byte("greeting"))
	r := run(t, server, "", "purge", "greeting").want(t, 0, "purge")
	for _, nd := range replicas {
		if !strings.Contains(r.stdout, nd.ID) {
			t.Errorf("purge: %q does not name %s", r.stdout, nd.ID)
		}
	}
	if r := run(t, server, "", "get", "greeting").want(t, 1, "get after purge"); strings.Contains(r.stderr, "deleted") {
		t.Errorf("a purge left a tombstone: %q", r.stderr)
	}
	if r := run(t, server, "", "purge", "greeting").want(t, 0, "purge again"); !strings.Contains(r.stdout, "on no replica") {
		t.Errorf("purge of an absent key: %q", r.stdout)
	}
	run(t, server, "again", "put", "greeting").want(t, 0, "put after purge")
	var down string
	for _, nd := range replicas {
		if nd.ID != "n1" {
			down = nd.ID
		}
	}
	if err := c.StopNode(down); err != nil {
		t.Fatal(err)
	}
	if r := run(t, server, "", "purge", "greeting").want(t, 1, "purge with a replica down"); !strings.Contains(r.stderr, down) || !strings.Contains(r.stderr, "again") {
		t.Errorf("purge with %s down: %q", down, r.stderr)
	}
}

func TestWhereMarksStaleReplicas(t *testing.T) {
	var out bytes.Buffer
	p := placementFixture()
	if err := printPlacement(&out, p); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"value, stale", "deleted", "not found", "error: connection refused", "local6 (target)"} {
		if !strings.Contains(got, want) {
			t.Errorf("the table lacks %q:\n%s", want, got)
		}
	}
}

func TestPlan(t *testing.T) {
	r := run(t, "", "", "plan", "../../examples/migration/1-add-bucket.yaml", "../../examples/migration/2-promote-added.yaml").want(t, 0, "plan 1 to 2")
	for _, want := range []string{"keys whose replicas change: ", "nodes joining: none", "safe: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan 1 to 2 lacks %q:\n%s", want, r.stdout)
		}
	}
	r = run(t, "", "", "plan", "../../examples/local_cluster.yaml", "../../examples/migration/1-add-bucket.yaml").want(t, 0, "plan local to 1")
	if !strings.Contains(r.stdout, "nodes joining: n11, n12") {
		t.Errorf("plan local to 1:\n%s", r.stdout)
	}
	// Every key of the ten-node cluster on one standalone node: most keys
	// lose every replica.
	r = run(t, "", "", "plan", "../../examples/local_cluster.yaml", "../../examples/standalone.yaml").want(t, 1, "plan that loses data")
	if !strings.Contains(r.stdout, "DANGER") || !strings.Contains(r.stderr, "would lose every one of its current replicas") {
		t.Errorf("a plan that loses data: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if r := run(t, "", "", "plan", "../../examples/nope.yaml", "../../examples/standalone.yaml").want(t, 2, "plan of a missing file"); !strings.Contains(r.stderr, "nope.yaml") {
		t.Errorf("plan of a missing file: %q", r.stderr)
	}
	run(t, "", "", "plan", "../../README.md", "../../examples/standalone.yaml").want(t, 2, "plan of a bad file")
	run(t, "", "", "plan", "../../examples/standalone.yaml").want(t, 2, "plan with one file")
}

func TestStatus(t *testing.T) {
	st := statusFixture()
	coord := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(st)
	}))
	defer coord.Close()
	r := run(t, coord.URL, "", "status").want(t, 1, "status with a node down")
	for _, want := range []string{
		"coordinator c1, epoch 7, active deployment local, target local6",
		"deployment local (active), 2 buckets per key: b1 60.0% (n1 n2), b2 40.0% (n3)",
		"deployment local6 (target)",
		"NODE", "PEERS DOWN",
		"3h12m", "12.3 MiB", "4.5", "37%", "n3",
		"2d3h", "1.5 GiB",
		"migration: 3 of 5 nodes synced, not converged",
		"n3 is down: connection refused",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "n3" && f[1] == "b2" && f[2] != "down" {
			t.Errorf("n3's row: %q", line)
		}
	}
	if !strings.Contains(r.stderr, "1 of 3 nodes down: n3") {
		t.Errorf("status stderr %q, want the node down", r.stderr)
	}
	if strings.Contains(r.stdout, "refilling") {
		t.Errorf("status shows a refill where no node refills:\n%s", r.stdout)
	}
	// Every node up or recovering, n3 refilling: exit 0, and n3's refill
	// under the table.
	st.Nodes[2].State, st.Nodes[2].Error = "recovering", ""
	st.Nodes[2].Refill = &coordinator.RefillProgress{BytesRemaining: 540 << 20, KeysRemaining: 12345,
		BytesPerSecond: 180 << 20, ETASeconds: 3, ReceivedBytes: 1 << 30, ReceivedKeys: 40000}
	r = run(t, coord.URL, "", "status").want(t, 0, "status with every node up")
	if got, want := refillLines(r.stdout), []string{"n3 is refilling: 540.0 MiB / 12345 keys to go at 180.0 MiB/s, ~3s left"}; !slices.Equal(got, want) {
		t.Errorf("status with n3 refilling: refill lines %q, want %q\n%s", got, want, r.stdout)
	}

	// A node is not a coordinator.
	c := startCluster(t)
	r = run(t, c.HTTPURL("n1"), "", "status").want(t, 2, "status on a node")
	if want := c.HTTPURL("n1") + " is not a coordinator: use -s COORDINATOR_HOST:PORT"; !strings.Contains(r.stderr, want) {
		t.Errorf("status on a node: %q, want %q", r.stderr, want)
	}
}

// refillLines are the lines of out that tell a refill.
func refillLines(out string) []string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "refilling") {
			lines = append(lines, line)
		}
	}
	return lines
}

// TestRefillLine: what is left, the rate and the time left rounded up to
// a second; no time left when the node cannot tell it.
func TestRefillLine(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    coordinator.RefillProgress
		want string
	}{
		{"streaming", coordinator.RefillProgress{BytesRemaining: 540 << 20, KeysRemaining: 12345, BytesPerSecond: 180 << 20, ETASeconds: 3},
			"refilling: 540.0 MiB / 12345 keys to go at 180.0 MiB/s, ~3s left"},
		{"time left unknown", coordinator.RefillProgress{BytesRemaining: 5 << 30, KeysRemaining: 7},
			"refilling: 5.0 GiB / 7 keys to go at 0 B/s"},
		{"less than a second left", coordinator.RefillProgress{BytesRemaining: 900, KeysRemaining: 3, BytesPerSecond: 2048, ETASeconds: 0.4},
			"refilling: 900 B / 3 keys to go at 2.0 KiB/s, ~1s left"},
		{"hours left", coordinator.RefillProgress{BytesRemaining: 3 << 40, KeysRemaining: 1e9, BytesPerSecond: 100 << 20, ETASeconds: 32000},
			"refilling: 3.0 TiB / 1000000000 keys to go at 100.0 MiB/s, ~8h53m left"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := refillLine(tt.r); got != tt.want {
				t.Errorf("refillLine(%+v) = %q, want %q", tt.r, got, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{{"get", "k"}, {"put", "k"}, {"delete", "k"}, {"stat", "k"}, {"where", "k"}, {"status"}} {
		r := run(t, refused, "v", args...).want(t, 2, "connection refused: "+args[0])
		if !strings.Contains(r.stderr, "cannot reach "+refused) || !strings.Contains(r.stderr, "refused") {
			t.Errorf("%s with the server down: %q", args[0], r.stderr)
		}
	}
	// A 5xx is an error, with the server's reason.
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "too few replicas available", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	if r := run(t, failing.URL, "", "get", "k").want(t, 2, "503"); !strings.Contains(r.stderr, "503 Service Unavailable: too few replicas available") {
		t.Errorf("503: %q", r.stderr)
	}
	// A server that never answers: -timeout.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer slow.Close()
	start := time.Now()
	if r := run(t, slow.URL, "", "-timeout", "200ms", "get", "k").want(t, 2, "timeout"); !strings.Contains(r.stderr, "no answer in time") {
		t.Errorf("timeout: %q", r.stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("-timeout 200ms took %v", d)
	}

	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"get"},
		{"get", "a", "b"},
		{"get", ""},
		{"get", "-x", "k"},
		{"put", "k", "file", "extra"},
		{"put", "-at", "soon", "k"},
		{"status", "extra"},
		{"plan", "a.yaml"},
		{"-s", "http://", "get", "k"},
		{"-bogus"},
		{"help", "frobnicate"},
	} {
		run(t, "localhost:1", "", args...).want(t, 2, "bad usage "+strings.Join(args, " "))
	}
	run(t, "", "", "put", "k", filepath.Join(t.TempDir(), "missing")).want(t, 2, "put of a missing file")
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		r := run(t, "", "", args...).want(t, 0, strings.Join(args, " "))
		for _, c := range commands {
			if !strings.Contains(r.stdout, "\n  "+c.name+" ") {
				t.Errorf("tako %s does not list %s:\n%s", args[0], c.name, r.stdout)
			}
		}
		if !strings.Contains(r.stdout, "Example session") {
			t.Errorf("tako %s has no example session", args[0])
		}
	}
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {"help", c.name}} {
			r := run(t, "", "", args...).want(t, 0, strings.Join(args, " "))
			if !strings.HasPrefix(r.stdout, "Usage: tako "+c.name) || !strings.Contains(r.stdout, "Example") || !strings.Contains(r.stdout, "-s HOST:PORT") {
				t.Errorf("tako %s:\n%s", strings.Join(args, " "), r.stdout)
			}
		}
	}
}

func TestEscapeKey(t *testing.T) {
	for key, want := range map[string]string{
		"greeting":           "greeting",
		"a/b//c":             "a/b//c",
		"./x/../y":           "./x/../y",
		"A-Z_a.z~09":         "A-Z_a.z~09",
		"1+1=2":              "1%2B1%3D2",
		"100% sure?":         "100%25%20sure%3F",
		"#;,:@&$!'()*[]\"\\": "%23%3B%2C%3A%40%26%24%21%27%28%29%2A%5B%5D%22%5C",
		"ü\x00\xff":          "%C3%BC%00%FF",
	} {
		if got := escapeKey(key); got != want {
			t.Errorf("escapeKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "-", 42 * time.Second: "42s", 12*time.Minute + 5*time.Second: "12m5s",
		3*time.Hour + 12*time.Minute + 40*time.Second: "3h12m", 51 * time.Hour: "2d3h",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 12_897_485: "12.3 MiB", 3 << 40: "3.0 TiB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
