package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/takodb/tako/internal/httpapi"
)

// The Node serves POST /snapshot on its HTTP port.
var _ httpapi.Snapshotter = (*Node)(nil)

// Snapshot makes a consistent copy of the node's store in dir, on the
// node's machine (the store's file system): a Pebble checkpoint, hard
// links to the store's immutable files where the file system has them,
// so near instant and small, with every write the node acknowledged
// before it. The copy also holds the node's record of the ranges it held
// (TAKO-OWNED). To bring it back: stop the node, put the copy in place of
// its data directory, and start the node once with -recover (its data is
// older than its peers': deletes made since must not come back);
// docs/operations.md. A node that recovers refuses: its store may lack
// data.
func (n *Node) Snapshot(ctx context.Context, dir string) (httpapi.SnapshotResult, error) {
	if n.Recovering() {
		return httpapi.SnapshotResult{}, fmt.Errorf("%w: node %s is recovering data it may lack: a snapshot of it now would lack it too; try again once /health says ok", httpapi.ErrUnavailable, n.id)
	}
	if _, err := n.fs.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return httpapi.SnapshotResult{}, fmt.Errorf("%w: %s exists on node %s: give a directory that does not exist yet", httpapi.ErrBadRequest, dir, n.id)
	}
	start := time.Now()
	if err := n.store.Checkpoint(ctx, dir); err != nil {
		return httpapi.SnapshotResult{}, err
	}
	owned, err := readFile(n.fs, n.fs.PathJoin(n.dataDir, ownershipFile))
	switch {
	case err == nil:
		if err := writeFileAtomic(n.fs, dir, ownershipFile, owned); err != nil {
			return httpapi.SnapshotResult{}, fmt.Errorf("snapshot: copying %s: %w", ownershipFile, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return httpapi.SnapshotResult{}, fmt.Errorf("snapshot: reading %s: %w", ownershipFile, err)
	}
	res := httpapi.SnapshotResult{Node: n.id, Dir: dir, Keys: int64(n.store.Stats().Keys), TookMs: float64(time.Since(start).Microseconds()) / 1000}
	n.logger.Info("snapshot made: a consistent copy of the store; to bring it back, put it in place of the data directory and start the node once with -recover",
		"node", n.id, "dir", dir, "keys", res.Keys, "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}
