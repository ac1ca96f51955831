package httpapi

import (
	"context"
	"net/http"
	"path/filepath"
)

// Snapshotter is what a Backend implements to serve POST /snapshot (admin
// role): a copy of one node's store made on the node's own machine.
type Snapshotter interface {
	// Snapshot makes a consistent copy of the node's store in dir, an
	// absolute path on the node's machine that must not exist. An error
	// that wraps ErrBadRequest is the caller's (dir), ErrUnavailable the
	// node's state (it recovers).
	Snapshot(ctx context.Context, dir string) (SnapshotResult, error)
}

// SnapshotResult says what a snapshot made.
type SnapshotResult struct {
	// Node is the node's id, Dir where the copy is.
	Node string `json:"node"`
	Dir  string `json:"dir"`
	// Keys is about how many records the copy holds.
	Keys int64 `json:"keys"`
	// TookMs is how long it took, in milliseconds.
	TookMs float64 `json:"took_ms"`
}

// routeSnapshot handles /snapshot: 404 when the backend cannot snapshot,
// 405 for a method other than POST, 400 without ?dir=ABSOLUTE_PATH; else
// the snapshot, answered with what it made as JSON.
func (h *Handler) routeSnapshot(w http.ResponseWriter, r *http.Request) {
	sn, ok := h.backend.(Snapshotter)
	switch {
	case !ok:
		textReply(w, http.StatusNotFound, "no such endpoint: this server does not serve /snapshot (a node does)")
		return
	case r.Method != http.MethodPost:
		methodNotAllowed(w, "POST")
		return
	}
	dir := r.URL.Query().Get("dir")
	if dir == "" || !filepath.IsAbs(dir) {
		textReply(w, http.StatusBadRequest, "want ?dir=PATH: an absolute path on the node's machine, of a directory that does not exist yet")
		return
	}
	res, err := sn.Snapshot(r.Context(), filepath.Clean(dir))
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	jsonReply(w, res)
}
