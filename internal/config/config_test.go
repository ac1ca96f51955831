package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/ring"
)

// mustParse parses a configuration that the test expects to be valid.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	checkInvariants(t, c)
	return c
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// path and dep are the Path and Deployment of the problem that
		// the case is about; msg is part of its message.
		path, dep, msg string
	}{
		{
			name: "no active deployment",
			src: `
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "active_deployment", msg: "missing",
		},
		{
			name: "empty active deployment",
			src: `
active_deployment: ""
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "active_deployment", msg: "empty",
		},
		{
			name: "active names an unknown deployment",
			src: `
active_deployment: nope
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "active_deployment", msg: `unknown deployment "nope"`,
		},
		{
			name: "target names an unknown deployment",
			src: `
active_deployment: d
target_deployment: nope
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "target_deployment", msg: `unknown deployment "nope"`,
		},
		{
			name: "target is the active deployment",
			src: `
active_deployment: d
target_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "target_deployment", msg: "is the active deployment",
		},
		{
			name: "no deployments key",
			src:  `active_deployment: d`,
			path: "deployments", msg: "missing",
		},
		{
			name: "no deployments",
			src: `
active_deployment: d
deployments: {}`,
			path: "deployments", msg: "no deployments",
		},
		{
			name: "deployment without buckets",
			src: `
active_deployment: d
deployments:
  d: {read_repair: yes}`,
			path: "deployments.d.buckets", dep: "d", msg: "missing",
		},
		{
			name: "deployment that is null",
			src: `
active_deployment: d
deployments:
  d:`,
			path: "deployments.d.buckets", dep: "d", msg: "missing",
		},
		{
			name: "no buckets",
			src: `
active_deployment: d
deployments:
  d: {buckets: {}}`,
			path: "deployments.d.buckets", dep: "d", msg: "no buckets",
		},
		{
			name: "empty bucket",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
      b2: {}`,
			path: "deployments.d.buckets.b2", dep: "d", msg: "empty bucket",
		},
		{
			name: "null bucket",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1:`,
			path: "deployments.d.buckets.b1", dep: "d", msg: "empty bucket",
		},
		{
			name: "node in two buckets",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
      b2: {n1: [h, 2]}`,
			path: "deployments.d.buckets.b2.n1", dep: "d", msg: `node "n1" listed twice (also in bucket "b1" at line 6)`,
		},
		{
			name: "node twice in one bucket",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1:
        n1: [h, 1]
        n1: [h, 2]`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: `"n1" listed twice (first at line 7)`,
		},
		{
			name: "two nodes on one binary port",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
      b2: {n2: [H, 1]}`,
			path: "deployments.d.buckets.b2.n2", dep: "d", msg: `binary port 1 on host "H" is already the binary port of node "n1"`,
		},
		{
			name: "two nodes on one HTTP port",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 80, 1]}
      b2: {n2: [h, 80, 2]}`,
			path: "deployments.d.buckets.b2.n2", dep: "d", msg: `HTTP port 80 on host "h" is already the HTTP port of node "n1"`,
		},
		{
			name: "HTTP port of one node is the binary port of another",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
      b2: {n2: [h, 1, 2]}`,
			path: "deployments.d.buckets.b2.n2", dep: "d", msg: `HTTP port 1 on host "h" is already the binary port of node "n1"`,
		},
		{
			name: "HTTP port equals binary port",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 7, 7]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "HTTP port and binary port are both 7",
		},
		{
			name: "node with different addresses in two deployments",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}
  e: {buckets: {b1: {n1: [h, 2]}}}`,
			path: "deployments.e.buckets.b1.n1", dep: "e", msg: `node "n1" is [h, 2] here but [h, 1] in deployment "d"`,
		},
		{
			name: "active and target nodes on one address",
			src: `
active_deployment: d
target_deployment: e
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}
  e: {buckets: {b1: {n2: [h, 1]}}}`,
			path: "deployments.e.buckets.b1.n2", dep: "e", msg: `already the binary port of node "n1" in deployment "d"`,
		},
		{
			name: "port out of range",
			src: `
active_deployment: cluster
deployments:
  cluster: {buckets: {b1: {n1: [h, 70000]}}}`,
			path: "deployments.cluster.buckets.b1.n1", dep: "cluster", msg: "port 70000 out of range 1-65535",
		},
		{
			name: "port zero",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 0, 1]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "HTTP port 0 out of range",
		},
		{
			name: "port not a number",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, "abc"]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: `binary port "abc" is not a number`,
		},
		{
			name: "negative port",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, -1]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "not a number",
		},
		{
			name: "string where a map is expected",
			src: `
active_deployment: d
deployments:
  d: {buckets: "b1"}`,
			path: "deployments.d.buckets", dep: "d", msg: `want a map, got "b1"`,
		},
		{
			name: "deployment is a list",
			src: `
