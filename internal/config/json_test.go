package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestCanonicalJSONRoundTrips checks that Parse reads the canonical JSON back
// to the same configuration, and that the canonical form is a fixed point.
func TestCanonicalJSONRoundTrips(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	inputs := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs[filepath.Base(f)] = b
	}
	inputs["migration and settings"] = []byte(`
master_coordinator: c2
coordinators: {c1: [a, 1], c2: ["b", 2]}
active_deployment: old
target_deployment: new
deployments:
  old:
    read_repair: no
    background_repair: off
    background_repair_interval: 1d 2:03:04
    write_quorum: all
    read_quorum: 1
    request_timeout: 1500ms
    max_value_size: 1KiB
    max_timestamp_ahead: 90s
    max_ttl: 30d
    hash: {buckets_per_key: 2, points_per_bucket: 7}
    buckets:
      z: {n9: [h, 1, 2], n1: [h, 3]}
      a: {n2: [h, 4, 5]}
  new:
    buckets:
      "b \"quoted\"": {n7: [h, 6, 7]}
`)
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			c1, err := Parse(in)
			if err != nil {
				t.Fatal(err)
			}
			j1, err := c1.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(j1) {
				t.Fatalf("not valid JSON: %s", j1)
			}
			c2, err := Parse(j1)
			if err != nil {
				t.Fatalf("parsing the canonical JSON: %v\n%s", err, j1)
			}
			j2, _ := c2.MarshalJSON()
			if !bytes.Equal(j1, j2) {
				t.Fatalf("canonical form is not a fixed point:\n%s\n%s", j1, j2)
			}
			// The parsed configurations agree on everything but the rings'
			// identity.
			for dn, d1 := range c1.Deployments {
				d2 := c2.Deployments[dn]
				a, b := *d1, *d2
				a.Ring, b.Ring = nil, nil
				if !reflect.DeepEqual(a, b) {
					t.Errorf("deployment %s differs after the round trip:\n%+v\n%+v", dn, a, b)
				}
			}
			if !reflect.DeepEqual(c1.Coordinators, c2.Coordinators) || c1.MasterCoordinator != c2.MasterCoordinator {
				t.Errorf("coordinators differ after the round trip")
			}
		})
	}
}

func TestCanonicalJSONIgnoresLayoutAndDefaults(t *testing.T) {
	a, err := Parse([]byte("active_deployment: s\ndeployments:\n  s:\n    buckets:\n      b1:\n        n1: [h, 1, 2]\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte("# a comment\nactive_deployment: s\ndeployments:\n  s:\n    read_repair: yes\n    request_timeout: 2s\n    buckets: {b1: {n1: [h, 1, 2]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.MarshalJSON()
	jb, _ := b.MarshalJSON()
	if !bytes.Equal(ja, jb) {
		t.Fatalf("same configuration, different canonical forms:\n%s\n%s", ja, jb)
	}
}
