package history

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Anomaly is a kind of violation Check looks for (see the package doc).
type Anomaly int

const (
	NotLinearizable Anomaly = iota
	StaleRead
	VanishedWrite
	PhantomValue
	LostWrite
	Conflict
	Reappeared
	numAnomalies
)

func (a Anomaly) String() string {
	switch a {
	case NotLinearizable:
		return "not linearizable"
	case StaleRead:
		return "stale read"
	case VanishedWrite:
		return "vanished write"
	case PhantomValue:
		return "phantom value"
	case LostWrite:
		return "lost write"
	case Conflict:
		return "409 without client timestamp"
	case Reappeared:
		return "reappeared value"
	}
	return fmt.Sprintf("Anomaly(%d)", int(a))
}

// Finding is one occurrence of an anomaly.
type Finding struct {
	Anomaly Anomaly
	Key     string
	// Detail names the operations involved, times relative to the
	// history's first operation, in milliseconds; for NotLinearizable, an
	// excerpt of the history around the point where no linearization goes
	// further.
	Detail string
}

// Options tune Check.
type Options struct {
	// Timeout bounds Porcupine's search on one key. A key not decided in
	// time is Unknown. If zero, it defaults to 30 s.
	Timeout time.Duration
	// Examples is how many findings of each anomaly the Verdict keeps. If
	// zero, it defaults to 5.
	Examples int
}

// Verdict is what Check found in a history.
type Verdict struct {
	// Ops counts the operations checked; Acknowledged, Failed and
	// LostRaces count writes and deletes by outcome; FailedReads counts
	// the reads dropped, Refused the writes and deletes dropped (they
	// failed before any replica received them).
	Ops, Acknowledged, Failed, LostRaces, FailedReads, Refused int
	// Keys counts the keys; Linearizable those Porcupine proved
	// linearizable.
	Keys, Linearizable int
	// Unknown lists the keys whose linearizability check ran out of time.
	Unknown []string
	// Unchecked lists the keys with client-chosen timestamps, which are not
	// checked for linearizability.
	Unchecked []string
	// Counts counts the findings of each anomaly.
	Counts [numAnomalies]int
	// Examples holds up to Options.Examples findings of each anomaly.
	Examples []Finding

	t0       time.Time
	examples int
	visuals  map[string]func(io.Writer) error // failed key → Porcupine's visualization
}

// Count returns how many times a was found.
func (v Verdict) Count(a Anomaly) int { return v.Counts[a] }

// Anomalies returns how many anomalies were found, of every kind.
func (v Verdict) Anomalies() int {
	n := 0
	for _, c := range v.Counts {
		n += c
	}
	return n
}

// OK reports whether the history passed: no anomaly, and every key that
// is checked for linearizability was decided.
func (v Verdict) OK() bool { return v.Anomalies() == 0 && len(v.Unknown) == 0 }

func (v *Verdict) report(a Anomaly, key, format string, args ...any) {
	v.Counts[a]++
	n := 0
	for _, f := range v.Examples {
		if f.Anomaly == a {
			n++
		}
	}
	if n < v.examples {
		v.Examples = append(v.Examples, Finding{Anomaly: a, Key: key, Detail: fmt.Sprintf(format, args...)})
	}
}

// String summarises the verdict, with its examples.
func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d operations on %d keys (%d writes and deletes acknowledged, %d failed, %d lost a race; %d failed reads and %d refused writes dropped); linearizable: %d keys",
		v.Ops, v.Keys, v.Acknowledged, v.Failed, v.LostRaces, v.FailedReads, v.Refused, v.Linearizable)
	if len(v.Unknown) > 0 {
		fmt.Fprintf(&b, ", UNKNOWN (check timed out): %q", v.Unknown)
	}
	if len(v.Unchecked) > 0 {
		fmt.Fprintf(&b, ", not checked (client timestamps): %d keys", len(v.Unchecked))
	}
	var counts []string
	for a := range numAnomalies {
		counts = append(counts, fmt.Sprintf("%s: %d", a, v.Counts[a]))
	}
	fmt.Fprintf(&b, "\nanomalies: %s", strings.Join(counts, ", "))
	for _, f := range v.Examples {
		fmt.Fprintf(&b, "\n%s, key %q: %s", f.Anomaly, f.Key, strings.ReplaceAll(f.Detail, "\n", "\n    "))
	}
	return b.String()
}

