package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that what it accepts satisfies
// the invariants of a Config, and that what it rejects it rejects with a
// one-line error that it gives every time.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, more...)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(migration))
	f.Add([]byte(`{"active_deployment": "d", "deployments": {"d": {"buckets": {"b1": {"n1": ["h", 1, 2]}}}}}`))
	f.Add([]byte("active_deployment: d\ndeployments:\n  d: &x {hash: {buckets_per_key: 3}, buckets: {b1: {n1: [h, 1]}}}\n  e: {<<: *x, write_quorum: 1}\n"))
	f.Add([]byte("active_deployment: d\ndeployments: {d: {write_quorum: 2, buckets: {b1: {n1: [h, 1], n1: [h, 1]}}}}\n"))
	f.Add([]byte("tls: {ca: a.pem, cert: b.pem, key: c.pem, node: {cert: n.pem, key: k.pem}, client: {cert: x, key: y}}\nauth: {tokens: {a: {sha256: " + strings.Repeat("ab", 32) + ", role: read}}}\nactive_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a Config and the error %v", err)
			}
			var e *Error
			if errors.As(err, &e) {
				if len(e.Problems) == 0 {
					t.Fatal("Parse returned an *Error without problems")
				}
				if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
					t.Fatalf("error is not one line: %q", msg)
				}
			} else if !strings.HasPrefix(err.Error(), "config: parsing YAML: ") {
				t.Fatalf("error %q is neither an *Error nor a YAML error", err)
			}
			if _, again := Parse(data); again == nil || again.Error() != err.Error() {
				t.Fatalf("Parse gave %v, then %v", err, again)
			}
			return
		}
		checkInvariants(t, c)
	})
}
