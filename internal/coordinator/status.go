package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/takodb/tako/internal/config"
)

// Status is the cluster as the coordinator sees it: what GET /status
// answers (JSON) and the page at GET / draws. The coordinator collects it
// from every node's /metrics.
type Status struct {
	// Coordinator is the id of the coordinator that answered.
	Coordinator string `json:"coordinator"`
	// Epoch is the epoch of the configuration it serves.
	Epoch int64 `json:"epoch"`
	// GeneratedAt is when the coordinator assembled this status.
	GeneratedAt time.Time `json:"generated_at"`
	// Active and Target name the deployments; Target is empty when no
	// migration is under way.
	Active string `json:"active_deployment"`
	Target string `json:"target_deployment,omitempty"`
	// Deployments lists the active deployment, then the target.
	Deployments []DeploymentStatus `json:"deployments"`
	// Nodes lists every node of the configuration, in configuration order.
	Nodes []NodeStatus `json:"nodes"`
	// Migration is set while a target deployment exists.
	Migration *MigrationProgress `json:"migration,omitempty"`
	// NodesDown counts the nodes whose state is "down".
	NodesDown int `json:"nodes_down"`
}

// DeploymentStatus is one deployment of the configuration.
type DeploymentStatus struct {
	Name          string         `json:"name"`
	Role          string         `json:"role"` // "active" or "target"
	BucketsPerKey int            `json:"buckets_per_key"`
	Buckets       []BucketStatus `json:"buckets"`
}

// BucketStatus is one bucket: its nodes and the arcs of the ring it owns.
type BucketStatus struct {
	Name  string   `json:"name"`
	Nodes []string `json:"nodes"`
	// Share is the fraction of the hash space whose first bucket is this
	// one (the shares of a deployment's buckets sum to 1).
	Share float64 `json:"share"`
	// Arcs are the ranges of the 32-bit hash space, [start, end), whose
	// first bucket is this one; the page draws them as a ring.
	Arcs [][2]uint64 `json:"arcs"`
}

// NodeStatus is one node as the coordinator last saw it.
type NodeStatus struct {
	ID          string   `json:"id"`
	Deployments []string `json:"deployments"`
	Bucket      string   `json:"bucket"`
	HTTP        string   `json:"http,omitempty"` // host:port; empty without an HTTP port
	Binary      string   `json:"binary"`
	// State is "up", "recovering" (up, bringing back data it may have
	// lost), "down" (its /metrics did not answer) or "unknown" (it has no
	// HTTP port to ask).
	State string `json:"state"`
	// Error says why the node is down or unknown.
	Error string `json:"error,omitempty"`
	// The fields below come from the node's last answer; zero when down.
	Version           string    `json:"version,omitempty"`
	UptimeSeconds     float64   `json:"uptime_seconds,omitempty"`
	Keys              int64     `json:"keys"`
	DiskBytes         int64     `json:"disk_bytes"`
	RequestsPerSecond float64   `json:"requests_per_second"`
	RepairProgress    float64   `json:"repair_progress"` // 0..1, of the pass under way (1 between passes)
	RepairPasses      int64     `json:"repair_passes"`
	SyncedEpoch       int64     `json:"synced_epoch"` // of its last clean repair pass; -1 none, or not known
	PeersDown         []string  `json:"peers_down,omitempty"`
	ConfigEpoch       int64     `json:"config_epoch"`
	LastSeen          time.Time `json:"last_seen,omitzero"` // when it last answered, kept while it is down
	// Refill is set while the node streams back from its peers the ranges
	// it lost (tako_refill_active 1), or while it is recovering with bytes
	// still to come; nil otherwise.
	Refill *RefillProgress `json:"refill,omitempty"`
}

// RefillProgress is how far a node's refill has come, as the node
// estimates it: the remaining amounts are estimates, not promises.
type RefillProgress struct {
	BytesRemaining int64   `json:"bytes_remaining"`
	KeysRemaining  int64   `json:"keys_remaining"`
	BytesPerSecond float64 `json:"bytes_per_second"` // received, over the node's last 10 s
	ETASeconds     float64 `json:"eta_seconds"`      // 0 when the node cannot tell
	ReceivedBytes  int64   `json:"received_bytes"`   // since the node started
	ReceivedKeys   int64   `json:"received_keys"`    // since the node started
}

