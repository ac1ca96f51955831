package config

import (
	"strings"
	"testing"
)

func TestParseQuorum(t *testing.T) {
	tests := []struct {
		in   string
		want Quorum
		str  string
	}{
		{"one", Quorum{Kind: QuorumOne}, "one"},
		{"ONE", Quorum{Kind: QuorumOne}, "one"},
		{"quorum", Quorum{Kind: QuorumMajority}, "quorum"},
		{"Quorum", Quorum{Kind: QuorumMajority}, "quorum"},
		{"all", Quorum{Kind: QuorumAll}, "all"},
		{"1", Quorum{Kind: QuorumCount, N: 1}, "1"},
		{"3", Quorum{Kind: QuorumCount, N: 3}, "3"},
		{" 2 ", Quorum{Kind: QuorumCount, N: 2}, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseQuorum(tt.in)
			if err != nil {
				t.Fatalf("ParseQuorum(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseQuorum(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("ParseQuorum(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
			}
		})
	}
}

func TestParseQuorumInvalid(t *testing.T) {
	tests := []struct {
		in, why string
	}{
		{"", "want one, quorum, all"},
		{"two", "want one, quorum, all"},
		{"majority", "want one, quorum, all"},
		{"0", "at least 1"},
		{"-1", "want one, quorum, all"},
		{"1.5", "want one, quorum, all"},
		{"99999999999999999999", "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseQuorum(tt.in)
			if err == nil {
				t.Fatalf("ParseQuorum(%q) = %+v, want an error", tt.in, got)
			}
			if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseQuorum(%q) error %q, want it to say %q", tt.in, err, tt.why)
			}
		})
	}
}

func TestQuorumRequired(t *testing.T) {
	one, all := Quorum{Kind: QuorumOne}, Quorum{Kind: QuorumAll}
	majority := Quorum{} // the zero value is the majority quorum
	count := func(n int) Quorum { return Quorum{Kind: QuorumCount, N: n} }
	tests := []struct {
		name     string
		q        Quorum
		replicas int
		want     int
	}{
		{"one of 4", one, 4, 1},
		{"one of 1", one, 1, 1},
		{"majority of 1", majority, 1, 1},
		{"majority of 2", majority, 2, 2},
		{"majority of 3", majority, 3, 2},
		{"majority of 4", majority, 4, 3},
		{"majority of 5", majority, 5, 3},
		{"all of 4", all, 4, 4},
		{"2 of 4", count(2), 4, 2},
		{"N capped at replicas", count(5), 4, 4},
		{"N never below 1", count(0), 4, 1},
		{"no replicas, one", one, 0, 0},
		{"no replicas, majority", majority, 0, 0},
		{"no replicas, N", count(2), 0, 0},
		{"negative replicas", all, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.q.Required(tt.replicas); got != tt.want {
				t.Errorf("%v.Required(%d) = %d, want %d", tt.q, tt.replicas, got, tt.want)
			}
		})
	}
}

// TestQuorumIntersects checks the contract's consistency guarantee for the
// default quorums: a read quorum and a write quorum always share a replica.
func TestQuorumIntersects(t *testing.T) {
	for replicas := 1; replicas <= 16; replicas++ {
		r, w := Quorum{}.Required(replicas), Quorum{}.Required(replicas)
		if r+w <= replicas {
			t.Errorf("%d replicas: read %d + write %d do not overlap", replicas, r, w)
		}
	}
}
