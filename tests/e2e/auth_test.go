package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/wire"
)

// TestEveryRoleGetsExactlyItsRights runs a coordinator, two nodes and a
// proxy with an auth section of three tokens (read, write, admin) and checks
// every endpoint of each with every method and credential: no token and an
// unknown token get 401, a token of a lesser role 403, /health is open to
// all; anything else is served. The nodes and the proxy fetch their
// configuration with the admin token ($TAKO_TOKEN) and present it on the
// binary ports; the binary port then checks the same tokens (see
// checkBinaryPortTokens).
func TestEveryRoleGetsExactlyItsRights(t *testing.T) {
	dir := t.TempDir()
	section, tokens, err := auth.NewSection(auth.Read, auth.Write, auth.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 6)
	coord := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := writeFile(t, dir, "auth.yaml", fmt.Sprintf(`coordinators:
  c1: [127.0.0.1, %d]
%sactive_deployment: d
deployments:
  d:
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
        n2: [127.0.0.1, %d, %d]
`, ports[0], section, ports[1], ports[2], ports[4], ports[5]))
	t.Setenv("TAKO_TOKEN", tokens["admin"])
	c1 := start(t, dir, "tako-coordinator", "-id", "c1", "-cfg", cfg, "-v", dir)
	waitHealthy(t, c1, "http://"+coord)
	n1 := start(t, dir, "tako-node", "-id", "n1", "-c", coord, "-v", dir)
	n2 := start(t, dir, "tako-node", "-id", "n2", "-c", coord, "-v", dir)
	nodeURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	waitHealthy(t, n1, nodeURL)
	waitHealthy(t, n2, fmt.Sprintf("http://127.0.0.1:%d", ports[4]))
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	p1 := start(t, dir, "tako-proxy", "-p", fmt.Sprint(ports[3]), "-b", "127.0.0.1", "-c", coord, "-v", dir)
	waitHealthy(t, p1, proxyURL)

	type endpoint struct {
		method, path string
		need         string // "", "read", "write" or "admin"
	}
	data := []endpoint{
		{"GET", "/health", ""},
		{"GET", "/metrics", "read"},
		{"GET", "/values/k", "read"},
		{"HEAD", "/values/k", "read"},
		{"GET", "/stat/k", "read"},
		{"GET", "/where/k", "read"},
		{"POST", "/values/k", "write"},
		{"PUT", "/values/k", "write"},
		{"DELETE", "/values/k", "write"},
		{"POST", "/purge/k", "admin"},
		{"POST", "/snapshot", "admin"}, // without ?dir=: a 400 once allowed
	}
	servers := map[string][]endpoint{
		nodeURL:  data,
		proxyURL: data,
		"http://" + coord: {
			{"GET", "/health", ""},
			{"GET", "/", ""}, // the page holds no data; it asks /status with a token
			{"GET", "/metrics", "read"},
			{"GET", "/configuration", "admin"},
			{"GET", "/status", "admin"},
			{"GET", "/migration", "admin"},
		},
	}
	rank := map[string]int{"": 0, "read": 1, "write": 2, "admin": 3}
	credentials := []string{"none", "unknown", "read", "write", "admin"}
	checked := 0
	for base, endpoints := range servers {
		for _, e := range endpoints {
			for _, cred := range credentials {
				header := map[string]string{}
				switch cred {
				case "none":
				case "unknown":
					header["Authorization"] = "Bearer tako_not-a-token"
				default:
					header["Authorization"] = "Bearer " + tokens[cred]
				}
				var body []byte
				if e.method == "POST" || e.method == "PUT" {
					body = []byte("v")
				}
				code, _, _, err := httpDo(context.Background(), e.method, base+e.path, body, header)
				if err != nil {
					t.Fatalf("%s %s%s: %v", e.method, base, e.path, err)
				}
				var want string
				switch {
				case e.need == "":
					want = "served"
				case cred == "none" || cred == "unknown":
					want = "401"
				case rank[cred] < rank[e.need]:
					want = "403"
				default:
					want = "served"
				}
				got := "served"
				if code == http.StatusUnauthorized || code == http.StatusForbidden {
					got = fmt.Sprint(code)
				}
				if got != want {
					t.Errorf("%s %s%s with %s token: %d, want %s", e.method, base, e.path, cred, code, want)
				}
				checked++
			}
		}
	}
	t.Logf("checked %d (endpoint, method, credential) combinations", checked)

	// The nodes present the admin token to each other: a write through
	// the proxy is acknowledged by both replicas (the default quorum of
	// two), so n1 and n2 accepted each other's ReplicaPut.
	code, _, _, err := httpDo(context.Background(), "POST", proxyURL+"/values/replicated", []byte("both"),
		map[string]string{"Authorization": "Bearer " + tokens["write"]})
	if err != nil || code/100 != 2 {
		t.Fatalf("POST through the proxy with the write token: %d %v, want 2xx (the nodes replicate with their admin token)", code, err)
	}
	checkBinaryPortTokens(t, cfg, tokens)

	// Backups need the admin role: with it a backup
	// from the coordinator's configuration works; a restore with a write
	// token is refused at once, saying so, and writes nothing.
	archiveFile := filepath.Join(dir, "auth.tako")
	if code, _, _, err := httpDo(t.Context(), "POST", proxyURL+"/values/backed-up", []byte("v"), map[string]string{"Authorization": "Bearer " + tokens["write"]}); err != nil || code/100 != 2 {
		t.Fatalf("POST with the write token: %d %v", code, err)
	}
	if code, out := takoCmd(t, dir, "-token", tokens["admin"], "-s", coord, "backup", archiveFile); code != 0 {
		t.Fatalf("tako backup with the admin token: exit %d: %s", code, out)
	}
	if code, _, _, err := httpDo(t.Context(), "DELETE", proxyURL+"/values/backed-up", nil, map[string]string{"Authorization": "Bearer " + tokens["write"]}); err != nil || code/100 != 2 {
		t.Fatalf("DELETE with the write token: %d %v", code, err)
	}
	if code, out := takoCmd(t, dir, "-token", tokens["write"], "restore", "-cfg", cfg, archiveFile); code != 2 || !strings.Contains(out, "admin role") {
		t.Fatalf("tako restore with a write token: exit %d: %s, want a refusal naming the admin role", code, out)
	}
	if code, _, _, err := httpDo(t.Context(), "GET", proxyURL+"/values/backed-up", nil, map[string]string{"Authorization": "Bearer " + tokens["write"]}); err != nil || code != http.StatusNotFound {
		t.Fatalf("GET of the deleted key after a refused restore: %d %v, want 404 (nothing restored)", code, err)
	}

	// A node whose token is not an admin token the configuration lists
	// refuses to start, saying why, rather than be refused by its peers.
	t.Setenv("TAKO_TOKEN", tokens["read"])
	bad := start(t, dir, "tako-node", "-id", "n2", "-cfg", cfg, "-v", t.TempDir())
	if err := bad.waitExit(t); err == nil || !strings.Contains(bad.output(), `has the role read; it needs admin`) {
		t.Errorf("a node with a read token: exit %v, output:\n%s\nwant a failure naming the role", err, bad.output())
	}

	// Revoking a token is removing its line and reloading: the
	// coordinator pushes the configuration, and the read token stops
	// working on HTTP and on the binary port, on a connection that was
	// open before too, while the others keep working.
	nd, _, _ := parsed(t, cfg).Node("n1")
	open, err := wire.Dial(t.Context(), nd.BinaryAddr(), wire.DialOptions{Token: tokens["read"]})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.Contains(line, "read-token:") {
			kept = append(kept, line)
		}
	}
	writeFile(t, dir, "auth.yaml", strings.Join(kept, "\n"))
	c1.cmd.Process.Signal(syscall.SIGHUP)
	bearer := func(role string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tokens[role]}
	}
	waitFor(t, "the read token to be revoked on n1 and the proxy", func() bool {
		a, _, _, _ := httpDo(t.Context(), "GET", nodeURL+"/values/replicated", nil, bearer("read"))
		b, _, _, _ := httpDo(t.Context(), "GET", proxyURL+"/values/replicated", nil, bearer("read"))
		return a == http.StatusUnauthorized && b == http.StatusUnauthorized
	})
	if code, _, _, err := httpDo(t.Context(), "GET", proxyURL+"/values/replicated", nil, bearer("write")); err != nil || code != 200 {
		t.Errorf("GET with the write token after the read token was revoked: %d %v", code, err)
	}
	if _, err := open.Call(t.Context(), &wire.Request{Op: wire.OpGet, Key: []byte("replicated")}); !errors.Is(err, wire.ErrUnauthorized) {
		t.Errorf("a Get on a binary connection opened with the revoked token: %v, want unauthorized", err)
	}
	cl := client.New(parsed(t, cfg), client.Options{Token: tokens["read"]})
	defer cl.Close()
	if _, err := cl.Get(t.Context(), []byte("replicated")); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("the Go client with the revoked token: %v, want unauthorized", err)
	}
}

