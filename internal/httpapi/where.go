package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/takodb/tako/internal/coord"
)

// Locator is what a Backend may implement to serve GET /where/KEY: where a
// key lives and what each of its replicas holds. A Backend that does not
// implement it answers 404 on /where/.
type Locator interface {
	// Where asks every replica of key for its own record (no quorum, no
	// read repair) and reports each answer, or why there is none.
	Where(ctx context.Context, key []byte) (Placement, error)
}

// Placement is the answer of GET /where/KEY (JSON).
type Placement struct {
	// Key is the key asked about.
	Key string `json:"key"`
	// Hash is the key's position on the hash ring (keyhash.Sum).
	Hash uint32 `json:"hash"`
	// Deployments lists the active deployment, then the target if any.
	Deployments []DeploymentPlacement `json:"deployments"`
}

// DeploymentPlacement is where one deployment places a key.
type DeploymentPlacement struct {
	// Name is the deployment's name.
	Name string `json:"name"`
	// Role is "active" or "target".
	Role string `json:"role"`
	// Buckets are the key's buckets, in the order the ring gives them.
	Buckets []BucketPlacement `json:"buckets"`
}

// BucketPlacement is one bucket of a key and what its nodes hold.
type BucketPlacement struct {
	// Name is the bucket's name.
	Name string `json:"name"`
	// Nodes are the bucket's nodes, in configuration order.
	Nodes []ReplicaState `json:"nodes"`
}

// ReplicaState is what one replica holds of a key.
type ReplicaState struct {
	// ID is the node's id.
	ID string `json:"id"`
	// Binary is the node's binary protocol address, host:port.
	Binary string `json:"binary"`
	// Found reports that the replica has a record of the key (a value or
	// a tombstone).
	Found bool `json:"found"`
	// Timestamp is the record's timestamp (microseconds since the Unix
	// epoch); 0 when not found.
	Timestamp int64 `json:"timestamp"`
	// Deleted reports that the record is a tombstone.
	Deleted bool `json:"deleted"`
	// ExpiresAt is when the record's value expires (microseconds since
	// the Unix epoch); absent when it never does.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// BrokenTimestamp says why the record's timestamp breaks the rule
	// that every timestamp follows to come in (1 ≤ ts ≤ now +
	// max_timestamp_ahead); empty when it follows it. Such a record was
	// stored before the rule, or by a peer whose clock was wrong: it is
	// served, never spread, and only a purge removes it.
	BrokenTimestamp string `json:"broken_timestamp,omitempty"`
	// Error says why the replica gave no answer; empty when it answered.
	Error string `json:"error"`
}

// Purger is what a Backend implements to serve POST /purge/KEY (admin
// role): remove KEY from every replica, whatever its versions.
type Purger interface {
	Purge(ctx context.Context, key []byte) (PurgeResult, error)
}

// PurgeResult says what a purge did.
type PurgeResult struct {
	// Held reports that a replica held a record of the key.
	Held bool `json:"held"`
	// Removed are the ids of the replicas that held a record of the key,
	// when the backend knows them (a node does; a proxy, which asks one
	// node to purge, does not).
	Removed []string `json:"removed,omitempty"`
	// Absent are the ids of the replicas that held none, likewise.
	Absent []string `json:"absent,omitempty"`
}

// The roles of DeploymentPlacement.Role.
const (
	RoleActive = coord.RoleActive
	RoleTarget = coord.RoleTarget
)

// PlacementOf is the answer of GET /where/KEY for what coord.Locate found.
func PlacementOf(loc coord.Location) Placement {
	out := Placement{Key: string(loc.Key), Hash: loc.Hash}
	for _, d := range loc.Deployments {
		dp := DeploymentPlacement{Name: d.Name, Role: d.Role}
		for _, b := range d.Buckets {
			bp := BucketPlacement{Name: b.Name, Nodes: make([]ReplicaState, 0, len(b.Replicas))}
			for _, r := range b.Replicas {
				s := ReplicaState{ID: r.Node.ID, Binary: r.Node.BinaryAddr(), Found: r.Found,
					Timestamp: r.Record.Timestamp, Deleted: r.Record.Tombstone, ExpiresAt: r.Record.ExpiresAt, BrokenTimestamp: r.BrokenTimestamp}
				if r.Err != nil {
					s.Error = r.Err.Error()
				}
				bp.Nodes = append(bp.Nodes, s)
			}
			dp.Buckets = append(dp.Buckets, bp)
		}
		out.Deployments = append(out.Deployments, dp)
	}
	return out
}

// serveWhere answers GET|HEAD /where/KEY from the backend's Locator.
func (h *Handler) serveWhere(w http.ResponseWriter, r *http.Request, loc Locator, key string) {
	if !validKey(w, key) {
		return
	}
	p, err := loc.Where(r.Context(), []byte(key))
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	body, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		textReply(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// routePurge handles the /purge/ prefix: 404 when the backend cannot
// purge, 405 for a method other than POST; else the purge, answered with
// what it did as JSON.
func (h *Handler) routePurge(w http.ResponseWriter, r *http.Request, key string) {
	pg, ok := h.backend.(Purger)
	switch {
	case !ok:
		textReply(w, http.StatusNotFound, "no such endpoint: this server does not serve /purge/KEY")
		return
	case r.Method != http.MethodPost:
		methodNotAllowed(w, "POST")
		return
	case !validKey(w, key):
		return
	}
	res, err := pg.Purge(r.Context(), []byte(key))
	if err != nil {
		h.backendError(w, r, err)
		return
	}
	jsonReply(w, res)
}

// jsonReply answers 200 with v as JSON, a line.
func jsonReply(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		textReply(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
}

// routeWhere handles the /where/ prefix: 404 when the backend cannot
// locate keys, 405 for a method other than GET or HEAD.
func (h *Handler) routeWhere(w http.ResponseWriter, r *http.Request, key string) {
	loc, ok := h.backend.(Locator)
	switch {
	case !ok:
		textReply(w, http.StatusNotFound, "no such endpoint: this server does not serve /where/KEY")
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		methodNotAllowed(w, "GET, HEAD")
	default:
		h.serveWhere(w, r, loc, key)
	}
}
