package docker

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
)

// replicaReport is what checkReplicas found on the replicas of a fault's
// keys, after its final reads.
type replicaReport struct {
	keys int
	// diverged lists the keys whose replicas did not agree (or did not
	// answer) within the time allowed.
	diverged []string
	// lost counts keys whose replicas agree on another version than the
	// final read returned.
	lost []string
	// landedLate lists the keys whose replicas agree on a newer version
	// than the final read's that only a failed write or delete can have
	// made (see pendingWrites): allowed, and counted.
	landedLate []string
	// resurrected lists the keys that the final read found deleted (or
	// never written) and that a replica, or a read through the proxy
	// afterwards, holds a value of.
	resurrected []string
	// tombstones lists the keys with a tombstone older than the grace, the
	// repair passes that garbage collection needs and a margin, still on a
	// replica.
	tombstones []string
	// collected counts the keys read absent that no replica holds a
	// record of (their tombstone was collected everywhere, or they were
	// never written).
	collected int
}

func (r replicaReport) ok() bool {
	return len(r.diverged)+len(r.lost)+len(r.resurrected)+len(r.tombstones) == 0
}

func (r replicaReport) String() string {
	head := func(keys []string) string {
		if len(keys) > 5 {
			return strings.Join(keys[:5], " ") + " ..."
		}
		return strings.Join(keys, " ")
	}
	return fmt.Sprintf("%d keys: %d diverged [%s], %d lost [%s], %d resurrected [%s], %d tombstones past the grace [%s]; %d keys read absent have no record left; %d keys took a failed write's version after their final read [%s]",
		r.keys, len(r.diverged), head(r.diverged), len(r.lost), head(r.lost), len(r.resurrected), head(r.resurrected),
		len(r.tombstones), head(r.tombstones), r.collected, len(r.landedLate), head(r.landedLate))
}

// pendingWrites says, per key, what may still change its replicas after
// the final read: a write or delete that failed may take effect at any
// time, so a version newer than every acknowledged one of a key with such
// a write is that write landing, not a loss (and not a resurrection).
type pendingWrites struct {
	newestAcked   map[string]int64 // the newest acknowledged version's timestamp
	indeterminate map[string]bool  // a write or delete of the key failed
}

// pendingOf collects the pendingWrites of a history.
func pendingOf(ops []*op) pendingWrites {
	p := pendingWrites{newestAcked: map[string]int64{}, indeterminate: map[string]bool{}}
	for _, o := range ops {
		switch {
		case o.kind == opRead:
		case o.acked():
			p.newestAcked[o.key] = max(p.newestAcked[o.key], o.ts)
		case o.failed():
			p.indeterminate[o.key] = true
		}
	}
	return p
}

// landedLate reports whether a version of key with timestamp ts can only
// be a failed write or delete that took effect late.
func (p pendingWrites) landedLate(key string, ts int64) bool {
	return p.indeterminate[key] && ts > p.newestAcked[key]
}

// gcDeadline is how old a tombstone may get before garbage collection must
// have removed it from every replica: the grace, then two repair passes
// (collection follows a clean pass), and a margin.
const gcDeadline = tombstoneGrace + 2*repairInterval + 4*time.Second

// replicaState is one key's records on its replicas, from /where.
type replicaState struct {
	agreed     bool
	found      bool // a record on the replicas (when agreed)
	deleted    bool
	ts         int64
	oldestTomb int64 // the oldest tombstone's timestamp on any replica; 0 when none
	value      bool  // some replica holds a value
	err        string
}

