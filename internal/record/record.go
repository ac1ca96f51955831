// Package record is Tako's vocabulary of versions: a key's record (its
// timestamp, whether it is a delete, its value), the rule that orders two
// records of one key (newest wins, with its tie rules), what a write to
// one replica did (Outcome, PutResult), and the errors of the domain that
// every layer names the same way. It is a leaf: store, wire, node, proxy
// and client use it, and it uses none of them.
package record

import (
	"bytes"
	"cmp"
	"errors"
	"strconv"
)

// Record is the version of a key that a replica holds: a timestamp,
// whether it is a delete, the value, and when the value expires.
type Record struct {
	// Timestamp is in microseconds since the Unix epoch.
	Timestamp int64
	// Tombstone marks a delete. A tombstone has no value: a store ignores
	// the Value of a tombstone and keeps none.
	Tombstone bool
	// Value is the value's bytes; empty values are valid.
	Value []byte
	// ExpiresAt is when the value expires, in microseconds since the Unix
	// epoch; 0 means never. From then on the record is answered as absent
	// (see Expired), and it keeps its place in the order of versions: it
	// wins over older versions exactly as it did while it was live, so
	// that no older version comes back. A tombstone never expires: a
	// store ignores the ExpiresAt of a tombstone and keeps none.
	ExpiresAt int64
}

// Expired reports whether r is a value that has expired at now
// (microseconds since the Unix epoch): one whose ExpiresAt is set and not
// after now.
func (r Record) Expired(now int64) bool {
	return !r.Tombstone && r.ExpiresAt != 0 && r.ExpiresAt <= now
}

// Gone reports whether r says that its key holds nothing at now: it is a
// tombstone, or an expired value.
func (r Record) Gone(now int64) bool { return r.Tombstone || r.Expired(now) }

// GoneSince returns since when r has said that its key holds nothing: a
// tombstone's timestamp, an expired value's expiry; ok is false for a
// value that has no expiry or has not expired at now. Garbage collection
// counts its grace from it.
func (r Record) GoneSince(now int64) (since int64, ok bool) {
	switch {
	case r.Tombstone:
		return r.Timestamp, true
	case r.Expired(now):
		return r.ExpiresAt, true
	}
	return 0, false
}

// Clone returns a copy of r whose Value does not alias r's: what a caller
// keeps of a record read from a store or a message, whose bytes are
// reused.
func (r Record) Clone() Record {
	r.Value = bytes.Clone(r.Value)
	return r
}

// Compare orders two records of one key by which one wins: the newest
// timestamp first; on equal timestamps a tombstone wins over a value;
// then the value bytes (bytes.Compare, the larger wins); then the expiry:
// the earlier one wins, and any expiry wins over none (so that of two
// otherwise identical writes, the one that expires is kept, and a key
// never lives longer than one of them asked). It returns a positive
// number when a wins over b, a negative one when b wins over a, and 0
// when they are identical. The Values and expiries of two tombstones are
// not compared, since a tombstone has neither. Every replica applies this
// same rule, so replicas converge on the same winner.
func Compare(a, b Record) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	switch {
	case a.Tombstone && b.Tombstone:
		return 0
	case a.Tombstone:
		return 1
	case b.Tombstone:
		return -1
	}
	if c := bytes.Compare(a.Value, b.Value); c != 0 {
		return c
	}
	return compareExpiry(a.ExpiresAt, b.ExpiresAt)
}

// compareExpiry orders two expiries by which one wins: the earlier, and
// any over none (0).
func compareExpiry(a, b int64) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return -1
	case b == 0:
		return 1
	}
	return cmp.Compare(b, a)
}

// Outcome says what a write of a record to one replica did.
type Outcome int

const (
	// Written means the record was new, or won over the stored one, and is
	// now stored.
	Written Outcome = iota + 1
	// Unchanged means an identical record was already stored.
	Unchanged
	// Stale means a record that wins over the given one is stored; nothing
	// changed.
	Stale
)

// String returns the outcome's name, such as "written".
func (o Outcome) String() string {
	switch o {
	case Written:
		return "written"
	case Unchanged:
		return "unchanged"
	case Stale:
		return "stale"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// PutResult is what a write to one replica did and what it holds after.
type PutResult struct {
	// Outcome says whether the record was written.
	Outcome Outcome
	// Current is the record stored after the write: the winner. It is the
	// given record when Outcome is Written or Unchanged, the stored one
	// when Outcome is Stale.
	Current Record
}

// The errors of the domain. The layers wrap them with what happened;
// HTTP and the binary protocol translate them into their codes at their
// edges.
var (
	// ErrUnavailable: too few of a key's replicas answered for the
	// request's quorum.
	ErrUnavailable = errors.New("too few replicas available")
	// ErrInsufficientStorage: a replica refused a write because its disk
	// is (nearly) full.
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrNothingWritten: a write failed before any replica received it,
	// so it certainly did not take effect (a write whose fate is unknown
	// does not carry it).
	ErrNothingWritten = errors.New("nothing written")
)