// WriteVisualizations writes Porcupine's visualization of every key that
// is not linearizable into dir, one HTML file per key, and returns their
// paths.
func (v Verdict) WriteVisualizations(dir string) ([]string, error) {
	keys := make([]string, 0, len(v.visuals))
	for k := range v.visuals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var paths []string
	for i, k := range keys {
		p := filepath.Join(dir, fmt.Sprintf("history-%d.html", i))
		f, err := os.Create(p)
		if err != nil {
			return paths, err
		}
		err = v.visuals[k](f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("history: visualizing key %q: %w", k, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Check checks a history with the default Options.
func Check(ops []Op) Verdict { return Options{}.Check(ops) }

// Check checks a history: see the package doc for what it looks for.
func (o Options) Check(ops []Op) Verdict {
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Examples == 0 {
		o.Examples = 5
	}
	v := Verdict{examples: o.Examples, visuals: map[string]func(io.Writer) error{}}
	byKey := map[string][]*Op{}
	for i := range ops {
		op := &ops[i]
		if v.t0.IsZero() || op.Start.Before(v.t0) {
			v.t0 = op.Start
		}
		byKey[op.Key] = append(byKey[op.Key], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	v.Keys = len(keys)
	for _, key := range keys {
		kops := byKey[key]
		var answered []*Op // reads with an answer, and every write and delete
		clientTS := false
		for _, op := range kops {
			switch {
			case op.Kind == Read && !op.answered():
				v.FailedReads++
				continue
			case op.Kind != Read && op.Outcome == Refused:
				v.Refused++
				continue
			case op.acknowledged():
				v.Acknowledged++
			case op.Kind != Read && op.Outcome == LostRace:
				v.LostRaces++
			case op.Kind != Read:
				v.Failed++
			}
			if op.Kind != Read && op.ClientTimestamp {
				clientTS = true
			}
			v.Ops++
			answered = append(answered, op)
		}
		slices.SortStableFunc(answered, func(a, b *Op) int { return a.Start.Compare(b.Start) })
		markCollected(answered)
		v.checkConflicts(key, answered)
		v.checkPhantoms(key, answered)
		v.checkMonotonicReads(key, answered)
		v.checkReappeared(key, answered)
		v.checkFinalReads(key, answered, clientTS)
		if clientTS {
			v.Unchecked = append(v.Unchecked, key)
			continue
		}
		v.checkLinearizable(key, answered, o.Timeout)
	}
	return v
}

// markCollected marks the absent reads without a timestamp that started
// after a delete of the key was sent: their tombstone may have been
// collected. ops are sorted by Start.
func markCollected(ops []*Op) {
	var firstDelete time.Time
	for _, op := range ops {
		if op.Kind == Delete && (firstDelete.IsZero() || op.Start.Before(firstDelete)) {
			firstDelete = op.Start
		}
	}
	if firstDelete.IsZero() {
		return
	}
	for _, op := range ops {
		if op.Kind == Read && op.Outcome == Absent && op.Timestamp == 0 && firstDelete.Before(op.End) {
			op.collected = true
		}
	}
}

// checkConflicts reports the writes and deletes that the cluster stamped
// and that answered 409.
func (v *Verdict) checkConflicts(key string, ops []*Op) {
	for _, op := range ops {
		if op.Kind != Read && op.Outcome == LostRace && !op.ClientTimestamp {
			v.report(Conflict, key, "%s", op.format(v.t0))
		}
	}
}

// checkPhantoms reports the reads of a value that no write of the key sent
// before the read ended wrote.
func (v *Verdict) checkPhantoms(key string, ops []*Op) {
	sent := map[string]time.Time{} // value → when its first write was sent
	for _, op := range ops {
		if op.Kind == Write {
			if t, ok := sent[op.Value]; !ok || op.Start.Before(t) {
				sent[op.Value] = op.Start
			}
		}
	}
	for _, r := range ops {
		if r.Kind != Read || r.Outcome != OK {
			continue
		}
		t, ok := sent[r.Value]
		switch {
		case !ok:
			v.report(PhantomValue, key, "%s: no write wrote this value", r.format(v.t0))
		case !t.Before(r.End):
			v.report(PhantomValue, key, "%s: the first write of this value was sent %.3f ms after the read ended", r.format(v.t0), ms(t.Sub(r.End)))
		}
	}
}

// checkMonotonicReads reports the reads that returned an older version
// than a read of the key that ended before they started. ops are sorted by
// Start.
func (v *Verdict) checkMonotonicReads(key string, ops []*Op) {
	var reads []*Op
	for _, op := range ops {
		if op.answered() {
			reads = append(reads, op)
		}
	}
	byEnd := slices.Clone(reads)
	slices.SortStableFunc(byEnd, func(a, b *Op) int { return a.End.Compare(b.End) })
	// Sweep the reads by start; newest is the newest version among the
	// reads that ended before the current one started.
	var newest *Op
	var newestV version
	j := 0
	for _, r := range reads {
		for ; j < len(byEnd) && byEnd[j].End.Before(r.Start); j++ {
			if ver, ok := byEnd[j].version(); ok && (newest == nil || ver.compare(newestV) > 0) {
				newest, newestV = byEnd[j], ver
			}
		}
		ver, ok := r.version()
		if !ok || newest == nil || ver.compare(newestV) >= 0 {
			continue
		}
		if w := writerOf(ops, newest); w != nil && w.indeterminate() {
			v.report(VanishedWrite, key, "%s\n  then %s\n  the first read's version came from %s", newest.format(v.t0), r.format(v.t0), w.format(v.t0))
			continue
		}
		v.report(StaleRead, key, "%s\n  then %s", newest.format(v.t0), r.format(v.t0))
	}
}

// checkReappeared reports the values written once that a read saw, a later
// read did not (it saw another value, or none), and a read later still saw
// again: no linearization has the one write of the value take effect both
// before and after the other version. Timestamps need not go back for this
// (a write stamped again above a newer version shows its first attempt, then
// the newer version, then itself), so it names a kind of NotLinearizable
// that the read check does not see. One finding per value. ops are sorted by
// Start.
func (v *Verdict) checkReappeared(key string, ops []*Op) {
	writes := map[string]int{}
	for _, op := range ops {
		if op.Kind == Write {
			writes[op.Value]++
		}
	}
	var reads []*Op
	byValue := map[string][]*Op{}
	for _, op := range ops {
		if op.answered() {
			reads = append(reads, op)
			if op.Outcome == OK && writes[op.Value] == 1 {
				byValue[op.Value] = append(byValue[op.Value], op)
			}
		}
	}
	// best[i] holds, among reads[i:], the read that ends first, and the one
	// that ends first among those that read something else.
	best := make([][2]*Op, len(reads)+1)
	differ := func(a, b *Op) bool { return a.Outcome != b.Outcome || a.Value != b.Value }
	for i := len(reads) - 1; i >= 0; i-- {
		r, b := reads[i], best[i+1]
		switch {
		case b[0] == nil || r.End.Before(b[0].End):
			if b[0] != nil && differ(r, b[0]) {
				b[1] = b[0]
			}
			b[0] = r
		case differ(r, b[0]) && (b[1] == nil || r.End.Before(b[1].End)):
			b[1] = r
		}
		best[i] = b
	}
	values := make([]string, 0, len(byValue))
	for val := range byValue {
		values = append(values, val)
	}
	sort.Strings(values)
	for _, val := range values {
		seen := byValue[val]
		first := seen[0] // the read of val that ends first
		for _, r := range seen {
			if r.End.Before(first.End) {
				first = r
			}
		}
		// other: the read of another version that starts after first
		// ended and ends first.
		i := sort.Search(len(reads), func(i int) bool { return reads[i].Start.After(first.End) })
		if i == len(reads) {
			continue
		}
		other := best[i][0]
		if other.Outcome == OK && other.Value == val {
			other = best[i][1]
		}
		if other == nil {
			continue
		}
		for _, again := range seen {
			if again.Start.After(other.End) {
				v.report(Reappeared, key, "%s\n  then %s\n  then %s\n  its one write: %s",
					first.format(v.t0), other.format(v.t0), again.format(v.t0), writeOf(ops, val).format(v.t0))
				break
			}
		}
	}
}

// writeOf returns the first write of value.
func writeOf(ops []*Op, value string) *Op {
	for _, op := range ops {
		if op.Kind == Write && op.Value == value {
			return op
		}
	}
	return nil
}

// writerOf returns the write of the value r read, if it is known and the
// only one: a failed write if that is the only write of the value.
func writerOf(ops []*Op, r *Op) *Op {
	if r.Outcome != OK {
		return nil
	}
	var w *Op
	for _, op := range ops {
		if op.Kind == Write && op.Value == r.Value {
			if w != nil {
				return nil
			}
			w = op
		}
	}
	return w
}

// checkFinalReads reports the final reads that miss an acknowledged write.
// ops are sorted by Start.
func (v *Verdict) checkFinalReads(key string, ops []*Op, clientTS bool) {
	var newest *Op // the acknowledged write or delete with the newest version
	var newestV version
	for _, op := range ops {
		if !op.acknowledged() {
			continue
		}
		if ver, ok := op.version(); ok && (newest == nil || ver.compare(newestV) > 0) {
			newest, newestV = op, ver
		}
	}
	for _, r := range ops {
		if !r.Final || !r.answered() {
			continue
		}
		if ver, ok := r.version(); ok && newest != nil && ver.compare(newestV) < 0 {
			v.report(LostWrite, key, "%s\n  is older than %s", r.format(v.t0), newest.format(v.t0))
			continue
		}
		if clientTS {
			// Newest timestamp wins: a collected tombstone is right only
			// if the newest acknowledged version is a delete, or a delete
			// that failed (whose timestamp, the client's, may be newer
			// than every acknowledged one) may have taken effect and been
			// collected since.
			mayHaveDeleted := slices.ContainsFunc(ops, func(d *Op) bool {
				return d.Kind == Delete && d.indeterminate() && d.Start.Before(r.End)
			})
			if r.collected && newest != nil && newest.Kind == Write && !mayHaveDeleted {
				v.report(LostWrite, key, "%s\n  misses %s, the newest acknowledged version", r.format(v.t0), newest.format(v.t0))
			}
			continue
		}
		// A key the cluster stamps: what r read must come from a write (or
		// delete, or the initial absence) that no acknowledged write
		// started after.
		last := lastAcknowledged(ops)
		if len(last) == 0 {
			continue
		}
		superseded := func(w *Op) bool {
			if w.indeterminate() {
				return false
			}
			for _, a := range last {
				if a != w && a.Start.After(w.End) {
					return true
				}
			}
			return false
		}
		found := false
		for _, w := range ops {
			if w == r || w.Kind == Read || w.Start.After(r.End) {
				continue
			}
			if (r.Outcome == OK && w.Kind == Write && w.Value == r.Value) || (r.Outcome == Absent && w.Kind == Delete) {
				if !superseded(w) {
					found = true
					break
				}
			}
		}
		if !found {
			var lines []string
			for _, a := range last {
				lines = append(lines, a.format(v.t0))
			}
			v.report(LostWrite, key, "%s\n  misses the last acknowledged writes:\n  %s", r.format(v.t0), strings.Join(lines, "\n  "))
		}
	}
}

// lastAcknowledged returns the acknowledged writes and deletes that no
// other acknowledged one started after.
func lastAcknowledged(ops []*Op) []*Op {
	var acked []*Op
	var latestStart time.Time
	for _, op := range ops {
		if op.acknowledged() {
			acked = append(acked, op)
			if op.Start.After(latestStart) {
				latestStart = op.Start
			}
		}
	}
	var last []*Op
	for _, a := range acked {
		if !latestStart.After(a.End) {
			last = append(last, a)
		}
	}
	return last
}
