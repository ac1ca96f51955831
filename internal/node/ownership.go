package node

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/takodb/tako/internal/config"
)

// ownershipFile is the name, in the store's directory, of the file that
// holds the hash ranges the node held under the last configuration it
// followed. A lost disk loses it with the store.
const ownershipFile = "TAKO-OWNED"

// ownership remembers the ranges the node held, across restarts: a node
// that starts with a configuration giving it ranges it did not hold when
// it last ran (it was migrated out, or its ranges moved while it was
// down) treats its records of those ranges as suspect (recovery.go).
type ownership struct {
	dir string

	mu     sync.Mutex // guards the fields below
	loaded bool
	known  bool // the file was there: held is what the node held
	held   []hashRange
}

// ownershipState is what ownershipFile holds.
type ownershipState struct {
	Held []hashRange
}

// loadLocked reads the file once.
func (o *ownership) loadLocked() {
	if o.loaded {
		return
	}
	o.loaded = true
	b, err := os.ReadFile(filepath.Join(o.dir, ownershipFile))
	if err != nil {
		return // none yet (a new store, or one from before this file)
	}
	var st ownershipState
	if json.Unmarshal(b, &st) != nil {
		return
	}
	o.held, o.known = st.Held, true
}

// gained returns the ranges that node self holds with a peer under cfg and
// did not hold under the last configuration it saved; nil when none was
// ever saved.
func (o *ownership) gained(cfg *config.Config, self string) []hashRange {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loadLocked()
	if !o.known {
		return nil
	}
	return subtract(replicatedRanges(cfg, self), o.held)
}

// save remembers the ranges node self holds under cfg, when they changed.
// A failure is logged: the node then may not know, after a restart, which
// ranges it comes back to.
func (o *ownership) save(cfg *config.Config, self string, logger *slog.Logger) {
	held := selfRanges(cfg, self)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loadLocked()
	if o.known && slices.Equal(o.held, held) {
		return
	}
	b, err := json.Marshal(ownershipState{Held: held})
	if err == nil {
		err = writeFileAtomic(o.dir, ownershipFile, b)
	}
	if err != nil {
		logger.Error("cannot save the ranges this node holds: after a restart it may trust records of ranges it was out of",
			"file", filepath.Join(o.dir, ownershipFile), "err", fmt.Errorf("saving: %w", err))
		return
	}
	o.held, o.known = held, true
}
