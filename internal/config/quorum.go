package config

import (
	"fmt"
	"strconv"
	"strings"
)

// QuorumKind says how a Quorum counts the replicas it needs.
type QuorumKind int

// The kinds of quorum. The zero value is QuorumMajority, so the zero Quorum
// is the default "quorum".
const (
	// QuorumMajority ("quorum") needs a majority: replicas/2 + 1.
	QuorumMajority QuorumKind = iota
	// QuorumOne ("one") needs one replica.
	QuorumOne
	// QuorumAll ("all") needs every replica.
	QuorumAll
	// QuorumCount (a number N) needs N replicas.
	QuorumCount
)

// Quorum is how many of a key's replicas must answer a read or store a write:
// write_quorum and read_quorum in the configuration. The zero value is the
// majority quorum.
type Quorum struct {
	// Kind is how the quorum is counted.
	Kind QuorumKind
	// N is the number of replicas when Kind is QuorumCount, and 0 otherwise.
	N int
}

// ParseQuorum parses "one", "quorum", "all" (in any case) or a positive
// decimal number N.
func ParseQuorum(s string) (Quorum, error) {
	q, err := parseQuorum(s)
	if err != nil {
		return Quorum{}, fmt.Errorf("config: %w", err)
	}
	return q, nil
}

// parseQuorum is ParseQuorum with an error that has no package prefix.
func parseQuorum(s string) (Quorum, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "one":
		return Quorum{Kind: QuorumOne}, nil
	case "quorum":
		return Quorum{Kind: QuorumMajority}, nil
	case "all":
		return Quorum{Kind: QuorumAll}, nil
	}
	if isDigits(t) {
		n, err := strconv.Atoi(t)
		if err != nil {
			return Quorum{}, fmt.Errorf("invalid quorum %q: number out of range", s)
		}
		if n <= 0 {
			return Quorum{}, fmt.Errorf("invalid quorum %q: must be at least 1", s)
		}
		return Quorum{Kind: QuorumCount, N: n}, nil
	}
	return Quorum{}, fmt.Errorf("invalid quorum %q (want one, quorum, all or a positive number)", s)
}

// Required returns how many of a key's replicas satisfy the quorum: 1 for
// one, replicas/2+1 for quorum, replicas for all, N for a number. The result
// is never more than replicas, and never less than 1 when replicas is
// positive; it is 0 when replicas is not.
func (q Quorum) Required(replicas int) int {
	if replicas <= 0 {
		return 0
	}
	var n int
	switch q.Kind {
	case QuorumOne:
		n = 1
	case QuorumAll:
		n = replicas
	case QuorumCount:
		n = q.N
	default:
		n = replicas/2 + 1
	}
	return min(max(n, 1), replicas)
}

// String returns the quorum as the configuration writes it: "one", "quorum",
// "all" or the number.
func (q Quorum) String() string {
	switch q.Kind {
	case QuorumOne:
		return "one"
	case QuorumAll:
		return "all"
	case QuorumCount:
		return strconv.Itoa(q.N)
	default:
		return "quorum"
	}
}
