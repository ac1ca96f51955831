package tako

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

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
	case n.ExpiresAt != 0 && n.ExpiresAt <= time.Now().UnixMicro():
		s = fmt.Sprintf("value, expired at %d (%s)", n.ExpiresAt, formatTime(n.ExpiresAt))
	case n.ExpiresAt != 0:
		s = fmt.Sprintf("value, expires at %d (%s)", n.ExpiresAt, formatTime(n.ExpiresAt))
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

func runPurge(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("purge", "KEY", `
Removes KEY from every one of its replicas, whatever their versions, and
leaves no tombstone: how to rid the cluster of a version whose timestamp
breaks the rule (1 <= ts <= now + max_timestamp_ahead; tako where shows
such versions), which no write can replace, not even one without
X-Timestamp (it answers 503 naming purge). Needs a token of the admin role
when the cluster has tokens, and a node's HTTP port (or a proxy whose own
token is an admin's). Every replica must answer: when some cannot, the
others are purged and tako purge exits 1 naming them; run it again once
they are back. The nodes log every purge.

Example:
  tako -s localhost:5701 purge poisoned-key`)
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("purge", key); err != nil {
		return err
	}
	return r.exchange(ctx, request{method: http.MethodPost, path: "/purge/" + escapeKey(key)}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			var res httpapi.PurgeResult
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				return fmt.Errorf("%s answered /purge/ with something else than a purge result: %w", r.server, err)
			}
			switch {
			case !res.Held:
				fmt.Fprintf(r.stdout, "%q was on no replica\n", key)
			case len(res.Removed) > 0:
				fmt.Fprintf(r.stdout, "purged %q: removed from %s; held nothing on %s\n", key, strings.Join(res.Removed, ", "), listOrNone(res.Absent))
			default:
				fmt.Fprintf(r.stdout, "purged %q from every replica\n", key)
			}
			return nil
		case http.StatusServiceUnavailable:
			return answerNo("purging %q: %s", key, reason(resp))
		case http.StatusNotFound:
			return fmt.Errorf("%s does not serve /purge/KEY (%s): use -s with a node's HTTP address", r.server, reason(resp))
		}
		return r.unexpected(resp)
	})
}

// listOrNone joins ids with commas, or says none.
func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
