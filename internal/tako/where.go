package tako

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"

	"github.com/takodb/tako/internal/httpapi"
)

func runWhere(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("where", "KEY", `
Shows where KEY lives and what each of its replicas holds, asking every
replica for its own record (no quorum, no repair): one row per replica, the
active deployment first, then the target during a migration, each bucket in
the order the ring gives them. A replica behind the newest version is marked
stale. Needs a proxy or a node (GET /where/KEY), not the coordinator.

Example:
  tako where greeting`)
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("where", key); err != nil {
		return err
	}
	p, err := r.fetchPlacement(ctx, key)
	if err != nil {
		return err
	}
	return printPlacement(r.stdout, p)
}

// fetchPlacement asks the server where key lives.
func (r *runner) fetchPlacement(ctx context.Context, key string) (httpapi.Placement, error) {
	var p httpapi.Placement
	err := r.exchange(ctx, request{method: http.MethodGet, path: "/where/" + escapeKey(key)}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				return fmt.Errorf("%s answered /where/ with something else than a placement: %w", r.server, err)
			}
			return nil
		case http.StatusNotFound:
			return fmt.Errorf("%s does not serve /where/KEY (%s): use -s with a proxy's or a node's HTTP address", r.server, reason(resp))
		}
		return r.unexpected(resp)
	})
	return p, err
}

// printPlacement prints a placement as a table, one row per replica.
func printPlacement(out io.Writer, p httpapi.Placement) error {
	fmt.Fprintf(out, "key %q, hash %d (0x%08x)\n", p.Key, p.Hash, p.Hash)
	newest := newestTimestamp(p)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tBUCKET\tNODE\tBINARY\tTIMESTAMP\tTIME\tSTATE")
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, n := range b.Nodes {
				ts, when := "-", "-"
				if n.Found {
					ts, when = strconv.FormatInt(n.Timestamp, 10), formatTime(n.Timestamp)
				}
				fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Role, b.Name, n.ID, n.Binary, ts, when, replicaState(n, newest))
			}
		}
	}
	return tw.Flush()
}

// newestTimestamp is the newest timestamp any replica holds; 0 for none.
func newestTimestamp(p httpapi.Placement) int64 {
	var newest int64
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, n := range b.Nodes {
				if n.Found && n.Timestamp > newest {
					newest = n.Timestamp
				}
			}
		}
	}
	return newest
}

// replicaState says what a replica holds: value, deleted, not found, or
// the error it gave; ", stale" when it is behind the newest version.
func replicaState(n httpapi.ReplicaState, newest int64) string {
	var s string
	switch {
	case n.Error != "":
		return "error: " + n.Error
	case !n.Found:
		return "not found"
	case n.Deleted:
		s = "deleted"
	default:
		s = "value"
	}
	if n.Timestamp < newest {
		s += ", stale"
	}
	if n.BrokenTimestamp != "" {
		s += ", timestamp breaks the rule (tako purge removes it): " + n.BrokenTimestamp
	}
	return s
}
