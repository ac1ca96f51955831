package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
)

// Migration safety. Two rules keep a reload from losing keys.
//
// The destructive rule: with no migration under way (the served
// configuration has no target deployment), a reload after which some keys
// would keep fewer of their current replicas than the new write quorum needs
// (Plan's BelowQuorum, LosesAll among it) is refused: nothing would copy
// those keys to their new replicas first, so they would read as missing, or
// be lost with the nodes that leave. Such a change must be a migration: the
// new layout as target_deployment, filled by background repair, then
// promoted. During a migration, a reload whose active deployment is neither
// the active nor the target deployment served (compared by where they place
// keys, not by name) is judged by the same rule against the configuration
// served.
//
// The convergence rule: while a migration is under way, a reload that
// promotes the target (the old target becomes the active one), or that
// drops nodes from the cluster, is refused until the migration has
// converged: every node of the running configuration reports
// (tako_repair_synced_epoch on its /metrics) a clean background repair pass
// with every peer that started under the configuration being served, so
// every key written before it is on all of its target replicas, and every
// key written since is on a quorum of them.
//
// Creating the file ForceFile in the state directory lets the next reload
// that either rule would refuse through regardless, once.

// ForceFile is the name of the one-shot file, in the coordinator's state
// directory, that lets the next reload through that the destructive or the
// convergence rule would refuse (it is removed as it is used).
const ForceFile = "force-next-reload"

// ErrNotConverged is returned by Reload when it refuses a promotion or the
// removal of nodes because the migration has not converged.
var ErrNotConverged = errors.New("coordinator: the migration has not converged")

// ErrDestructive is returned (wrapped) by Reload when it refuses a change
// that would leave some keys with fewer of their current replicas than the
// new write quorum needs, without a migration to copy them first.
var ErrDestructive = errors.New("coordinator: the change would leave keys without a write quorum of their current replicas")

// risky reports what next does that needs the migration converged first.
func risky(cur, next *config.Config) string {
	if cur.Target == nil {
		// No migration under way: nothing to converge. destructive judges
		// what such a change moves.
		return ""
	}
	var what []string
	// A promotion: the target becomes the active deployment, by name (with
	// no new target) or by where it places keys (under any name).
	byName := next.Target == nil && next.Active.Name == cur.Target.Name
	byLayout := sameLayout(next.Active, cur.Target) && !sameLayout(next.Active, cur.Active)
	if byName || byLayout {
		what = append(what, fmt.Sprintf("promotes deployment %q", cur.Target.Name))
	}
	if dropped := droppedNodes(cur, next); len(dropped) > 0 {
		what = append(what, "drops nodes "+strings.Join(dropped, ", "))
	}
	return strings.Join(what, " and ")
}

// destructive returns the plan of a change from cur to next that the
// destructive rule refuses, and nil for one it accepts: with no migration
// under way, any change after which some keys keep fewer of their current
// replicas than the new write quorum needs; during a migration, such a
// change whose active deployment places keys neither as the active nor as
// the target deployment of cur does.
func destructive(cur, next *config.Config) *PlanReport {
	if cur.Target != nil && (sameLayout(next.Active, cur.Active) || sameLayout(next.Active, cur.Target)) {
		return nil
	}
	p := Plan(cur, next)
	if p.LosesAll > 0 || p.BelowQuorum > 0 {
		return p
	}
	return nil
}

// sameLayout reports whether deployments a and b place every key on the
// same nodes: the same hash settings and the same buckets, in the same
// order, each with the same nodes (by ID) in the same order. Settings that
// move no key (quorums, timeouts, addresses) do not count.
func sameLayout(a, b *config.Deployment) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.BucketsPerKey != b.BucketsPerKey || a.PointsPerBucket != b.PointsPerBucket || len(a.Buckets) != len(b.Buckets) {
		return false
	}
	for i, x := range a.Buckets {
		y := b.Buckets[i]
		if x.Name != y.Name || len(x.Nodes) != len(y.Nodes) {
			return false
		}
		for j, n := range x.Nodes {
			if n.ID != y.Nodes[j].ID {
				return false
			}
		}
	}
	return true
}

// describeDestructive says in one line what the change from cur to next,
// whose plan is p, would do to the keys, and what to do instead; force is
// the path of the force file.
func describeDestructive(cur, next *config.Config, p *PlanReport, force string) string {
	var b strings.Builder
	if cur.Target != nil {
		fmt.Fprintf(&b, "during the migration from %q to %q, the new active deployment %q places keys as neither does, and ",
			cur.Active.Name, cur.Target.Name, next.Active.Name)
	} else {
		b.WriteString("with no migration under way (no target_deployment), ")
	}
	fmt.Fprintf(&b, "the new file would leave %s of the key space with fewer of its current replicas than the new write quorum needs (%s with none of them; nodes dropped: %s; nodes added: %s); ",
		share(p.BelowQuorum), share(p.LosesAll), orNone(p.Removed), orNone(p.Added))
	if cur.Target != nil {
		fmt.Fprintf(&b, "finish the migration under way first (promote %q once GET /migration says it has converged), then make the change a migration of its own (the new layout as target_deployment, promoted once background repair has filled it)",
			cur.Target.Name)
	} else {
		fmt.Fprintf(&b, "make the change a migration instead: keep active_deployment %q, add the new layout as target_deployment, let background repair fill it (GET /migration says when it has converged), then promote it",
			cur.Active.Name)
	}
	fmt.Fprintf(&b, "; or create %s to force this reload", force)
	return b.String()
}

