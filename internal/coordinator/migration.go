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

// Migration safety. While a migration is under way (the served
// configuration has a target deployment), a reload that promotes the target
// (the old target becomes the active one and the target goes away), or that
// drops nodes from the cluster, is refused until the migration has converged:
// every node of the running configuration reports (tako_repair_synced_epoch
// on its /metrics) a clean background repair pass with every peer that
// started under the configuration being served, so every key written
// before it is on all of its target replicas, and every key written since
// is on a quorum of them. Creating the file ForceFile in the state
// directory lets the next reload through regardless, once.

// ForceFile is the name of the one-shot file, in the coordinator's state
// directory, that lets the next reload promote or drop nodes without
// waiting for the migration to converge.
const ForceFile = "force-next-reload"

// ErrNotConverged is returned by Reload when it refuses a promotion or the
// removal of nodes because the migration has not converged.
var ErrNotConverged = errors.New("coordinator: the migration has not converged")

// risky reports what next does that needs the migration converged first.
func risky(cur, next *config.Config) string {
	if cur.Target == nil {
		// No migration under way: nothing to converge. A change that moves
		// data without one is what -check warns about.
		return ""
	}
	var what []string
	if cur.Target != nil && next.Target == nil && next.Active.Name == cur.Target.Name {
		what = append(what, fmt.Sprintf("promotes deployment %q", cur.Target.Name))
	}
	if dropped := droppedNodes(cur, next); len(dropped) > 0 {
		what = append(what, "drops nodes "+strings.Join(dropped, ", "))
	}
	return strings.Join(what, " and ")
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

// checkChange refuses a reload from cur to next that promotes the target
// or drops nodes while the running configuration has not converged, unless
// the force file exists (it is consumed).
func (s *Server) checkChange(cur *served, next *config.Config) error {
	what := risky(cur.cfg, next)
	if what == "" {
		return nil
	}
	force := filepath.Join(s.stateDir, ForceFile)
	if _, err := os.Stat(force); err == nil {
		os.Remove(force)
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
