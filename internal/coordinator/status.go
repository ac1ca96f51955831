package coordinator

import "time"

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
	SyncedEpoch       int64     `json:"synced_epoch"` // of its last clean repair pass; -1 none
	PeersDown         []string  `json:"peers_down,omitempty"`
	ConfigEpoch       int64     `json:"config_epoch"`
	LastSeen          time.Time `json:"last_seen,omitempty"`
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
