package coord

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
)

// Roles of a deployment in a Location.
const (
	RoleActive = "active"
	RoleTarget = "target"
)

// Location is where a key lives and what each of its replicas holds: what
// GET /where/KEY, client.Client.Where and tako where show.
type Location struct {
	// Key is the key asked about.
	Key []byte
	// Hash is the key's position on the hash ring.
	Hash uint32
	// Deployments are the active deployment, then the target if any.
	Deployments []DeploymentLocation
}

// DeploymentLocation is where one deployment places a key.
type DeploymentLocation struct {
	// Name is the deployment's name; Role is RoleActive or RoleTarget.
	Name, Role string
	// Buckets are the key's buckets in the deployment, in ring order (the
	// primary bucket first).
	Buckets []BucketLocation
}

// BucketLocation is one of a key's buckets and what its nodes hold.
type BucketLocation struct {
	// Name is the bucket's name.
	Name string
	// Replicas are the bucket's nodes, in configuration order.
	Replicas []ReplicaLocation
}

// ReplicaLocation is what one replica holds of a key.
type ReplicaLocation struct {
	// Node is the replica.
	Node config.Node
	// Found reports that the replica has a record (a value or a
	// tombstone); Record is it, without its value.
	Found  bool
	Record record.Record
	// BrokenTimestamp says why the record's timestamp breaks the rule
	// every timestamp must follow to come in (Env.Stored): only a purge
	// removes such a record. Empty when it follows the rule.
	BrokenTimestamp string
	// Err is why the replica gave no answer; nil when it answered.
	Err error
}

// AskLocal returns what one node's own store holds of key, without a
// read-through, repair or quorum: the question Locate asks each replica.
// Its errors name the replica.
type AskLocal func(ctx context.Context, nd config.Node, key []byte) (rec record.Record, found bool, err error)

// Locate asks every replica of key under cfg, in the active deployment
// and the target if any, for its own record (ask), each once and at once,
// each bounded by timeout, and lays the answers out by deployment and
// bucket. stored judges each record's timestamp (Env.Stored). Nothing is
// repaired. A replica that fails shows its error; Locate fails only when
// ctx ends first.
func Locate(ctx context.Context, cfg *config.Config, key []byte, timeout time.Duration, ask AskLocal, stored func(ts int64) error) (Location, error) {
	nodes := cfg.Replicas(nil, key)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answers := make([]ReplicaLocation, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			a := ReplicaLocation{Node: nd}
			rec, found, err := ask(actx, nd, key)
			switch {
			case err != nil:
				a.Err = err
			case found:
				a.Found, a.Record = true, record.Record{Timestamp: rec.Timestamp, Tombstone: rec.Tombstone, ExpiresAt: rec.ExpiresAt}
				if err := stored(rec.Timestamp); err != nil {
					a.BrokenTimestamp = err.Error()
				}
			}
			answers[i] = a
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Location{}, fmt.Errorf("where %q: %w", key, err)
	}
	byID := make(map[string]ReplicaLocation, len(answers))
	for _, a := range answers {
		byID[a.Node.ID] = a
	}
	loc := Location{Key: key, Hash: keyhash.Sum(key)}
	loc.Deployments = append(loc.Deployments, locateIn(cfg.Active, RoleActive, loc.Hash, byID))
	if cfg.Target != nil {
		loc.Deployments = append(loc.Deployments, locateIn(cfg.Target, RoleTarget, loc.Hash, byID))
	}
	return loc, nil
}

// locateIn lays the answers out by the key's buckets in d, in ring order.
func locateIn(d *config.Deployment, role string, hash uint32, byID map[string]ReplicaLocation) DeploymentLocation {
	dl := DeploymentLocation{Name: d.Name, Role: role}
	for _, bi := range d.Ring.LookupHash(nil, hash, d.BucketsPerKey) {
		b := d.Buckets[bi]
		bl := BucketLocation{Name: b.Name, Replicas: make([]ReplicaLocation, 0, len(b.Nodes))}
		for _, nd := range b.Nodes {
			bl.Replicas = append(bl.Replicas, byID[nd.ID])
		}
		dl.Buckets = append(dl.Buckets, bl)
	}
	return dl
}
