package tako

import (
	"bytes"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/testcluster"
)

// TestPutGetOverHTTPS: against a cluster with a tls section (HTTPS on the
// HTTP ports), tako -ca CA puts and gets a key, with -s HOST:PORT (https
// because of -ca) and with -s https://HOST:PORT and $TAKO_CA; without the
// CA it fails with one line.
func TestPutGetOverHTTPS(t *testing.T) {
	c, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}}, BucketsPerKey: 1, TLS: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	url := c.HTTPURL("n1")
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("HTTPURL = %s, want https", url)
	}
	hostPort := strings.TrimPrefix(url, "https://")

	run(t, hostPort, "hello", "-ca", c.TLS.CA, "put", "greeting").want(t, 0, "put with -ca and HOST:PORT")
	if r := run(t, hostPort, "", "-ca", c.TLS.CA, "get", "greeting").want(t, 0, "get with -ca"); r.stdout != "hello" {
		t.Errorf("get = %q, want hello", r.stdout)
	}

	env := func(name string) string {
		return map[string]string{"TAKO_SERVER": url, "TAKO_CA": c.TLS.CA}[name]
	}
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"get", "greeting"}, env, strings.NewReader(""), &stdout, &stderr); code != 0 || stdout.String() != "hello" {
		t.Errorf("get with $TAKO_CA and https://: exit %d, %q, %s", code, stdout.String(), stderr.String())
	}

	r := run(t, url, "", "get", "greeting").want(t, 2, "get over HTTPS without the CA")
	if !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without the CA: %q, want a certificate error", r.stderr)
	}
}
