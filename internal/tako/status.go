package tako

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/takodb/tako/internal/coordinator"
)

// Node states of coordinator.NodeStatus.State.
const (
	stateUp         = "up"
	stateRecovering = "recovering"
	stateDown       = "down"
)

func runStatus(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("status", "", `
Asks the coordinator (GET /status: -s is the coordinator's HTTP address, the
coordinators: entry of the configuration) for the cluster as it sees it, and
prints the configuration's epoch and deployments with each bucket's share of
the key space, one row per node (state, version, uptime, keys, disk, requests
per second, progress of the repair pass under way, the peers it cannot
reach), how far a migration has converged, and for a node that refills the
ranges it lost from its peers what is still to come, how fast, and about
how long that takes. Exits 1 when a node is down, saying which, 2 on any
error.

Example:
  tako -s localhost:4700 status`)
	if _, err := r.parseCommand(fs, args, 0, 0); err != nil {
		return err
	}
	st, err := r.fetchStatus(ctx)
	if err != nil {
		return err
	}
	if err := printStatus(r.stdout, st); err != nil {
		return err
	}
	if down := downNodes(st); len(down) > 0 {
		return answerNo("%d of %d nodes down: %s", len(down), len(st.Nodes), strings.Join(down, ", "))
	}
	return nil
}

// fetchStatus asks the coordinator for the cluster's status.
func (r *runner) fetchStatus(ctx context.Context) (coordinator.Status, error) {
	var st coordinator.Status
	err := r.exchange(ctx, request{method: http.MethodGet, path: "/status"}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
				return fmt.Errorf("%s answered /status with something else than a coordinator's status: %w", r.server, err)
			}
			return nil
		case http.StatusNotFound:
			return fmt.Errorf("%s is not a coordinator: use -s COORDINATOR_HOST:PORT", r.server)
		}
		return r.unexpected(resp)
	})
	return st, err
}

// downNodes are the ids of the nodes that are down.
func downNodes(st coordinator.Status) []string {
	var down []string
	for _, n := range st.Nodes {
		if n.State == stateDown {
			down = append(down, n.ID)
		}
	}
	return down
}

// printStatus prints the status: a header, the deployments, a table of
// the nodes, the migration, why each node that is down is, and how far
// each refill has come.
func printStatus(out io.Writer, st coordinator.Status) error {
	fmt.Fprintln(out, statusHeader(st))
	for _, d := range st.Deployments {
		fmt.Fprintln(out, deploymentLine(d))
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tBUCKET\tSTATE\tVERSION\tUPTIME\tKEYS\tDISK\tREQ/S\tREPAIR\tPEERS DOWN")
	for _, n := range st.Nodes {
		fmt.Fprintln(tw, nodeRow(n))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the status: %w", err)
	}
	if m := st.Migration; m != nil {
		fmt.Fprintf(out, "\nmigration: %d of %d nodes synced, %s\n", m.NodesSynced, m.NodesTotal, convergence(m.Converged))
	}
	for _, n := range st.Nodes {
		if n.State != stateUp && n.State != stateRecovering && n.Error != "" {
			fmt.Fprintf(out, "%s is %s: %s\n", n.ID, n.State, n.Error)
		}
		if n.Refill != nil {
			fmt.Fprintf(out, "%s is %s\n", n.ID, refillLine(*n.Refill))
		}
	}
	return nil
}

// refillLine says how far a refill has come: "refilling: 540.0 MiB / 12345
// keys to go at 180.0 MiB/s, ~3s left", without the time left when the
// node cannot tell it.
func refillLine(r coordinator.RefillProgress) string {
	s := fmt.Sprintf("refilling: %s / %d keys to go at %s/s", humanBytes(r.BytesRemaining), r.KeysRemaining, humanBytes(int64(r.BytesPerSecond)))
	if r.ETASeconds > 0 {
		s += ", ~" + humanDuration(time.Duration(math.Ceil(r.ETASeconds))*time.Second) + " left"
	}
	return s
}

// statusHeader is the first line: coordinator, epoch, deployments.
func statusHeader(st coordinator.Status) string {
	s := fmt.Sprintf("coordinator %s, epoch %d, active deployment %s", st.Coordinator, st.Epoch, st.Active)
	if st.Target != "" {
		return s + ", target " + st.Target
	}
	return s + ", no migration"
}

// deploymentLine is one deployment: its role, replication and buckets with
// their share of the key space.
func deploymentLine(d coordinator.DeploymentStatus) string {
	buckets := make([]string, 0, len(d.Buckets))
	for _, b := range d.Buckets {
		buckets = append(buckets, fmt.Sprintf("%s %s%% (%s)", b.Name, strconv.FormatFloat(100*b.Share, 'f', 1, 64), strings.Join(b.Nodes, " ")))
	}
	return fmt.Sprintf("deployment %s (%s), %s per key: %s", d.Name, d.Role, plural(d.BucketsPerKey, "bucket"), strings.Join(buckets, ", "))
}

// nodeRow is one node's row of the table, tab-separated.
func nodeRow(n coordinator.NodeStatus) string {
	cells := []string{n.ID, orDash(n.Bucket), n.State, "-", "-", "-", "-", "-", "-", "-"}
	if n.State == stateUp || n.State == stateRecovering {
		cells[3] = orDash(n.Version)
		cells[4] = humanDuration(time.Duration(n.UptimeSeconds * float64(time.Second)))
		cells[5] = strconv.FormatInt(n.Keys, 10)
		cells[6] = humanBytes(n.DiskBytes)
		cells[7] = strconv.FormatFloat(n.RequestsPerSecond, 'f', 1, 64)
		cells[8] = strconv.FormatFloat(100*n.RepairProgress, 'f', 0, 64) + "%"
		cells[9] = orDash(strings.Join(n.PeersDown, ","))
	}
	return strings.Join(cells, "\t")
}

func convergence(converged bool) string {
	if converged {
		return "converged: the target may be promoted"
	}
	return "not converged"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanDuration is a duration an operator reads at a glance: 42s, 12m5s,
// 3h12m, 2d3h.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// humanBytes is a size in binary units: 512 B, 12.3 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, i := float64(n)/unit, 0
	for value >= unit && i < 4 {
		value /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", value, "KMGTP"[i])
}

// plural is "1 bucket", "2 buckets".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