// share formats a share of the key space as a percentage; a share too
// small to show with one decimal is not shown as 0.
func share(f float64) string {
	if f > 0 && f < 0.0005 {
		return "<0.1%"
	}
	return strconv.FormatFloat(100*f, 'f', 1, 64) + "%"
}

// takeForce removes the force file and reports whether it was there.
func (s *Server) takeForce() (path string, forced bool) {
	path = filepath.Join(s.stateDir, ForceFile)
	if _, err := os.Stat(path); err != nil {
		return path, false
	}
	if err := os.Remove(path); err != nil {
		s.log.Warn("could not remove the force file: it will force the next refused reload too", "force_file", path, "err", err)
	}
	return path, true
}

func droppedNodes(cur, next *config.Config) []string {
	keep := map[string]bool{}
	for _, n := range next.Nodes() {
		keep[n.ID] = true
	}
	var out []string
	for _, n := range cur.Nodes() {
		if !keep[n.ID] {
			out = append(out, n.ID)
		}
	}
	return out
}

// SyncStatus is what one node reports about its repair.
type SyncStatus struct {
	// SyncedEpoch is the epoch of the configuration under which the node
	// last finished a clean repair pass with every peer; -1 when it could
	// not be asked.
	SyncedEpoch int64  `json:"synced_epoch"`
	Error       string `json:"error,omitempty"`
}

// MigrationStatus says how far the running configuration's nodes are in
// sync with each other.
type MigrationStatus struct {
	Epoch     int64                 `json:"epoch"`
	Active    string                `json:"active_deployment"`
	Target    string                `json:"target_deployment,omitempty"`
	Nodes     map[string]SyncStatus `json:"nodes"`
	Synced    int                   `json:"nodes_synced"`
	Converged bool                  `json:"converged"`
}

