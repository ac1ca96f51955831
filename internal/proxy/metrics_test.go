package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestTheProxyCountsTheRequestsItCoordinates: the proxy coordinates its
// requests itself, so it, not a node, counts them on its /metrics, under
// the names a node uses.
func TestTheProxyCountsTheRequestsItCoordinates(t *testing.T) {
	c, base := startProxy(t)
	for range 3 {
		resp, err := http.Post(base+"/values/k", "application/octet-stream", strings.NewReader("v"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	for range 2 {
		resp, err := http.Get(base + "/values/k")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`tako_coordinated_writes_total{outcome="ok"} 3`,
		`tako_coordinated_reads_total{outcome="ok"} 2`,
		`tako_quorum_duration_seconds_count{op="read"} 2`,
		"tako_fenced_requests_total 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the proxy's /metrics lacks %q", want)
		}
	}
	// No node coordinated them.
	for _, id := range []string{"n1", "n2", "n3"} {
		resp, err := http.Get(c.HTTPURL(id) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `tako_coordinated_writes_total{outcome="ok"}`) {
			t.Errorf("%s coordinated a write sent through the proxy", id)
		}
	}
}