active_deployment: d
deployments:
  d: [buckets]`,
			path: "deployments.d", dep: "d", msg: "want a map, got a list of 1 item",
		},
		{
			name: "map where a list is expected",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: {host: h, port: 1}}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "got a map",
		},
		{
			name: "node list too short",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "got a list of 1 item",
		},
		{
			name: "node list too long",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1, 2, 3]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "got a list of 4 items",
		},
		{
			name: "host not a string",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [[h], 1]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: "want a host name, got a list",
		},
		{
			name: "empty host",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: ["", 1]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: `host "" is not a host name`,
		},
		{
			name: "node id that is a path",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {../n1: [h, 1]}}}`,
			path: `deployments.d.buckets.b1."../n1"`, dep: "d", msg: `node id "../n1"`,
		},
		{
			name: "read_repair not a bool",
			src: `
active_deployment: d
deployments:
  d: {read_repair: maybe, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.read_repair", dep: "d", msg: `want yes or no`,
		},
		{
			name: "background_repair is a list",
			src: `
active_deployment: d
deployments:
  d: {background_repair: [yes], buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.background_repair", dep: "d", msg: `want yes or no, got a list`,
		},
		{
			name: "unknown top-level key",
			src: `
active_deployment: d
deployment: {}
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployment", msg: `unknown key "deployment"`,
		},
		{
			name: "unknown deployment key",
			src: `
active_deployment: d
deployments:
  d: {readrepair: yes, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.readrepair", dep: "d", msg: `unknown key "readrepair"`,
		},
		{
			name: "unknown hash key",
			src: `
active_deployment: d
deployments:
  d: {hash: {replicas: 2}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.hash.replicas", dep: "d", msg: `unknown key "replicas"`,
		},
		{
			name: "unknown limits key",
			src: `
active_deployment: d
deployments:
  d: {limits: {max_conns: 2}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.limits.max_conns", dep: "d", msg: `unknown key "max_conns"`,
		},
		{
			name: "zero connections",
			src: `
active_deployment: d
deployments:
  d: {limits: {max_connections: 0}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.limits.max_connections", dep: "d", msg: `0`,
		},
		{
			name: "bad header timeout",
			src: `
active_deployment: d
deployments:
  d: {limits: {header_timeout: soon}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.limits.header_timeout", dep: "d", msg: `invalid duration "soon"`,
		},
		{
			name: "unparseable interval",
			src: `
active_deployment: d
deployments:
  d: {background_repair_interval: 1 day, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.background_repair_interval", dep: "d", msg: `invalid duration "1 day"`,
		},
		{
			name: "zero request timeout",
			src: `
active_deployment: d
deployments:
  d: {request_timeout: 0s, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.request_timeout", dep: "d", msg: "greater than zero",
		},
		{
			name: "unparseable max_timestamp_ahead",
			src: `
active_deployment: d
deployments:
  d: {max_timestamp_ahead: soon, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.max_timestamp_ahead", dep: "d", msg: `invalid duration "soon"`,
		},
		{
			name: "unparseable size",
			src: `
active_deployment: d
deployments:
  d: {max_value_size: 1TB, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.max_value_size", dep: "d", msg: `unknown unit "TB"`,
		},
		{
			name: "quorum larger than the smallest replica set",
			src: `
active_deployment: d
deployments:
  d:
    write_quorum: 5
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [h, 1], n2: [h, 2]}
      b2: {n3: [h, 3], n4: [h, 4], n5: [h, 5]}
      b3: {n6: [h, 6], n7: [h, 7]}`,
			path: "deployments.d.write_quorum", dep: "d", msg: "write_quorum 5 is more than the 4 replicas",
		},
		{
			name: "read quorum larger than every replica set",
			src: `
active_deployment: d
deployments:
  d:
    read_quorum: 3
    hash: {buckets_per_key: 5}
    buckets: {b1: {n1: [h, 1]}, b2: {n2: [h, 2]}}`,
			path: "deployments.d.read_quorum", dep: "d", msg: "read_quorum 3 is more than the 2 replicas",
		},
		{
			name: "unknown quorum word",
			src: `
active_deployment: d
deployments:
  d: {write_quorum: most, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.write_quorum", dep: "d", msg: `invalid quorum "most"`,
		},
		{
			name: "quorum zero",
			src: `
active_deployment: d
deployments:
  d: {read_quorum: 0, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.read_quorum", dep: "d", msg: "at least 1",
		},
		{
			name: "negative quorum",
			src: `
active_deployment: d
deployments:
  d: {read_quorum: -2, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.read_quorum", dep: "d", msg: `invalid quorum "-2"`,
		},
		{
			name: "buckets_per_key zero",
			src: `
active_deployment: d
deployments:
  d: {hash: {buckets_per_key: 0}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.hash.buckets_per_key", dep: "d", msg: "want a positive whole number",
		},
		{
			name: "points_per_bucket not a number",
			src: `
active_deployment: d
deployments:
  d: {hash: {points_per_bucket: many}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.hash.points_per_bucket", dep: "d", msg: "want a positive whole number",
		},
		{
			name: "points_per_bucket too large",
			src: `
active_deployment: d
deployments:
  d: {hash: {points_per_bucket: 1000000}, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.hash.points_per_bucket", dep: "d", msg: "too large",
		},
		{
			name: "hash is a string",
			src: `
active_deployment: d
deployments:
  d: {hash: md5, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.hash", dep: "d", msg: `want a map, got "md5"`,
		},
		{
			name: "master coordinator unknown",
			src: `
master_coordinator: c2
coordinators: {c1: [h, 9]}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "master_coordinator", msg: `unknown coordinator "c2"`,
		},
		{
			name: "master coordinator without coordinators",
			src: `
master_coordinator: c1
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "master_coordinator", msg: "no coordinators are listed",
		},
		{
			name: "coordinator with a bad port",
			src: `
coordinators: {c1: [h, 99999]}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "coordinators.c1", msg: "port 99999 out of range",
		},
		{
			name: "coordinator with three items",
			src: `
coordinators: {c1: [h, 80, 9]}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "coordinators.c1", msg: "want [HOST, PORT], got a list of 3 items",
		},
		{
			name: "coordinator given as a string",
			src: `
coordinators: {c1: "h:9"}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "coordinators.c1", msg: `want [HOST, PORT], got "h:9"`,
		},
		{
			name: "coordinator on a node's port",
			src: `
coordinators: {c1: [h, 1]}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d.buckets.b1.n1", dep: "d", msg: `already the port of coordinator "c1" in the coordinators`,
		},
		{
			name: "two coordinators on one port",
			src: `
coordinators: {c1: [h, 9], c2: [h, 9]}
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}`,
			path: "coordinators.c2", msg: `port 9 on host "h" is already the port of coordinator "c1"`,
		},
		{
			name: "document is a list",
			src:  `[active_deployment, d]`,
			path: "", msg: "want a map, got a list of 2 items",
		},
		{
			name: "empty document",
			src:  "# nothing here\n",
			path: "", msg: "empty configuration",
		},
		{
			name: "two documents",
			src: `
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}
---
active_deployment: e`,
			path: "", msg: "more than one YAML document",
		},
		{
			name: "merge of a scalar",
			src: `
active_deployment: d
deployments:
  d: {<<: 5, buckets: {b1: {n1: [h, 1]}}}`,
			path: "deployments.d", dep: "d", msg: "<< merges \"5\"",
		},
		{
			name: "non-scalar key",
			src: `
active_deployment: d
deployments:
  d:
    buckets:
      ? [b1]
      : {n1: [h, 1]}`,
			path: "deployments.d.buckets", dep: "d", msg: "want a name as key, got a list",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded (%d deployments), want an error", len(c.Deployments))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v (%T) is not an *Error", err, err)
			}
			found := false
			for _, p := range e.Problems {
				if p.Path == tt.path && p.Deployment == tt.dep && strings.Contains(p.Message, tt.msg) {
					found = true
					if p.Line == 0 && tt.name != "empty document" {
						t.Errorf("problem %+v has no line", p)
					}
				}
			}
			if !found {
				t.Errorf("no problem at path %q in deployment %q saying %q; got:\n%s",
					tt.path, tt.dep, tt.msg, problemList(e))
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			if !strings.Contains(msg, tt.path) {
				t.Errorf("error %q does not name the path %q", msg, tt.path)
			}
			if tt.dep != "" && !strings.Contains(msg, `(deployment "`+tt.dep+`")`) {
				t.Errorf("error %q does not name the deployment %q", msg, tt.dep)
			}
		})
	}
}

func problemList(e *Error) string {
	var b strings.Builder
	for _, p := range e.Problems {
		b.WriteString("\t")
		p.format(&b)
		b.WriteString("\n")
	}
	return b.String()
}

func TestParseYAMLSyntaxError(t *testing.T) {
	tests := []struct {
		name, src string
	}{
		{"unclosed flow list", "active_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1}}}\n"},
		{"bad indentation", "active_deployment: d\n deployments: x\n  - y"},
		{"tab indentation", "deployments:\n\td: {}\n"},
		{"unterminated string", `active_deployment: "d`},
		{"syntax error in a later document", "active_deployment: d\n---\n[\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			var e *Error
			if errors.As(err, &e) {
				t.Fatalf("Parse returned *Error %v, want a YAML error", err)
			}
			if !strings.HasPrefix(err.Error(), "config: parsing YAML: ") {
				t.Errorf("error %q does not start with config: parsing YAML:", err)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := `active_deployment: cluster
coordinatorz: {}
deployments:
  cluster:
    read_repair: perhaps
    write_quorum: 5
    buckets:
      b1:
        n1: [h, 70000]
        n2: [h, "abc"]
      b2:
        n1: [h, 3]
      b3: {}
  next:
    max_value_size: lots
    buckets:
      b1:
        n3: [h, 1, 2, 3]
`
	_, err := Parse([]byte(src))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error %v, want an *Error", err)
	}
	want := []Problem{
		{2, "", "coordinatorz", `unknown key "coordinatorz"`},
		{5, "cluster", "deployments.cluster.read_repair", `want yes or no`},
		{9, "cluster", "deployments.cluster.buckets.b1.n1", "binary port 70000 out of range 1-65535"},
		{10, "cluster", "deployments.cluster.buckets.b1.n2", `binary port "abc" is not a number`},
		{12, "cluster", "deployments.cluster.buckets.b2.n1", `node "n1" listed twice (also in bucket "b1" at line 9)`},
		{13, "cluster", "deployments.cluster.buckets.b3", "empty bucket"},
		{15, "next", "deployments.next.max_value_size", `invalid size "lots"`},
		{18, "next", "deployments.next.buckets.b1.n3", "got a list of 4 items"},
	}
	if len(e.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(e.Problems), len(want), problemList(e))
	}
	for i, w := range want {
		g := e.Problems[i]
		if g.Line != w.Line || g.Deployment != w.Deployment || g.Path != w.Path || !strings.Contains(g.Message, w.Message) {
			t.Errorf("problem %d = %+v, want %+v", i, g, w)
		}
	}
	msg := err.Error()
	if got := strings.Count(msg, "; "); got != len(want)-1 {
		t.Errorf("error has %d separators, want %d: %s", got, len(want)-1, msg)
	}
	if !strings.HasPrefix(msg, `line 2: coordinatorz: unknown key "coordinatorz"`) {
		t.Errorf("error starts %q", msg)
	}
	if !strings.Contains(msg, `line 9: deployments.cluster.buckets.b1.n1: binary port 70000 out of range 1-65535 (deployment "cluster"); `) {
		t.Errorf("error lacks the port problem in the documented form: %s", msg)
	}
}

func TestParseIsDeterministic(t *testing.T) {
	src := []byte(`
active_deployment: a
target_deployment: b
deployments:
  a: {buckets: {b1: {n1: [h, 1]}, b2: {n2: [h, 1]}, b3: {n3: [h, 1]}}}
  b: {buckets: {b1: {n1: [h, 2]}, b2: {n4: [h, 1]}, b3: {n5: [h, 1]}}}
`)
	_, err := Parse(src)
	if err == nil {
		t.Fatal("Parse succeeded, want an error")
	}
	for range 20 {
		if _, again := Parse(src); again.Error() != err.Error() {
			t.Fatalf("errors differ:\n%v\n%v", err, again)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
`)
	want := &Deployment{
		Name:                     "d",
		ReadRepair:               true,
		BackgroundRepair:         true,
		BackgroundRepairInterval: 24 * time.Hour,
		WriteQuorum:              Quorum{Kind: QuorumMajority},
		ReadQuorum:               Quorum{Kind: QuorumMajority},
		RequestTimeout:           2 * time.Second,
		MaxValueSize:             64 << 20,
		MaxTimestampAhead:        10 * time.Minute,
		MaxTTL:                   3650 * 24 * time.Hour,
		TombstoneGrace:           240 * time.Hour,
		RepairBandwidth:          64 << 20,
		Limits: Limits{MaxConnections: 4096, MaxRequestsInFlight: 1024, MaxRequestsPerConnection: 256, MaxBytesInFlight: 256 << 20,
			HeaderTimeout: 10 * time.Second, BodyTimeout: time.Minute, IdleTimeout: 2 * time.Minute},
		BucketsPerKey:   1,
		PointsPerBucket: ring.DefaultPointsPerBucket,
		Buckets:         []Bucket{{Name: "b1", Nodes: []Node{{ID: "n1", Bucket: "b1", Host: "h", BinaryPort: 1}}}},
		Ring:            ring.New([]string{"b1"}, ring.DefaultPointsPerBucket),
	}
	if !reflect.DeepEqual(c.Active, want) {
		t.Errorf("Active = %+v\nwant %+v", c.Active, want)
	}
	set := mustParse(t, `
active_deployment: d
deployments:
  d:
    limits: {max_connections: 10, max_requests_in_flight: 20, max_requests_per_connection: 30, max_bytes_in_flight: 40MiB, header_timeout: 1s, body_timeout: 2s, idle_timeout: 3s}
    buckets:
      b1: {n1: [h, 1]}
`)
	if got, want := set.Active.Limits, (Limits{10, 20, 30, 40 << 20, time.Second, 2 * time.Second, 3 * time.Second}); got != want {
		t.Errorf("Limits = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"0", "-1MiB", "lots", "1.5"} {
		_, err := Parse([]byte("active_deployment: d\ndeployments:\n  d:\n    limits: {max_bytes_in_flight: " + bad + "}\n    buckets:\n      b1: {n1: [h, 1]}\n"))
		if err == nil || !strings.Contains(err.Error(), "limits.max_bytes_in_flight") {
			t.Errorf("max_bytes_in_flight: %s: err %v, want one naming limits.max_bytes_in_flight", bad, err)
		}
	}
	for text, want := range map[string]int64{"64MiB/s": 64 << 20, "10MB": 10_000_000, "1GiB/s": 1 << 30} {
		rated := mustParse(t, "active_deployment: d\ndeployments:\n  d:\n    repair_bandwidth: "+text+"\n    buckets:\n      b1: {n1: [h, 1]}\n")
		if got := rated.Active.RepairBandwidth; got != want {
			t.Errorf("repair_bandwidth: %s = %d, want %d", text, got, want)
		}
	}
	for _, bad := range []string{"0", "-1MiB/s", "fast", "1MiB/h"} {
		_, err := Parse([]byte("active_deployment: d\ndeployments:\n  d:\n    repair_bandwidth: " + bad + "\n    buckets:\n      b1: {n1: [h, 1]}\n"))
		if err == nil || !strings.Contains(err.Error(), "repair_bandwidth") {
			t.Errorf("repair_bandwidth: %s: err %v, want one naming repair_bandwidth", bad, err)
		}
	}
	if c.Target != nil || c.MasterCoordinator != "" || c.Coordinators != nil {
		t.Errorf("Target %v, MasterCoordinator %q, Coordinators %v: want none", c.Target, c.MasterCoordinator, c.Coordinators)
	}
	if got := c.Nodes()[0].HTTPAddr(); got != "" {
		t.Errorf("HTTPAddr of a node without HTTP port = %q, want empty", got)
	}
}

func TestSettings(t *testing.T) {
	c := mustParse(t, `
active_deployment: d
target_deployment: ~
master_coordinator: ""
deployments:
  d:
    read_repair: "OFF"
    background_repair: False
    background_repair_interval: 1d 12:00:00
    write_quorum: all
    read_quorum: 2
    request_timeout: 1500ms
    max_value_size: 1 KiB
    max_timestamp_ahead: 30
    max_ttl: 2h
    hash: {buckets_per_key: 9, points_per_bucket: 7}
    buckets:
      1: {2: ["::1", "8080", 3]}
      b2:
        n3:
          - example.com
          - 4
`)
	d := c.Active
	checks := []struct {
		name      string
		got, want any
	}{
		{"ReadRepair", d.ReadRepair, false},
		{"BackgroundRepair", d.BackgroundRepair, false},
		{"BackgroundRepairInterval", d.BackgroundRepairInterval, 36 * time.Hour},
		{"WriteQuorum", d.WriteQuorum, Quorum{Kind: QuorumAll}},
		{"ReadQuorum", d.ReadQuorum, Quorum{Kind: QuorumCount, N: 2}},
		{"RequestTimeout", d.RequestTimeout, 1500 * time.Millisecond},
		{"MaxValueSize", d.MaxValueSize, int64(1024)},
		{"MaxTimestampAhead", d.MaxTimestampAhead, 30 * time.Second},
		{"MaxTTL", d.MaxTTL, 2 * time.Hour},
		{"BucketsPerKey", d.BucketsPerKey, 9},
		{"PointsPerBucket", d.PointsPerBucket, 7},
		{"bucket names", d.Ring.Buckets(), []string{"1", "b2"}},
		{"numeric node", d.Buckets[0].Nodes[0], Node{ID: "2", Bucket: "1", Host: "::1", HTTPPort: 8080, BinaryPort: 3}},
		{"BinaryAddr", d.Buckets[0].Nodes[0].BinaryAddr(), "[::1]:3"},
		{"HTTPAddr", d.Buckets[0].Nodes[0].HTTPAddr(), "[::1]:8080"},
		{"block list node", d.Buckets[1].Nodes[0], Node{ID: "n3", Bucket: "b2", Host: "example.com", BinaryPort: 4}},
		{"MinReplicas", d.MinReplicas(), 2},
		{"Target", c.Target, (*Deployment)(nil)},
		{"MasterCoordinator", c.MasterCoordinator, ""},
	}
	for _, ch := range checks {
		t.Run(ch.name, func(t *testing.T) {
			if !reflect.DeepEqual(ch.got, ch.want) {
				t.Errorf("got %#v, want %#v", ch.got, ch.want)
			}
		})
	}
}

func TestBooleans(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"yes", true}, {"Yes", true}, {"true", true}, {"TRUE", true}, {"on", true}, {"On", true},
		{"no", false}, {"NO", false}, {"false", false}, {"False", false}, {"off", false}, {"OFF", false},
	} {
		t.Run(tt.in, func(t *testing.T) {
			c := mustParse(t, "active_deployment: d\ndeployments:\n  d: {read_repair: "+tt.in+
				", background_repair: "+tt.in+", buckets: {b1: {n1: [h, 1]}}}\n")
			if c.Active.ReadRepair != tt.want || c.Active.BackgroundRepair != tt.want {
				t.Errorf("read_repair %q = %v, background_repair = %v, want %v",
					tt.in, c.Active.ReadRepair, c.Active.BackgroundRepair, tt.want)
			}
		})
	}
}

// TestAliasesAndMerges checks that YAML anchors, aliases and merge keys work,
// with explicit keys winning over merged ones.
func TestAliasesAndMerges(t *testing.T) {
	c := mustParse(t, `
active_deployment: old
target_deployment: new
deployments:
  old: &base
    read_repair: no
    request_timeout: 5s
    buckets:
      b1: &b1 {n1: [h, 1], n2: [h, 2]}
  new:
    <<: *base
    request_timeout: 3s
    buckets:
      b1: *b1
      b2: {n3: [h, 3]}
`)
	n := c.Target
	if n.ReadRepair || n.RequestTimeout != 3*time.Second || len(n.Buckets) != 2 || len(n.Buckets[0].Nodes) != 2 {
		t.Errorf("target = %+v, want read_repair off, request_timeout 3s and buckets b1 (2 nodes), b2", n)
	}
	if c.Active.RequestTimeout != 5*time.Second {
		t.Errorf("active request_timeout = %v, want 5s", c.Active.RequestTimeout)
	}
}

// TestAliasBomb checks that aliases cannot make the parser do unbounded work.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("active_deployment: d0\ndeployments:\n  d0: &d\n    buckets: &bs\n")
	for i := range 200 {
		if i == 0 {
			b.WriteString("      b0: &ns {")
			for j := range 200 {
				if j > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "n%d: [h, %d]", j, j+1)
			}
			b.WriteString("}\n")
			continue
		}
		fmt.Fprintf(&b, "      b%d: *ns\n", i)
	}
	for i := 1; i < 200; i++ {
		fmt.Fprintf(&b, "  d%d: *d\n", i)
	}
	start := time.Now()
	_, err := Parse([]byte(b.String()))
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Parse error %v, want an *Error saying too large", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestJSONParsesLikeYAML(t *testing.T) {
	yamlCfg, err := Load(filepath.Join("..", "..", "examples", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for i := 1; i <= 10; i++ {
		nodes = append(nodes, fmt.Sprintf(`"n%d": ["tako-node-%02d.domain.com", 5711, 4711]`, i, i))
	}
	bucket := func(i int) string {
		return fmt.Sprintf(`"b%d": {%s, %s}`, i+1, nodes[2*i], nodes[2*i+1])
	}
	json := `{
  "master_coordinator": "c1",
  "coordinators": {"c1": ["tako-coordinator-1.domain.com", 4712]},
  "active_deployment": "cluster",
  "deployments": {
    "cluster": {
      "read_repair": true,
      "hash": {"buckets_per_key": 2},
      "buckets": {` + bucket(0) + ", " + bucket(1) + ", " + bucket(2) + ", " + bucket(3) + ", " + bucket(4) + `}
    }
  }
}`
	jsonCfg := mustParse(t, json)
	if !reflect.DeepEqual(jsonCfg, yamlCfg) {
		t.Errorf("JSON form parses to\n%+v\nYAML form to\n%+v", jsonCfg.Active, yamlCfg.Active)
	}

	// The JSON form's errors name keys and deployments too.
	_, err = Parse([]byte(`{"active_deployment": "cluster", "deployments": {"cluster": {"buckets": {"b1": {"n1": ["h", "abc"]}}}}}`))
	if err == nil || !strings.Contains(err.Error(),
		`line 1: deployments.cluster.buckets.b1.n1: binary port "abc" is not a number (deployment "cluster")`) {
		t.Errorf("JSON error = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("active_deployment: d\ndeployments: {d: {buckets: {}}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notYAML := filepath.Join(dir, "notyaml.yaml")
	if err := os.WriteFile(notYAML, []byte("a: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
		isProblem        bool
	}{
		{"missing file", filepath.Join(dir, "missing.yaml"), "missing.yaml", false},
		{"invalid configuration", bad, bad + `: line 2: deployments.d.buckets: no buckets`, true},
		{"not YAML", notYAML, notYAML + ": parsing YAML: ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error %q, want it to contain %q", err, tt.want)
			}
			var e *Error
			if errors.As(err, &e) != tt.isProblem {
				t.Errorf("errors.As(%v, *Error) = %v, want %v", err, !tt.isProblem, tt.isProblem)
			}
		})
	}
}

func TestCoordinators(t *testing.T) {
	c := mustParse(t, `
master_coordinator: c2
coordinators:
  c2: [h, 9]
  c1:
    - example.org
    - 10
active_deployment: d
deployments:
  d: {buckets: {b1: {n1: [h, 1]}}}
`)
	want := []Coordinator{{ID: "c2", Host: "h", Port: 9}, {ID: "c1", Host: "example.org", Port: 10}}
	if !reflect.DeepEqual(c.Coordinators, want) {
		t.Errorf("Coordinators = %+v, want %+v", c.Coordinators, want)
	}
	if c.MasterCoordinator != "c2" {
		t.Errorf("MasterCoordinator = %q, want c2", c.MasterCoordinator)
	}
	if got := c.Coordinators[1].Addr(); got != "example.org:10" {
		t.Errorf("Addr() = %q", got)
	}
}

// migration is a configuration in the middle of a live migration: n1 and n2
// stay (n2 moves to another bucket), n3 and n4 leave, n5 and n6 arrive.
const migration = `
active_deployment: old
target_deployment: new
deployments:
  old:
    read_quorum: one
    hash: {buckets_per_key: 2}
    buckets:
      a: {n1: [h, 1], n2: [h, 2]}
      b: {n3: [h, 3]}
      c: {n4: [h, 4]}
  new:
    read_quorum: all
    hash: {buckets_per_key: 2}
    buckets:
      x: {n1: [h, 1]}
      y: {n2: [h, 2], n5: [h, 5]}
      z: {n6: [h, 6, 16]}
  idle:
    buckets:
      q: {n7: [h, 7]}
`

func TestNodePrefersTarget(t *testing.T) {
	c := mustParse(t, migration)
	tests := []struct {
		id, bucket, dep string
		found           bool
	}{
		{"n1", "x", "new", true},
		{"n2", "y", "new", true},
		{"n3", "b", "old", true},
		{"n6", "z", "new", true},
		{"n7", "", "", false}, // only in a deployment that is neither active nor target
		{"n99", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			n, d, ok := c.Node(tt.id)
			if ok != tt.found {
				t.Fatalf("Node(%q) found = %v, want %v", tt.id, ok, tt.found)
			}
			if !ok {
				return
			}
			if n.ID != tt.id || n.Bucket != tt.bucket || d.Name != tt.dep {
				t.Errorf("Node(%q) = %+v in %q, want bucket %q in %q", tt.id, n, d.Name, tt.bucket, tt.dep)
			}
		})
	}
	var ids []string
	for _, n := range c.Nodes() {
		ids = append(ids, n.ID)
	}
	if want := []string{"n1", "n2", "n3", "n4", "n5", "n6"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("Nodes() = %v, want %v", ids, want)
	}
}

func TestAuthSection(t *testing.T) {
	h1 := strings.Repeat("ab", 32)
	h2 := strings.Repeat("cd", 32)
	c := mustParse(t, `
auth:
  tokens:
    app: {sha256: `+h1+`, role: write}
    ops: {sha256: `+h2+`, role: admin}
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
`)
	if len(c.AuthTokens) != 2 || c.Auth == nil || c.AuthTokens[0].Name != "app" || c.AuthTokens[1].Role.String() != "admin" {
		t.Fatalf("tokens %+v", c.AuthTokens)
	}
	// The canonical JSON keeps the hashes, and parses back the same.
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"auth":{"tokens":{"app":{"sha256":"`+h1+`","role":"write"}`) {
		t.Errorf("JSON: %s", js)
	}
	back, err := Parse(js)
	if err != nil || !reflect.DeepEqual(back.AuthTokens, c.AuthTokens) {
		t.Errorf("JSON round trip: %+v %v", back.AuthTokens, err)
	}
	if noAuth := mustParse(t, "active_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n"); noAuth.Auth != nil {
		t.Error("a file without auth has auth on")
	}
	for _, tt := range []struct{ src, want string }{
		{"auth: {tokens: {a: {sha256: xyz, role: read}}}", `invalid sha256 "xyz"`},
		{"auth: {tokens: {a: {sha256: " + h1 + ", role: root}}}", `unknown role "root"`},
		{"auth: {tokens: {a: {sha256: " + h1 + "}}}", "a token needs sha256 and role"},
		{"auth: {tokens: {a: {sha256: " + h1 + ", role: read}, b: {sha256: " + h1 + ", role: admin}}}", `the same token as "a"`},
		{"auth: {users: {}}", `unknown key "users"`},
		{"auth: {tokens: {a: {sha256: " + h1 + ", role: read, expires: never}}}", `unknown key "expires"`},
	} {
		_, err := Parse([]byte(tt.src + "\nactive_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.src, err, tt.want)
		}
	}
}

// TestTLSSection parses the tls section, writes it in the canonical JSON
// and reads it back, and rejects a missing field or an unknown key.
func TestTLSSection(t *testing.T) {
	c := mustParse(t, `
tls:
  ca: /etc/tako/ca.pem
  cert: certs/tako.pem
  key: "/etc/tako/tako key.pem"
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
`)
	want := TLSFiles{CA: "/etc/tako/ca.pem", Cert: "certs/tako.pem", Key: "/etc/tako/tako key.pem"}
	if !c.TLS.Equal(&want) {
		t.Fatalf("TLS = %+v, want %+v", c.TLS, want)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"tls":{"ca":"/etc/tako/ca.pem","cert":"certs/tako.pem","key":"/etc/tako/tako key.pem"}`) {
		t.Errorf("JSON: %s", js)
	}
	back, err := Parse(js)
	if err != nil || !back.TLS.Equal(&want) {
		t.Errorf("JSON round trip: %+v %v", back.TLS, err)
	}
	if again, _ := json.Marshal(back); string(again) != string(js) {
		t.Errorf("JSON not stable:\n%s\n%s", js, again)
	}
	noTLS := mustParse(t, "active_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n")
	if noTLS.TLS != nil {
		t.Error("a file without tls has TLS set")
	}
	if js, _ := json.Marshal(noTLS); strings.Contains(string(js), "tls") {
		t.Errorf("JSON of a file without tls: %s", js)
	}
	for _, tt := range []struct{ src, want string }{
		{"tls: {ca: a.pem, cert: b.pem}", "missing key: the tls section needs ca, cert and key"},
		{"tls: {ca: a.pem}", "missing cert, key"},
		{"tls: {}", "missing ca, cert, key"},
		{"tls: {ca: a.pem, cert: b.pem, key: c.pem, crl: d.pem}", `unknown key "crl" (want one of ca, cert, key, node, proxy, coordinator, client)`},
		{"tls: {ca: a.pem, cert: b.pem, key: c.pem, node: {cert: n.pem}}", "tls.node: a role's certificate needs both cert and key"},
		{"tls: {ca: a.pem, cert: b.pem, key: c.pem, proxy: {cert: p.pem, key: k.pem, ca: x.pem}}", `unknown key "ca" (want one of cert, key)`},
		{"tls: {ca: a.pem, cert: b.pem, key: c.pem, client: c.pem}", "tls.client"},
		{"tls: {ca: a.pem, cert: b.pem, key: c.pem, node: {cert: '', key: k.pem}}", "tls.node.cert: empty"},
		{"tls: {ca: a.pem, cert: b.pem, key: ''}", "tls.key: empty"},
		{"tls: {ca: [a.pem], cert: b.pem, key: c.pem}", "want the path of a PEM file"},
		{"tls: yes", "tls"},
	} {
		_, err := Parse([]byte(tt.src + "\nactive_deployment: d\ndeployments: {d: {buckets: {b1: {n1: [h, 1]}}}}\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.src, err, tt.want)
		}
	}
}

// TestTLSRoles: a role may have a certificate of its own; For gives it to
// that role and the section's to the others; the JSON keeps them, in a
// fixed order, and Equal tells sections apart by them.
func TestTLSRoles(t *testing.T) {
	c := mustParse(t, `
tls:
  ca: ca.pem
  cert: tako.pem
  key: tako-key.pem
  proxy: {cert: proxy.pem, key: proxy-key.pem}
  node: {cert: node.pem, key: node-key.pem}
active_deployment: d
deployments:
  d:
    buckets:
      b1: {n1: [h, 1]}
`)
	for role, want := range map[string]string{"node": "node.pem", "proxy": "proxy.pem", "coordinator": "tako.pem", "client": "tako.pem"} {
		if cert, key := c.TLS.For(role); cert != want || key != strings.TrimSuffix(want, ".pem")+"-key.pem" {
			t.Errorf("For(%q) = %s, %s; want %s and its key", role, cert, key, want)
		}
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"tls":{"ca":"ca.pem","cert":"tako.pem","key":"tako-key.pem","node":{"cert":"node.pem","key":"node-key.pem"},"proxy":{"cert":"proxy.pem","key":"proxy-key.pem"}}`) {
		t.Errorf("JSON: %s", js)
	}
	back, err := Parse(js)
	if err != nil || !back.TLS.Equal(c.TLS) {
		t.Fatalf("JSON round trip: %+v %v", back.TLS, err)
	}
	other := *c.TLS
	other.Roles = map[string]KeyPair{"node": {Cert: "node.pem", Key: "node-key.pem"}}
	if c.TLS.Equal(&other) || c.TLS.Equal(nil) || !(*TLSFiles)(nil).Equal(nil) {
		t.Error("Equal does not tell the sections apart")
	}
}
