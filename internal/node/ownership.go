package node

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
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
//
// During a migration it also remembers the ranges it is leaving (held
// under the active deployment, not under the target): once the target is
// promoted the others may collect tombstones of those ranges without it.
// A node that sees a configuration other than that migration next (it
// was stopped, or cut off from the coordinators, across the promotion)
// does not count them as held: if the new configuration gives them to it
// again, they are gained, and suspect. But when the new configuration is
// the migration's active deployment alone (it was abandoned), nothing was
// taken from the node: suspecting those ranges then would make every
// replica of a range whose replicas were all leaving suspect at once, with
// no peer left to merge from.
type ownership struct {
	fs  vfs.FS // the store's file system; nil: the real disk
	dir string

	mu     sync.Mutex // guards the fields below
	loaded bool
	known  bool // the file was there: st is what the node held
	st     ownershipState
}

// ownershipState is what ownershipFile holds.
type ownershipState struct {
	// Held is what the node held under the active and target deployments
	// together.
	Held []hashRange
	// Migrating is set when the configuration had a target deployment;
	// Active and Target are then the node's ranges under each.
	Migrating      bool        `json:",omitempty"`
	Active, Target []hashRange `json:",omitempty"`
}

// leaving returns the ranges the node holds under the active deployment
// of a migration and not under its target.
func (a ownershipState) leaving() []hashRange { return subtract(a.Active, a.Target) }

// ownershipOf returns what node self holds under cfg.
func ownershipOf(cfg *config.Config, self string) ownershipState {
	st := ownershipState{Held: selfRanges(cfg, self)}
	if cfg.Target != nil {
		st.Migrating = true
		st.Active = deploymentRanges(cfg, cfg.Active, self)
		st.Target = deploymentRanges(cfg, cfg.Target, self)
	}
	return st
}

// sameMigration reports whether a and b are the same migration as far as
// this node's ranges go.
func (a ownershipState) sameMigration(b ownershipState) bool {
	return a.Migrating && b.Migrating && slices.Equal(a.Active, b.Active) && slices.Equal(a.Target, b.Target)
}

// abandonedBy reports whether next is a's active deployment alone, as far
// as this node's ranges go: the migration was abandoned (or the node was
// added back, and that promoted, without it: which the coordinator allows
// only when forced, as the node could not report a pass).
func (a ownershipState) abandonedBy(next ownershipState) bool {
	return a.Migrating && !next.Migrating && slices.Equal(a.Active, next.Held)
}

// loadLocked reads the file once.
func (o *ownership) loadLocked() {
	if o.loaded {
		return
	}
	o.loaded = true
	fs := o.fs
	if fs == nil {
		fs = vfs.Default
	}
	b, err := readFile(fs, fs.PathJoin(o.dir, ownershipFile))
	if err != nil {
		return // none yet (a new store, or one from before this file)
	}
	var st ownershipState
	if json.Unmarshal(b, &st) != nil {
		return
	}
	o.st, o.known = st, true
}

// gained returns the ranges that node self holds with a peer under cfg and
// did not hold under the last configuration it saved (without the ranges
// it was leaving, unless cfg is that same migration); nil when none was
// ever saved.
func (o *ownership) gained(cfg *config.Config, self string) []hashRange {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loadLocked()
	if !o.known {
		return nil
	}
	held := o.st.Held
	if next := ownershipOf(cfg, self); !o.st.sameMigration(next) && !o.st.abandonedBy(next) {
		held = subtract(held, o.st.leaving())
	}
	return subtract(replicatedRanges(cfg, self), held)
}

// save remembers the ranges node self holds under cfg, when they changed.
// A failure is logged: the node then may not know, after a restart, which
// ranges it comes back to.
func (o *ownership) save(cfg *config.Config, self string, logger *slog.Logger) {
	st := ownershipOf(cfg, self)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.loadLocked()
	if o.known && reflect.DeepEqual(o.st, st) {
		return
	}
	b, err := json.Marshal(st)
	if err == nil {
		fs := o.fs
		if fs == nil {
			fs = vfs.Default
		}
		err = writeFileAtomic(fs, o.dir, ownershipFile, b)
	}
	if err != nil {
		logger.Error("cannot save the ranges this node holds: after a restart it may trust records of ranges it was out of",
			"file", filepath.Join(o.dir, ownershipFile), "err", fmt.Errorf("saving: %w", err))
		return
	}
	o.st, o.known = st, true
}