// where asks the proxy's /where what every replica of key holds.
func (c *compose) where(key string) replicaState {
	code, _, body := c.do("GET", "/where/"+key, nil)
	if code != 200 {
		return replicaState{err: fmt.Sprintf("GET /where: %d %s", code, strings.TrimSpace(string(body)))}
	}
	var p httpapi.Placement
	if err := json.Unmarshal(body, &p); err != nil {
		return replicaState{err: fmt.Sprintf("GET /where: %v", err)}
	}
	var s replicaState
	first := true
	s.agreed = true
	for _, d := range p.Deployments {
		for _, b := range d.Buckets {
			for _, n := range b.Nodes {
				if n.Error != "" {
					s.agreed, s.err = false, n.ID+": "+n.Error
					continue
				}
				if n.Found && n.Deleted && (s.oldestTomb == 0 || n.Timestamp < s.oldestTomb) {
					s.oldestTomb = n.Timestamp
				}
				if n.Found && !n.Deleted {
					s.value = true
				}
				if first {
					s.found, s.deleted, s.ts, first = n.Found, n.Deleted, n.Timestamp, false
				} else if n.Found != s.found || n.Deleted != s.deleted || n.Timestamp != s.ts {
					s.agreed = false
				}
			}
		}
	}
	return s
}

// checkReplicas checks every replica of the keys whose final reads are
// finals, through /where: it waits (up to a minute) until the replicas of
// each key agree and no tombstone older than gcDeadline is left, then
// reports the keys where they do not, where they agree on another version
// than the final read's, and where a key read as absent has a value back
// (on a replica, or through the proxy once more).
func (c *compose) checkReplicas(t *testing.T, name string, finals map[string]*op, late pendingWrites) replicaReport {
	t.Helper()
	start := time.Now()
	rep := replicaReport{keys: len(finals)}
	pending := map[string]replicaState{}
	for key := range finals {
		pending[key] = replicaState{}
	}
	for deadline := time.Now().Add(time.Minute); len(pending) > 0; {
		for key := range pending {
			s := c.where(key)
			if s.agreed && (s.oldestTomb == 0 || time.UnixMicro(s.oldestTomb).Add(gcDeadline).After(time.Now())) {
				delete(pending, key)
				f := finals[key]
				switch {
				case s.found && s.ts > f.ts && late.landedLate(key, s.ts):
					rep.landedLate = append(rep.landedLate, key)
					t.Logf("%s: %s: the final read answered %d with timestamp %d; since, a failed write took effect: the replicas agree on found %v, deleted %v, timestamp %d (the newest acknowledged: %d)",
						name, key, f.code, f.ts, s.found, s.deleted, s.ts, late.newestAcked[key])
				case f.code == 404 && s.value:
					rep.resurrected = append(rep.resurrected, key)
				case f.code == 200 && (!s.found || s.deleted || s.ts != f.ts),
					f.code == 404 && f.ts != 0 && s.found && s.ts < f.ts:
					rep.lost = append(rep.lost, key)
					_, _, body := c.do("GET", "/where/"+key, nil)
					t.Logf("%s: %s: the final read answered %d with timestamp %d; the replicas agree on found %v, deleted %v, timestamp %d: %s",
						name, key, f.code, f.ts, s.found, s.deleted, s.ts, strings.Join(strings.Fields(string(body)), " "))
				case f.code == 404 && !s.found:
					rep.collected++
				}
				continue
			}
			pending[key] = s
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(repairInterval)
	}
	for key, s := range pending {
		if s.agreed {
			rep.tombstones = append(rep.tombstones, key)
		} else {
			rep.diverged = append(rep.diverged, key)
			if len(rep.diverged) <= 3 {
				t.Logf("%s: %s: replicas disagree: %+v", name, key, s)
			}
		}
	}
	// Read back through the proxy once more what the final read found
	// absent: a value now is a deleted key come back.
	for key, f := range finals {
		if f.code != 404 {
			continue
		}
		code, h, _ := c.do("GET", "/values/"+key, nil)
		ts, _ := strconv.ParseInt(h.Get("X-Timestamp"), 10, 64)
		if code == 200 && !late.landedLate(key, ts) && !slices.Contains(rep.resurrected, key) {
			rep.resurrected = append(rep.resurrected, key)
		}
	}
	for _, l := range [][]string{rep.diverged, rep.lost, rep.resurrected, rep.tombstones, rep.landedLate} {
		sort.Strings(l)
	}
	t.Logf("%s: replicas checked in %v: %v", name, time.Since(start).Round(100*time.Millisecond), rep)
	return rep
}
