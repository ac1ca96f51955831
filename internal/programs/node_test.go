package programs

import (
	"errors"
	"fmt"
	"testing"

	"github.com/takodb/tako/internal/node"
)

// TestNodeExitCode: a service manager can tell a failed store (restart:
// it replays its log) from a damaged one (do not restart until the
// operator acts) from everything else, however deep the error is wrapped.
func TestNodeExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"store failed", fmt.Errorf("node n1: stopped: %w: pebble: fatal commit error: sync: input/output error", node.ErrStoreFailed), exitStoreFailed},
		{"store damaged", fmt.Errorf("node n1: %w", fmt.Errorf("opening: %w", node.ErrStoreDamaged)), exitStoreDamaged},
		{"anything else", errors.New("node n1: listening for HTTP on 127.0.0.1:5711: address already in use"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeExitCode(tt.err); got != tt.want {
				t.Errorf("nodeExitCode(%q) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
	if exitStoreFailed == exitStoreDamaged || exitStoreFailed <= 2 || exitStoreDamaged <= 2 {
		t.Errorf("exit statuses %d and %d must differ from each other and from 0, 1 and 2", exitStoreFailed, exitStoreDamaged)
	}
}
