package docker

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	hist "github.com/takodb/tako/internal/history"
)

// opKind is what an operation of the workload did.
type opKind int

const (
	opRead opKind = iota
	opWrite
	opDelete
)

func (k opKind) String() string { return [...]string{"read", "write", "delete"}[k] }

// op is one operation of the workload's history: one HTTP request, from
// the moment it was sent to the moment its answer (or error) came back.
type op struct {
	client int
	kind   opKind
	key    string
	value  string // written, or read (200)
	entry  string // the service it was sent to: tako-proxy or a node
	start  time.Time
	end    time.Time
	code   int    // HTTP status; 0 when no answer came
	ts     int64  // X-Timestamp of the answer; 0 when none
	reason string // the body of an error answer
	// clientTS: the write or delete sent its own X-Timestamp.
	clientTS bool
}

// acked reports whether a write or delete was acknowledged: the cluster
// promised that it is durable and ordered by ts.
func (o *op) acked() bool {
	return (o.kind == opWrite && o.code == 200) || (o.kind == opDelete && o.code == 204)
}

// answered reports whether a read got an answer about the key.
func (o *op) answered() bool { return o.kind == opRead && (o.code == 200 || o.code == 404) }

// failed reports whether the cluster failed to serve the operation. A
// write or delete that lost to a newer version (409) was served.
func (o *op) failed() bool {
	switch o.code {
	case 200, 204, 404, 409:
		return false
	}
	return true
}

// version is the version of the key that o wrote (acknowledged writes and
// deletes) or read.
func (o *op) version() version {
	return version{ts: o.ts, deleted: o.kind == opDelete || (o.kind == opRead && o.code == 404), value: o.value}
}

// version orders versions as the nodes do: by timestamp, a delete wins a
// tie, then the larger value (two writes can get the same timestamp from
// two nodes' clocks).
type version struct {
	ts      int64
	deleted bool
	value   string
}

func (v version) compare(w version) int {
	switch {
	case v.ts != w.ts:
		return cmp.Compare(v.ts, w.ts)
	case v.deleted != w.deleted:
		if v.deleted {
			return 1
		}
		return -1
	case v.deleted:
		return 0
	}
	return strings.Compare(v.value, w.value)
}

func (o *op) String() string {
	return fmt.Sprintf("client %d %s %s %q via %s [%s, %s] -> %d ts %d",
		o.client, o.kind, o.key, o.value, o.entry, o.start.Format("15:04:05.000"), o.end.Format("15:04:05.000"), o.code, o.ts)
}

// history records the operations of every client.
type history struct {
	mu  sync.Mutex
	ops []*op
}

