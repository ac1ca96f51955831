package config

import (
	"strings"
	"testing"
)

func TestSamePlacementIgnoresWhatDoesNotPlaceKeys(t *testing.T) {
	const base = `
active_deployment: a
deployments:
  a:
    request_timeout: 2s
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [h1, 1]}
      b2: {n2: [h2, 2]}
      b3: {n3: [h3, 3]}
`
	parse := func(t *testing.T, s string) *Config {
		t.Helper()
		c, err := Parse([]byte(s))
		if err != nil {
			t.Fatalf("%v\n%s", err, s)
		}
		return c
	}
	a := parse(t, base)
	for _, tt := range []struct {
		name, yaml string
		same       bool
	}{
		{"identical", base, true},
		{"another timeout", strings.Replace(base, "request_timeout: 2s", "request_timeout: 3s", 1), true},
		{"another address", strings.Replace(base, "[h1, 1]", "[h9, 9]", 1), true},
		{"buckets_per_key", strings.Replace(base, "buckets_per_key: 2", "buckets_per_key: 3", 1), false},
		{"write quorum", strings.Replace(base, "request_timeout: 2s", "request_timeout: 2s\n    write_quorum: all", 1), false},
		{"another node", strings.Replace(base, "n3: [h3, 3]", "n4: [h3, 3]", 1), false},
		{"a bucket more", base + "      b4: {n4: [h4, 4]}\n", false},
		{"a migration", base + `  t:
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [h1, 1]}
      b2: {n2: [h2, 2]}
target_deployment: t
`, false},
	} {
		if got := SamePlacement(a, parse(t, tt.yaml)); got != tt.same {
			t.Errorf("%s: SamePlacement = %v, want %v", tt.name, got, tt.same)
		}
	}
}

func TestAddedNodesAreTheNewOnesAndTheMoved(t *testing.T) {
	const base = `
active_deployment: a
deployments:
  a:
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [h1, 1]}
      b2: {n2: [h2, 2]}
`
	parse := func(s string) *Config {
		t.Helper()
		c, err := Parse([]byte(s))
		if err != nil {
			t.Fatalf("%v\n%s", err, s)
		}
		return c
	}
	ids := func(nodes []Node) string {
		var s []string
		for _, n := range nodes {
			s = append(s, n.ID)
		}
		return strings.Join(s, ",")
	}
	a := parse(base)
	migration := parse(strings.Replace(base, "active_deployment: a", "active_deployment: a\ntarget_deployment: t", 1) + `  t:
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [h1, 1]}
      b2: {n2: [h2, 2]}
      b3: {n3: [h3, 3]}
`)
	moved := parse(strings.Replace(base, "[h2, 2]", "[h2, 9]", 1))
	for _, tt := range []struct {
		name       string
		prev, next *Config
		want       string
	}{
		{"a first configuration", nil, a, ""},
		{"the same", a, a, ""},
		{"a migration adding n3", a, migration, "n3"},
		{"the migration's end", migration, a, ""},
		{"n2 on another port", a, moved, "n2"},
	} {
		if got := ids(AddedNodes(tt.prev, tt.next)); got != tt.want {
			t.Errorf("%s: AddedNodes = %q, want %q", tt.name, got, tt.want)
		}
	}
}
