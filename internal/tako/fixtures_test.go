package tako

import (
	"time"

	"github.com/takodb/tako/internal/coordinator"
	"github.com/takodb/tako/internal/httpapi"
)

// statusFixture is a coordinator's status with three nodes, n3 down, in
// the middle of a migration.
func statusFixture() coordinator.Status {
	return coordinator.Status{
		Coordinator: "c1", Epoch: 7, GeneratedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Active: "local", Target: "local6",
		Deployments: []coordinator.DeploymentStatus{
			{Name: "local", Role: "active", BucketsPerKey: 2, Buckets: []coordinator.BucketStatus{
				{Name: "b1", Nodes: []string{"n1", "n2"}, Share: 0.6},
				{Name: "b2", Nodes: []string{"n3"}, Share: 0.4},
			}},
			{Name: "local6", Role: "target", BucketsPerKey: 1, Buckets: []coordinator.BucketStatus{
				{Name: "b1", Nodes: []string{"n1", "n2", "n3"}, Share: 1},
			}},
		},
		Nodes: []coordinator.NodeStatus{
			{ID: "n1", Bucket: "b1", State: "up", Version: "v1.0.0", UptimeSeconds: 11_560, Keys: 1042, DiskBytes: 12_897_485,
				RequestsPerSecond: 4.5, RepairProgress: 0.37, PeersDown: []string{"n3"}},
			{ID: "n2", Bucket: "b1", State: "up", Version: "v1.0.0", UptimeSeconds: 51 * 3600, Keys: 99, DiskBytes: 3 << 29,
				RequestsPerSecond: 0.2, RepairProgress: 1},
			{ID: "n3", Bucket: "b2", State: "down", Error: "connection refused"},
		},
		Migration: &coordinator.MigrationProgress{NodesSynced: 3, NodesTotal: 5},
		NodesDown: 1,
	}
}

// placementFixture is a key with a replica of every kind: newest, stale,
// deleted, missing and failing.
func placementFixture() httpapi.Placement {
	return httpapi.Placement{Key: "k", Hash: 1, Deployments: []httpapi.DeploymentPlacement{
		{Name: "local", Role: "active", Buckets: []httpapi.BucketPlacement{
			{Name: "b1", Nodes: []httpapi.ReplicaState{
				{ID: "n1", Binary: "h:1", Found: true, Timestamp: 2000},
				{ID: "n2", Binary: "h:2", Found: true, Timestamp: 1000},
			}},
		}},
		{Name: "local6", Role: "target", Buckets: []httpapi.BucketPlacement{
			{Name: "b6", Nodes: []httpapi.ReplicaState{
				{ID: "n11", Binary: "h:11", Found: true, Timestamp: 3000, Deleted: true},
				{ID: "n12", Binary: "h:12"},
				{ID: "n13", Binary: "h:13", Error: "connection refused"},
			}},
		}},
	}}
}
