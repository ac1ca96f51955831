// Package history records a concurrent history of key-value operations
// against a Tako cluster and checks it against what the contract promises.
//
// A test records one Op per request: who sent it, what it asked, when it was
// sent and when its answer came back (both read from one clock of the test
// process, time.Now, whose monotonic reading orders them), and what the
// answer was. Check then decides what the history means; the cluster's own
// word (a 200, a timestamp) is evidence, never the verdict.
//
// Check looks for these anomalies, each counted and illustrated in the
// Verdict:
//
//   - NotLinearizable: a key whose writes the cluster stamps does not behave
//     as a linearizable register (checked with Porcupine, one key at a
//     time). Every key starts absent. A write or delete that failed (no
//     answer, or an error) may or may not have taken effect, at any time
//     after it was sent: it is indeterminate, its return time after every
//     other operation's. A write that answered 409 is indeterminate too (and
//     a Conflict, below). Failed reads say nothing and are dropped. When
//     Porcupine runs out of time a key is Unknown: neither a pass nor a
//     failure, and Verdict.OK reports false.
//   - StaleRead: a read returned an older version (by the timestamps the
//     cluster reported; an absent answer is the version of the tombstone
//     whose timestamp it reports, or the oldest version when it reports
//     none) than a read of the key that ended before it started. An absent
//     answer without a timestamp once a delete of the key was sent may be
//     a tombstone that garbage collection removed (after tombstone_grace):
//     its version is unknown, and only the checks that need no timestamp
//     (linearizability, and for final reads which write they come from)
//     hold it.
//   - VanishedWrite: a StaleRead where the newer version that vanished came
//     from a write that failed: the cluster showed it, then lost it.
//   - PhantomValue: a read returned a value that no write of the key sent
//     before the read ended wrote.
//   - LostWrite: a final read (Op.Final: a read made after every other
//     operation ended) returned a version older than an acknowledged write:
//     older by timestamp than the newest acknowledged version, or, for keys
//     the cluster stamps, written by an operation that an acknowledged write
//     started after.
//   - Conflict: a write or delete without a client-chosen timestamp answered
//     409, which the contract says never happens.
//   - Reappeared: a value written once was read, then a later read saw
//     another version, then a later one saw the value again. Such a key is
//     also NotLinearizable; this names why, even when the timestamps rise
//     throughout.
//
// Keys written with client-chosen timestamps (Op.ClientTimestamp) are
// promised less: newest timestamp wins, and a write that lost answers 409.
// Check skips their linearizability (Verdict.Unchecked) and holds them to
// everything else.
package history

import (
	"cmp"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Kind is what an operation asked for.
type Kind int

const (
	Read Kind = iota
	Write
	Delete
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Write:
		return "write"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Outcome is what the cluster answered.
type Outcome int

const (
	// Failed: no answer, or an error (a 5xx, a timeout, a broken
	// connection). A write or delete that failed may or may not have
	// taken effect.
	Failed Outcome = iota
	// OK: a write or delete was acknowledged, or a read answered a value.
	OK
	// Absent: a read answered that the key has no value (404, not found).
	Absent
	// LostRace: a write or delete answered 409: a newer version of the
	// key existed, and nothing changed.
	LostRace
	// Refused: a write or delete failed before any replica received it
	// (record.ErrNothingWritten): it certainly did not take effect. The
	// checks leave it out, as they leave out failed reads.
	Refused
)

func (o Outcome) String() string {
	switch o {
	case Failed:
		return "failed"
	case OK:
		return "ok"
	case Absent:
		return "absent"
	case LostRace:
		return "lost-race"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Op is one operation of a history: one request, from the moment it was sent
// to the moment its answer (or its error) came back.
type Op struct {
	// Client identifies the client that sent it; one client sends one
	// operation at a time.
	Client int
	Kind   Kind
	Key    string
	// Value is the value written, or the value read (Outcome OK).
	Value string
	// Start and End are when the request was sent and when its answer
	// came, from one clock in the test process (time.Now).
	Start, End time.Time
	Outcome    Outcome
	// Timestamp is the version's timestamp the cluster reported, 0 when
	// unknown: of the version stored (an acknowledged write or delete),
	// of the newer version that won (LostRace), of the version read (OK),
	// or of the tombstone (Absent, when the key was deleted).
	Timestamp int64
	// ClientTimestamp reports that the client chose the write's or
	// delete's timestamp itself (X-Timestamp, PutAt).
	ClientTimestamp bool
	// Final marks a read made after every other operation of the history
	// ended: LostWrite is checked on those.
	Final bool
	// Note is shown with the operation in reports: where it was sent, the
	// error it got.
	Note string

	// collected: an absent read with no timestamp after a delete of the
	// key was sent; set by Check. The tombstone may have been collected
	// (tombstone_grace), so the version read is unknown.
	collected bool
}

// acknowledged reports whether a write or delete is known to have taken
// effect.
func (o *Op) acknowledged() bool { return o.Kind != Read && o.Outcome == OK }

// indeterminate reports whether a write or delete may or may not have taken
// effect.
func (o *Op) indeterminate() bool {
	return o.Kind != Read && (o.Outcome == Failed || o.Outcome == LostRace)
}

// answered reports whether a read got an answer about the key.
func (o *Op) answered() bool { return o.Kind == Read && (o.Outcome == OK || o.Outcome == Absent) }

// format describes o with its times relative to t0, in milliseconds.
func (o *Op) format(t0 time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%9.3f, %9.3f] ms client %d %s %q", ms(o.Start.Sub(t0)), ms(o.End.Sub(t0)), o.Client, o.Kind, o.Key)
	switch {
	case o.Kind == Write:
		fmt.Fprintf(&b, " %q", o.Value)
	case o.Kind == Read && o.Outcome == OK:
		fmt.Fprintf(&b, " -> %q", o.Value)
	}
	fmt.Fprintf(&b, " %s", o.Outcome)
	if o.Timestamp != 0 {
		fmt.Fprintf(&b, " ts %d", o.Timestamp)
	}
	if o.ClientTimestamp {
		b.WriteString(" (client's ts)")
	}
	if o.Final {
		b.WriteString(" (final)")
	}
	if o.Note != "" {
		fmt.Fprintf(&b, " [%s]", o.Note)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// version is a version of a key as the nodes order them: the newest
// timestamp wins; on a tie a delete wins over a value, then the larger
// value wins.
type version struct {
	ts      int64
	deleted bool
	value   string
}

func (v version) compare(w version) int {
	if c := cmp.Compare(v.ts, w.ts); c != 0 {
		return c
	}
	switch {
	case v.deleted && w.deleted:
		return 0
	case v.deleted:
		return 1
	case w.deleted:
		return -1
	}
	return strings.Compare(v.value, w.value)
}

// version returns the version that o wrote or read, and whether it is
// known: a read of a value must report its timestamp. An absent answer
// without a timestamp is the oldest version (nothing).
func (o *Op) version() (version, bool) {
	switch {
	case o.Kind == Read && o.Outcome == Absent && o.collected:
		return version{}, false
	case o.Kind == Read && o.Outcome == Absent:
		return version{ts: o.Timestamp, deleted: o.Timestamp != 0}, true
	case o.Timestamp == 0:
		return version{}, false
	}
	return version{ts: o.Timestamp, deleted: o.Kind == Delete, value: o.Value}, true
}

// Recorder collects the operations of concurrent clients. The zero value is
// ready to use; it is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex // guards ops
	ops []Op
}

// Add records one operation.
func (r *Recorder) Add(o Op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

// Ops returns a copy of the operations recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}
