package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/auth"
)

// TestEveryRoleGetsExactlyItsRights runs a coordinator, a node and a proxy
// with an auth section of three tokens (read, write, admin) and checks
// every endpoint of each with every method and credential: no token and an
// unknown token get 401, a token of a lesser role 403, /health is open to
// all; anything else is served. The node and the proxy fetch their
// configuration with the admin token ($TAKO_TOKEN).
func TestEveryRoleGetsExactlyItsRights(t *testing.T) {
	dir := t.TempDir()
	tokens := map[string]string{}
	var section strings.Builder
	section.WriteString("auth:\n  tokens:\n")
	for _, role := range []string{"read", "write", "admin"} {
		token, hash, err := auth.Generate()
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = token
		fmt.Fprintf(&section, "    %s-token: {sha256: %s, role: %s}\n", role, hash, role)
	}
	ports := freePorts(t, 4)
	coord := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := writeFile(t, dir, "auth.yaml", fmt.Sprintf(`coordinators:
  c1: [127.0.0.1, %d]
%sactive_deployment: d
deployments:
  d:
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
`, ports[0], section.String(), ports[1], ports[2]))
	t.Setenv("TAKO_TOKEN", tokens["admin"])
	c1 := start(t, dir, "tako-coordinator", "-id", "c1", "-cfg", cfg, "-v", dir)
	waitHealthy(t, c1, "http://"+coord)
	n1 := start(t, dir, "tako-node", "-id", "n1", "-c", coord, "-v", dir)
	nodeURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	waitHealthy(t, n1, nodeURL)
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
}