// MigrationProgress is how far a migration has converged.
type MigrationProgress struct {
	// NodesSynced counts the nodes whose last clean repair pass ran under
	// the served epoch; Converged is true when that is every node, and the
	// target may be promoted.
	NodesSynced int  `json:"nodes_synced"`
	NodesTotal  int  `json:"nodes_total"`
	Converged   bool `json:"converged"`
}

// Node states, the values of NodeStatus.State.
const (
	stateUp         = "up"
	stateRecovering = "recovering"
	stateDown       = "down"
	stateUnknown    = "unknown"
)

// hashSpace is the size of the ring's 32-bit hash space.
const hashSpace = 1 << 32

// serveStatus answers GET /status: the cluster as the last scrape of the
// nodes saw it, as JSON.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	body, err := json.MarshalIndent(s.status(r.Context()), "", "  ")
	if err != nil {
		http.Error(w, "encoding the status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// status assembles the Status of the served configuration from the last
// scrape of its nodes (scraping first if there was none yet).
func (s *Server) status(ctx context.Context) Status {
	cfg, epoch := s.Current()
	seen := s.collector.snapshot(ctx)
	st := Status{
		Coordinator: s.id,
		Epoch:       epoch,
		GeneratedAt: s.wall(),
		Active:      cfg.Active.Name,
		Deployments: []DeploymentStatus{deploymentStatus(cfg.Active, "active")},
	}
	if cfg.Target != nil {
		st.Target = cfg.Target.Name
		st.Deployments = append(st.Deployments, deploymentStatus(cfg.Target, "target"))
	}
	for _, n := range cfg.Nodes() {
		ns := nodeStatus(cfg, n, seen)
		if ns.State == stateDown {
			st.NodesDown++
		}
		st.Nodes = append(st.Nodes, ns)
	}
	if cfg.Target != nil {
		st.Migration = migrationProgress(st.Nodes, epoch)
	}
	return st
}

// migrationProgress counts the nodes whose last clean repair pass ran
// under epoch.
func migrationProgress(nodes []NodeStatus, epoch int64) *MigrationProgress {
	p := &MigrationProgress{NodesTotal: len(nodes)}
	for _, n := range nodes {
		if n.SyncedEpoch >= epoch {
			p.NodesSynced++
		}
	}
	p.Converged = p.NodesSynced == p.NodesTotal
	return p
}

// nodeStatus is node n of cfg as seen says.
func nodeStatus(cfg *config.Config, n config.Node, seen map[string]nodeSeen) NodeStatus {
	ns := NodeStatus{
		ID:          n.ID,
		Deployments: deploymentsOf(cfg, n.ID),
		Bucket:      n.Bucket,
		HTTP:        n.HTTPAddr(),
		Binary:      n.BinaryAddr(),
		SyncedEpoch: -1,
	}
	got, ok := seen[n.ID]
	switch {
	case n.HTTPPort == 0 || errors.Is(got.err, errNoHTTP):
		ns.State, ns.Error = stateUnknown, errNoHTTP.Error()
		return ns
	case !ok:
		ns.State, ns.Error = stateUnknown, errNotAsked.Error()
		return ns
	case got.err != nil:
		ns.State, ns.Error, ns.LastSeen = stateDown, got.err.Error(), got.lastSeen
		return ns
	}
	fillReading(&ns, got)
	return ns
}

// fillReading sets the fields of ns that come from the node's last answer.
func fillReading(ns *NodeStatus, got nodeSeen) {
	r := got.reading
	ns.State = stateUp
	if r.recovering {
		ns.State = stateRecovering
	}
	ns.Version = r.version
	if r.startTime > 0 {
		start := time.UnixMicro(int64(r.startTime * 1e6))
		ns.UptimeSeconds = max(got.at.Sub(start).Seconds(), 0)
	}
	ns.Keys, ns.DiskBytes = r.keys, r.diskBytes
	ns.RequestsPerSecond = got.rate
	ns.RepairProgress, ns.RepairPasses = r.repairProgress, r.repairPasses
	ns.SyncedEpoch = r.syncedEpoch
	ns.PeersDown = r.peersDown
	ns.ConfigEpoch = r.configEpoch
	ns.LastSeen = got.lastSeen
	ns.Refill = refillProgress(r)
}

// refillProgress is the refill of a node that streams one, or that is
// recovering with bytes still to come; nil for any other node.
func refillProgress(r nodeReading) *RefillProgress {
	f := r.refill
	if !f.active && (!r.recovering || f.bytesRemaining <= 0) {
		return nil
	}
	return &RefillProgress{
		BytesRemaining: f.bytesRemaining,
		KeysRemaining:  f.keysRemaining,
		BytesPerSecond: f.bytesPerSecond,
		ETASeconds:     f.etaSeconds,
		ReceivedBytes:  f.receivedBytes,
		ReceivedKeys:   f.receivedKeys,
	}
}

// deploymentsOf names the deployments of the running cluster (active, then
// target) that list node id.
func deploymentsOf(cfg *config.Config, id string) []string {
	var out []string
	for _, d := range []*config.Deployment{cfg.Active, cfg.Target} {
		if d != nil && hasNodeID(d, id) {
			out = append(out, d.Name)
		}
	}
	return out
}

// hasNodeID reports whether deployment d lists node id.
func hasNodeID(d *config.Deployment, id string) bool {
	for _, b := range d.Buckets {
		for _, n := range b.Nodes {
			if n.ID == id {
				return true
			}
		}
	}
	return false
}

// deploymentStatus describes d, its buckets and the arcs of the ring each
// one is the first bucket of.
func deploymentStatus(d *config.Deployment, role string) DeploymentStatus {
	arcs := firstBucketArcs(d)
	ds := DeploymentStatus{Name: d.Name, Role: role, BucketsPerKey: d.BucketsPerKey}
	for i, b := range d.Buckets {
		bs := BucketStatus{Name: b.Name, Nodes: []string{}, Arcs: arcs[i]}
		for _, n := range b.Nodes {
			bs.Nodes = append(bs.Nodes, n.ID)
		}
		var width uint64
		for _, a := range arcs[i] {
			width += a[1] - a[0]
		}
		bs.Share = float64(width) / hashSpace
		ds.Buckets = append(ds.Buckets, bs)
	}
	return ds
}

// firstBucketArcs returns, by index of d.Buckets, the arcs [start, end) of
// the 32-bit hash space whose first bucket on d's ring is that bucket, in
// increasing order, touching arcs merged. A hash h belongs to the first
// point at or above it, so the boundaries b of the ring cut the space into
// the arcs [b[i-1]+1, b[i]+1), each owned by the bucket at b[i], and the
// arcs below b[0] and above the last boundary both belong to the bucket at
// b[0].
func firstBucketArcs(d *config.Deployment) [][][2]uint64 {
	out := make([][][2]uint64, len(d.Buckets))
	for i := range out {
		out[i] = [][2]uint64{}
	}
	add := func(b int, start, end uint64) {
		if start >= end {
			return
		}
		if n := len(out[b]); n > 0 && out[b][n-1][1] == start {
			out[b][n-1][1] = end
			return
		}
		out[b] = append(out[b], [2]uint64{start, end})
	}
	bounds := d.Ring.Boundaries()
	if len(bounds) == 0 {
		add(0, 0, hashSpace)
		return out
	}
	var buf [1]int
	owner := func(h uint32) int { return d.Ring.LookupHash(buf[:0], h, 1)[0] }
	start := uint64(0)
	for _, h := range bounds {
		add(owner(h), start, uint64(h)+1)
		start = uint64(h) + 1
	}
	add(owner(bounds[0]), start, hashSpace)
	return out
}