// migrationStatus asks every node of cfg (over its HTTP port) for the epoch
// of its last clean repair pass.
func migrationStatus(ctx context.Context, cfg *config.Config, epoch int64, client *http.Client, scheme string) MigrationStatus {
	st := MigrationStatus{Epoch: epoch, Active: cfg.Active.Name, Nodes: map[string]SyncStatus{}}
	if cfg.Target != nil {
		st.Target = cfg.Target.Name
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range cfg.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := SyncStatus{SyncedEpoch: -1}
			if n.HTTPPort == 0 {
				s.Error = "the node has no HTTP port to ask"
			} else if e, err := syncedEpoch(ctx, client, scheme+"://"+n.HTTPAddr()+"/metrics"); err != nil {
				s.Error = err.Error()
			} else {
				s.SyncedEpoch = e
			}
			mu.Lock()
			st.Nodes[n.ID] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, s := range st.Nodes {
		if s.SyncedEpoch >= epoch {
			st.Synced++
		}
	}
	st.Converged = st.Synced == len(st.Nodes)
	return st
}

const syncedMetric = "tako_repair_synced_epoch"

// syncedEpoch scrapes the /metrics page at url for syncedMetric.
func syncedEpoch(ctx context.Context, client *http.Client, url string) (int64, error) {
	m, err := scrapeMetrics(ctx, client, url, 2*time.Second)
	if err != nil {
		return 0, err
	}
	v, ok := m.value(syncedMetric)
	if !ok {
		return 0, fmt.Errorf("%s: %s not reported", url, syncedMetric)
	}
	return int64(v), nil
}

// checkChange refuses a reload from cur to next that the destructive rule
// refuses, or that promotes the target or drops nodes while the running
// configuration has not converged, unless the force file exists (it is
// consumed). The error wraps ErrDestructive or ErrNotConverged.
func (s *Server) checkChange(cur *served, next *config.Config) error {
	if p := destructive(cur.cfg, next); p != nil {
		force, forced := s.takeForce()
		what := describeDestructive(cur.cfg, next, p, force)
		if forced {
			s.log.Warn("forced: accepting a reload that leaves keys without a write quorum of their current replicas",
				"change", what, "below_quorum", share(p.BelowQuorum), "loses_all", share(p.LosesAll), "force_file", force)
			return nil
		}
		return fmt.Errorf("%w: %s", ErrDestructive, what)
	}
	what := risky(cur.cfg, next)
	if what == "" {
		return nil
	}
	force, forced := s.takeForce()
	if forced {
		s.log.Warn("forced: accepting a reload without checking that the migration converged", "change", what, "force_file", force)
		return nil
	}
	st := migrationStatus(context.Background(), cur.cfg, cur.epoch, s.httpClient, s.scheme)
	if st.Converged {
		s.log.Info("the migration has converged; accepting the reload", "change", what)
		return nil
	}
	var behind []string
	for id, n := range st.Nodes {
		if n.SyncedEpoch < cur.epoch {
			reason := fmt.Sprintf("last synced at epoch %d", n.SyncedEpoch)
			if n.Error != "" {
				reason = n.Error
			}
			behind = append(behind, id+" ("+reason+")")
		}
	}
	sort.Strings(behind)
	return fmt.Errorf("%w: the new file %s, but %d of %d nodes have not finished a repair pass under epoch %d: %s; wait for them (tako_repair_synced_epoch on their /metrics, or GET /migration here), or create %s to force it",
		ErrNotConverged, what, len(behind), len(st.Nodes), cur.epoch, strings.Join(behind, ", "), force)
}

// PlanReport is what a change of configuration moves, computed from the
// two configurations alone.
type PlanReport struct {
	// Moved is the share of the hash space (0 to 1) whose replica set changes.
	Moved float64
	// Added and Removed are the nodes that join and leave.
	Added, Removed []string
	// LosesAll is the share of the hash space none of whose current
	// replicas stays a replica.
	LosesAll float64
	// BelowQuorum is the share of the hash space where fewer of the current
	// replicas stay than the new write quorum needs.
	BelowQuorum float64
	// Changes counts, per node, the share of the hash space it gains and
	// loses.
	Gains, Loses map[string]float64
}

// Plan compares the replicas of every arc of the hash space under cur and
// next (each with its target, if any: the union a migration serves).
func Plan(cur, next *config.Config) *PlanReport {
	p := &PlanReport{Gains: map[string]float64{}, Loses: map[string]float64{}}
	bounds := []uint32{}
	for _, c := range []*config.Config{cur, next} {
		for _, d := range []*config.Deployment{c.Active, c.Target} {
			if d != nil {
				bounds = append(bounds, d.Ring.Boundaries()...)
			}
		}
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	curIDs := map[string]bool{}
	for _, n := range cur.Nodes() {
		curIDs[n.ID] = true
	}
	for _, n := range next.Nodes() {
		if !curIDs[n.ID] {
			p.Added = append(p.Added, n.ID)
		}
	}
	p.Removed = droppedNodes(cur, next)
	const space = float64(1 << 32)
	arc := func(width float64, h uint32) {
		before := ids(cur.ReplicasOfHash(nil, h))
		after := next.ReplicasOfHash(nil, h)
		afterIDs := ids(after)
		stay := 0
		for id := range before {
			if afterIDs[id] {
				stay++
			} else {
				p.Loses[id] += width / space
			}
		}
		for id := range afterIDs {
			if !before[id] {
				p.Gains[id] += width / space
			}
		}
		if stay != len(before) || len(afterIDs) != len(before) {
			p.Moved += width / space
		}
		if stay == 0 {
			p.LosesAll += width / space
		}
		if stay < next.Active.WriteQuorum.Required(len(next.Active.ReplicasOfHash(nil, h))) {
			p.BelowQuorum += width / space
		}
	}
	arc(float64(bounds[0])+1, bounds[0])
	for i := 1; i < len(bounds); i++ {
		arc(float64(bounds[i]-bounds[i-1]), bounds[i])
	}
	arc(float64(^uint32(0)-bounds[len(bounds)-1]), bounds[0])
	return p
}

func ids(nodes []config.Node) map[string]bool {
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n.ID] = true
	}
	return out
}

// String formats the plan for an operator.
func (p *PlanReport) String() string {
	var b strings.Builder
	pct := func(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) + "%" }
	fmt.Fprintf(&b, "keys whose replicas change: %s of the key space\n", pct(p.Moved))
	fmt.Fprintf(&b, "nodes joining: %s\n", orNone(p.Added))
	fmt.Fprintf(&b, "nodes leaving: %s\n", orNone(p.Removed))
	var names []string
	for id := range p.Gains {
		names = append(names, id)
	}
	for id := range p.Loses {
		if _, ok := p.Gains[id]; !ok {
			names = append(names, id)
		}
	}
	sort.Strings(names)
	for _, id := range names {
		fmt.Fprintf(&b, "  %s gains %s, loses %s of the key space\n", id, pct(p.Gains[id]), pct(p.Loses[id]))
	}
	if p.LosesAll > 0 {
		fmt.Fprintf(&b, "DANGER: %s of the key space would lose every one of its current replicas: add the new layout as a target_deployment first, and promote it once repair has filled it\n", pct(p.LosesAll))
	}
	if p.BelowQuorum > 0 {
		fmt.Fprintf(&b, "WARNING: for %s of the key space fewer current replicas stay than the new write quorum needs: make the change a migration (the new layout as target_deployment), and promote it once repair has filled it\n", pct(p.BelowQuorum))
	}
	if p.LosesAll == 0 && p.BelowQuorum == 0 {
		b.WriteString("safe: every key keeps at least a write quorum of its current replicas\n")
	}
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// serveMigration answers GET /migration: how far every node of the served
// configuration is in sync, as JSON.
func (s *Server) serveMigration(w http.ResponseWriter, r *http.Request) {
	cur := s.cur.Load()
	st := migrationStatus(r.Context(), cur.cfg, cur.epoch, s.httpClient, s.scheme)
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}
