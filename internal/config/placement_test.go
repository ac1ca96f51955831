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