func (h *history) add(o *op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

// verdict is what check found in a history.
type verdict struct {
	ops, acked, failed int
	// lost: an acknowledged write or delete that a read after it does not
	// see (a read returned an older version; for the final reads, the
	// write is gone), or that an earlier acknowledged one shadows.
	lost int
	// stale: reads that returned an older version than one acknowledged
	// before they started, or a value that no write wrote.
	stale      int
	violations []string
	badKeys    []string // the keys of the violations
	// histVerdict is internal/history's verdict on the same operations:
	// linearizability per key, monotonic reads, phantom values, lost
	// writes, 409s.
	histVerdict hist.Verdict
}

// historyOps converts the operations for internal/history.
func historyOps(ops []*op, final map[*op]bool) []hist.Op {
	out := make([]hist.Op, 0, len(ops))
	for _, o := range ops {
		h := hist.Op{
			Client: o.client, Key: o.key, Value: o.value, Start: o.start, End: o.end,
			Timestamp: o.ts, Final: final[o], Note: o.entry, ClientTimestamp: o.clientTS,
		}
		if o.kind == opRead && o.code != 200 {
			h.Value = "" // the body of a 404 or an error is no value
		}
		switch o.kind {
		case opRead:
			h.Kind = hist.Read
		case opWrite:
			h.Kind = hist.Write
		case opDelete:
			h.Kind = hist.Delete
		}
		switch {
		case o.acked():
			h.Outcome = hist.OK
		case o.kind == opRead && o.code == 200:
			h.Outcome = hist.OK
		case o.kind == opRead && o.code == 404:
			h.Outcome = hist.Absent
		case o.kind != opRead && o.code == 409:
			h.Outcome = hist.LostRace
		default:
			h.Outcome = hist.Failed
			if o.reason != "" {
				h.Note += ": " + strings.TrimSpace(o.reason)
			}
		}
		out = append(out, h)
	}
	return out
}

// check verifies the history against what the contract promises, with
// failed writes and deletes taken as indeterminate (they may have taken
// effect, at any time after they started):
//
//   - timestamps follow real time: a write or delete acknowledged before
//     another started has a smaller timestamp (else the later one would be
//     lost behind it);
//   - a read that started after a write or delete was acknowledged returns
//     it or a newer version (a timestamp at least as large), and what it
//     returns was written by a write or delete of the key that started
//     before the read ended, with that write's timestamp if it was
//     acknowledged.
//
// Reads flagged final are the reads after the faults healed: a violation
// there is a lost write; elsewhere a stale read.
//
// It also runs internal/history's Check on the same operations (see
// verdict.histVerdict).
func check(ops []*op, final map[*op]bool) verdict {
	v := verdict{histVerdict: hist.Check(historyOps(ops, final))}
	byKey := map[string][]*op{}
	for _, o := range ops {
		byKey[o.key] = append(byKey[o.key], o)
		if !final[o] {
			v.ops++
			if o.acked() {
				v.acked++
			}
			if o.failed() {
				v.failed++
			}
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	report := func(format string, args ...any) {
		if len(v.violations) < 20 {
			v.violations = append(v.violations, fmt.Sprintf(format, args...))
		}
	}
	for _, key := range keys {
		kops := byKey[key]
		if slices.ContainsFunc(kops, func(o *op) bool { return o.clientTS }) {
			// Writes with the client's timestamps are not ordered by real
			// time: internal/history holds them to what the contract
			// notes promise.
			continue
		}
		var acked []*op
		writesByValue := map[string][]*op{}
		var deletes []*op
		for _, o := range kops {
			if o.acked() {
				acked = append(acked, o)
			}
			switch o.kind {
			case opWrite:
				writesByValue[o.value] = append(writesByValue[o.value], o)
			case opDelete:
				deletes = append(deletes, o)
			}
		}
		slices.SortFunc(acked, func(a, b *op) int { return a.end.Compare(b.end) })
		// newestBefore returns the acknowledged op with the newest version
		// among those that ended before t.
		newestBefore := func(t time.Time) *op {
			var best *op
			for _, a := range acked {
				if !a.end.Before(t) {
					break
				}
				if best == nil || a.version().compare(best.version()) > 0 {
					best = a
				}
			}
			return best
		}
		for _, o := range acked {
			// An identical version (two deletes stamped alike) is no loss.
			if prev := newestBefore(o.start); prev != nil && prev.version().compare(o.version()) > 0 {
				v.lost++
				v.badKeys = append(v.badKeys, key)
				report("acknowledged %v is older than %v, acknowledged before it started", o, prev)
			}
		}
		for _, r := range kops {
			if !r.answered() {
				continue
			}
			bad := func(format string, args ...any) {
				if final[r] {
					v.lost++
				} else {
					v.stale++
				}
				v.badKeys = append(v.badKeys, key)
				report(format, args...)
			}
			if r.code == 404 && r.ts == 0 && slices.ContainsFunc(deletes, func(d *op) bool { return d.start.Before(r.end) }) {
				// Garbage collection may have removed the tombstone: the
				// key reads as never written. Some delete must be newer
				// than the newest write acknowledged before the read.
				prev := newestBefore(r.start)
				if prev != nil && prev.kind == opWrite && !slices.ContainsFunc(deletes, func(d *op) bool {
					return d.start.Before(r.end) && (!d.acked() || d.version().compare(prev.version()) > 0)
				}) {
					bad("%v found no record, but no delete is newer than %v, acknowledged before it started", r, prev)
				}
				continue
			}
			if prev := newestBefore(r.start); prev != nil && r.version().compare(prev.version()) < 0 {
				bad("%v returned an older version than %v, acknowledged before it started", r, prev)
				continue
			}
			switch {
			case r.code == 200:
				if !wroteIt(writesByValue[r.value], r) {
					bad("%v returned a value that no write of the key with that timestamp wrote", r)
				}
			case r.ts != 0:
				if !wroteIt(deletes, r) {
					bad("%v returned a tombstone that no delete of the key with that timestamp wrote", r)
				}
			}
		}
	}
	return v
}

// wroteIt reports whether one of the writes (or deletes) could have
// written the version read: it started before the read ended and, if
// acknowledged, has the version's timestamp, or was still running when
// the read started (a write stamped again above a newer version leaves
// its first attempt's version on some replicas, older than the one it
// acknowledges).
func wroteIt(writes []*op, r *op) bool {
	for _, w := range writes {
		if w.start.Before(r.end) && (!w.acked() || w.ts == r.ts || r.start.Before(w.end)) {
			return true
		}
	}
	return false
}

func (v verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations, %d acknowledged writes and deletes, %d failed, %d lost, %d stale", v.ops, v.acked, v.failed, v.lost, v.stale)
	for _, s := range v.violations {
		b.WriteString("\n  ")
		b.WriteString(s)
	}
	b.WriteString("\ninternal/history: ")
	b.WriteString(v.histVerdict.String())
	return b.String()
}