// parsed loads the configuration file at path.
func parsed(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkBinaryPortTokens checks the binary port of the cluster cfg names
// with each credential, through the Go client (Get, Put) and a raw
// connection (ReplicaPut, an operation between nodes): no token and an
// unknown one are unauthorized, read may only read, write may also write,
// and only admin may call what nodes call on each other.
func checkBinaryPortTokens(t *testing.T, cfgFile string, tokens map[string]string) {
	t.Helper()
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TAKO_TOKEN", "") // the client falls back on it
	nd, _, _ := cfg.Node("n1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cred := range []string{"none", "unknown", "read", "write", "admin"} {
		token := tokens[cred]
		if cred == "unknown" {
			token = "tako_not-a-token"
		}
		cl := client.New(cfg, client.Options{Token: token})
		_, getErr := cl.Get(ctx, []byte("replicated"))
		_, putErr := cl.Put(ctx, []byte("binary-"+cred), []byte("v"))
		cl.Close()
		var replicaPutErr error
		conn, err := wire.Dial(ctx, nd.BinaryAddr(), wire.DialOptions{Token: token})
		if err == nil {
			_, replicaPutErr = conn.Call(ctx, &wire.Request{Op: wire.OpReplicaPut, Key: []byte("raw-" + cred),
				Record: wire.Record{Timestamp: time.Now().UnixMicro(), Value: []byte("v")}})
			conn.Close()
		} else {
			replicaPutErr = err
		}
		want := func(err, allowedWhen error) string {
			switch {
			case allowedWhen == nil && err != nil:
				return fmt.Sprintf("refused (%v), want served", err)
			case allowedWhen != nil && !errors.Is(err, allowedWhen):
				return fmt.Sprintf("%v, want %v", err, allowedWhen)
			}
			return ""
		}
		var getWant, putWant error
		var rawWant error
		switch cred {
		case "none", "unknown":
			getWant, putWant, rawWant = client.ErrUnauthorized, client.ErrUnauthorized, wire.ErrUnauthorized
		case "read":
			putWant, rawWant = client.ErrForbidden, wire.ErrForbidden
		case "write":
			rawWant = wire.ErrForbidden
		}
		for what, problem := range map[string]string{
			"Get":        want(getErr, getWant),
			"Put":        want(putErr, putWant),
			"ReplicaPut": want(replicaPutErr, rawWant),
		} {
			if problem != "" {
				t.Errorf("binary port, %s with the %s token: %s", what, cred, problem)
			}
		}
	}
}
