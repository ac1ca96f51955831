package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is the 1-based line of the offending key or value, or 0 when
	// the problem has no place in the file.
	Line int
	// Deployment is the name of the deployment the problem is in, or ""
	// for a problem outside the deployments (coordinators, the active and
	// target names).
	Deployment string
	// Path is the key path of the offending value, its parts joined by
	// dots, like "deployments.cluster.buckets.b1.n1". A part that is not
	// made of letters, digits, '_' and '-' alone is quoted as a Go string.
	// It is "" for the document as a whole.
	Path string
	// Message says what is wrong.
	Message string
}

// format returns the problem the way Error.Error shows it:
// `line 14: deployments.cluster.buckets.b1.n1: binary port 70000 out of
// range 1-65535 (deployment "cluster")`.
func (p Problem) format(b *strings.Builder) {
	if p.Line > 0 {
		fmt.Fprintf(b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Deployment != "" {
		fmt.Fprintf(b, " (deployment %q)", p.Deployment)
	}
}

// Error is returned by Parse and Load for a configuration that is valid YAML
// but not a valid Tako configuration. It holds every problem found, in file
// order.
type Error struct {
	// Problems are the problems found, at least one, ordered by line.
	Problems []Problem
}

// Error returns every problem on one line, separated by "; ", each as
// `line 14: deployments.cluster.buckets.b1.n1: binary port 70000 out of range
// 1-65535 (deployment "cluster")` (without the deployment part for problems
// outside the deployments).
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		p.format(&b)
	}
	return b.String()
}
