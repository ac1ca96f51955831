package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Recovery. A node may lack data that the configuration gives it: its disk
// was lost (it starts with an empty store), an operator says that it lost
// part of its data (-recover), or a new configuration gave it hash ranges
// it did not hold. Such a node is recovering over those ranges (its lost
// ranges) until it has refilled them and finished a clean repair pass with
// every peer:
//
//   - its "not found" for a key of a lost range is no answer: asked for
//     such a key, it first fetches the key from the key's other replicas
//     (read-through, see readThrough), keeps what it found, and answers
//     with that once enough of them answered to be sure to see the newest
//     version a client may have seen; else it refuses (a node that starts
//     on an empty store in a new cluster does not recover: newcluster.go);
//   - it refills the lost ranges in bulk: for each part of them (a unit:
//     a lost range cut at the rings' arcs, so that one set of peers holds
//     all of it) it asks one peer that holds the part and is not recovering
//     there itself for the records, in (hash, key) order and large
//     batches (OpRangeStream), and applies each batch in one synced write;
//   - then the usual digest repair pass with every peer brings what one
//     source lacked.
//
// A node's own records in ranges it gained (a configuration gave it ranges
// it did not hold: it comes back after a migration removed it, or after
// an outage while its ranges moved) or in every range (the operator says
// that its store may be an old copy, -recover) are suspect: they date
// from before the node was out, and the others may have deleted those
// keys and collected the tombstones since. A record whose timestamp is
// older than the moment the recovery began (the unit's SuspectBefore) is
// no answer in such a unit until the unit is merged: reads ignore it
// (the node reads the key through instead), repair never pushes it, and
// the refill, as it streams the unit from a source, deletes every suspect
// record that the source does not hold. Only then is the unit merged and
// its records trusted again. A suspect record that the source lacks may
// still be on a third replica: the repair pass brings it back from there.
// This is what keeps a returning node from bringing deleted keys back
// (docs/reliability.md, "No resurrection").
//
// What is left to do survives a restart: the lost ranges and, per unit,
// the last key applied are kept in the file recoveryFile inside the store's
// directory (so that a lost disk loses them too, and the node starts over
// from an empty store), written again at most every second and at the end
// of every unit.

// recoveryFile is the name of the recovery state in the store's directory.
// Pebble ignores files whose names it does not know.
const recoveryFile = "TAKO-RECOVERY"

// rangeSet is a sorted set of disjoint hash ranges.
type rangeSet []hashRange

// contains reports whether h is in one of the ranges.
func (s rangeSet) contains(h uint32) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].hi >= h })
	return i < len(s) && s[i].lo <= h
}

// overlaps reports whether any hash of r is in the set.
func (s rangeSet) overlaps(r hashRange) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].hi >= r.lo })
	return i < len(s) && s[i].lo <= r.hi
}

// union returns the sorted, merged union of a and b.
func union(a, b []hashRange) rangeSet {
	all := slices.Concat(a, b)
	slices.SortFunc(all, func(x, y hashRange) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	var out rangeSet
	for _, r := range all {
		if n := len(out); n > 0 && (out[n-1].hi == ^uint32(0) || uint64(out[n-1].hi)+1 >= uint64(r.lo)) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the parts of a (sorted, disjoint) that are not in b
// (sorted, disjoint).
func subtract(a, b []hashRange) []hashRange {
	return intersect(a, complement(b))
}

// intersect returns the parts common to a and b, both sorted and disjoint.
func intersect(a, b []hashRange) []hashRange {
	var out []hashRange
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].lo, b[j].lo), min(a[i].hi, b[j].hi)
		if lo <= hi {
			out = append(out, hashRange{lo, hi})
		}
		if a[i].hi < b[j].hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// refillUnit is a part of the lost ranges that one set of peers holds
// whole, and how far its refill has come.
type refillUnit struct {
	Lo, Hi uint32
	// After is the last key applied, in (hash, key) order; empty before
	// the first batch.
	After []byte `json:",omitempty"`
	// Done is set once a peer streamed the whole unit, or none could.
	Done bool `json:",omitempty"`
	// SuspectBefore, when not 0, makes the node's records of the unit
	// older than it suspect until the unit is Merged.
	SuspectBefore int64 `json:",omitempty"`
	// Merged is set once a peer streamed the whole unit and the suspect
	// records it lacked were deleted.
	Merged bool `json:",omitempty"`
}

// suspect reports whether the unit's records older than SuspectBefore
// are suspect still.
func (u refillUnit) suspect() bool { return u.SuspectBefore != 0 && !u.Merged }

// suspectRange is a range of a unit whose suspect records are not merged.
type suspectRange struct {
	lo, hi uint32
	before int64
}

// recoveryState is what recoveryFile holds.
type recoveryState struct {
	Reason  string
	Started time.Time
	Lost    []hashRange
	Units   []refillUnit
	// MayBeNew is set while a recovery that began on an empty store has
	// not been judged: the node may be new in a new cluster (nothing to
	// recover) or have lost its disk (judgeEmptyStart).
	MayBeNew bool `json:",omitempty"`
}

// MarshalJSON writes a hash range as [lo, hi].
func (r hashRange) MarshalJSON() ([]byte, error) { return json.Marshal([2]uint32{r.lo, r.hi}) }

// UnmarshalJSON reads a hash range written by MarshalJSON.
func (r *hashRange) UnmarshalJSON(b []byte) error {
	var v [2]uint32
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	r.lo, r.hi = v[0], v[1]
	return nil
}

// recovery is a node's recovery in progress.
type recovery struct {
	fs  vfs.FS // the store's file system
	dir string // the store's directory, where recoveryFile lives

	mu sync.Mutex // guards the fields below
	// state is what is saved; its Units are the refill's work list.
	state recoveryState
	// lost is state.Lost as a set, shared with readers (replaced, never
	// modified).
	lost rangeSet
	// suspects are the ranges of the units not merged yet whose records
	// are suspect, in increasing order (replaced, never modified).
	suspects []suspectRange
	// savedAt is when state was last written.
	savedAt time.Time
	// gen counts the calls of add.
	gen int
}

// generation returns how often ranges were added.
func (r *recovery) generation() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// newRecovery starts a recovery of lost under cfg's arcs, to be saved in dir
// on fs.
func newRecovery(fs vfs.FS, dir, reason string, lost []hashRange, units []refillUnit) *recovery {
	set := union(lost, nil)
	r := &recovery{fs: fs, dir: dir, lost: set, state: recoveryState{Reason: reason, Started: time.Now(), Lost: set, Units: units}}
	r.suspectsLocked()
	return r
}

// suspectsLocked rebuilds r.suspects from the units.
func (r *recovery) suspectsLocked() {
	var out []suspectRange
	for _, u := range r.state.Units {
		if u.suspect() {
			out = append(out, suspectRange{u.Lo, u.Hi, u.SuspectBefore})
		}
	}
	slices.SortFunc(out, func(a, b suspectRange) int { return cmpUint32(a.lo, b.lo) })
	r.suspects = out
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// suspectBefore returns the time before which the node's records of hash
// h are suspect, or 0 when they are not.
func (r *recovery) suspectBefore(h uint32) int64 {
	r.mu.Lock()
	s := r.suspects
	r.mu.Unlock()
	i := sort.Search(len(s), func(i int) bool { return s[i].hi >= h })
	if i < len(s) && s[i].lo <= h {
		return s[i].before
	}
	return 0
}

// unmerged returns how many units hold suspect records still.
func (r *recovery) unmerged() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, u := range r.state.Units {
		if u.suspect() {
			n++
		}
	}
	return n
}

// loadRecovery reads the recovery state saved in dir on fs, or returns
// nil, nil when there is none.
func loadRecovery(fs vfs.FS, dir string) (*recovery, error) {
	b, err := readFile(fs, fs.PathJoin(dir, recoveryFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the recovery state: %w", err)
	}
	var st recoveryState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading the recovery state %s: %w (remove the file and start the node with -recover to refill all of its ranges)", filepath.Join(dir, recoveryFile), err)
	}
	r := &recovery{fs: fs, dir: dir, state: st, lost: union(st.Lost, nil)}
	r.state.Lost = r.lost
	r.suspectsLocked()
	return r, nil
}

// lostRanges returns the set of lost ranges.
func (r *recovery) lostRanges() rangeSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// add adds more lost ranges and their units.
func (r *recovery) add(lost []hashRange, units []refillUnit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = union(r.lost, lost)
	r.state.Lost = r.lost
	r.state.Units = append(r.state.Units, units...)
	r.suspectsLocked()
	r.gen++
}

// mayBeNew reports whether the recovery began on an empty store and has
// not been judged yet.
func (r *recovery) mayBeNew() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.MayBeNew
}

// setMayBeNew sets or clears MayBeNew and saves the state.
func (r *recovery) setMayBeNew(v bool) error {
	r.mu.Lock()
	r.state.MayBeNew = v
	r.mu.Unlock()
	return r.save()
}

// pending returns the indexes of the units not done.
func (r *recovery) pending() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i, u := range r.state.Units {
		if !u.Done || u.suspect() {
			out = append(out, i)
		}
	}
	return out
}

// unit returns a copy of unit i.
func (r *recovery) unit(i int) refillUnit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Units[i]
}

// advance records that unit i was applied up to after (done when the
// whole unit was; merged when, besides, its suspect records that the
// source lacked were deleted), and saves the state when the last save is
// a second old or the unit is done.
func (r *recovery) advance(i int, after []byte, done, merged bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := &r.state.Units[i]
	if len(after) > 0 {
		u.After = after
	}
	u.Done = u.Done || done
	if merged && u.SuspectBefore != 0 && !u.Merged {
		u.Merged = true
		r.suspectsLocked()
	}
	if done || time.Since(r.savedAt) >= time.Second {
		return r.saveLocked()
	}
	return nil
}

// markEmpty marks unit i done, and merged when merged, without saving:
// a unit with nothing to stream is cheap to do again after a restart, so
// the caller saves once for all of them (a lost disk's recovery has
// hundreds of units, and saving after each rewrote the whole state
// hundreds of times).
func (r *recovery) markEmpty(i int, merged bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := &r.state.Units[i]
	u.Done = true
	if merged && u.SuspectBefore != 0 && !u.Merged {
		u.Merged = true
		r.suspectsLocked()
	}
}

// save writes the state to recoveryFile.
func (r *recovery) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveLocked()
}

// saveLocked writes the state to recoveryFile, atomically (a new file,
// synced, renamed over the old one).
func (r *recovery) saveLocked() error {
	b, err := json.Marshal(r.state)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.fs, r.dir, recoveryFile, b); err != nil {
		return fmt.Errorf("saving the recovery state: %w", err)
	}
	r.savedAt = time.Now()
	return nil
}

// removeRecoveryFile removes the recovery state of dir on fs, durably:
// the recovery ended. Without the directory's sync a crash could bring
// the file back, and with it a recovery the node had ended (or judged
// needless: a new cluster) while it went on serving as a replica that
// lost nothing (the simulator found it: a node judged new, crashed a
// moment later, and came back recovering).
func removeRecoveryFile(fs vfs.FS, dir string) error {
	err := fs.Remove(fs.PathJoin(dir, recoveryFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing the recovery state: %w", err)
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("removing the recovery state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("removing the recovery state: syncing its directory: %w", err)
	}
	return nil
}

// tmpFiles numbers the temporary files of writeFileAtomic.
var tmpFiles atomic.Uint64

// writeFileAtomic writes name in dir on fs through a synced temporary file
// renamed over it, then syncs dir, so that a crash leaves the old file or
// the new one, whole. The node's own files live on the store's file
// system, so that a simulated crash (internal/sim) treats them as it
// treats the store.
func writeFileAtomic(fs vfs.FS, dir, name string, data []byte) error {
	tmpName := fs.PathJoin(dir, fmt.Sprintf("%s.tmp-%d", name, tmpFiles.Add(1)))
	tmp, err := fs.Create(tmpName, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	defer fs.Remove(tmpName) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmpName, fs.PathJoin(dir, name)); err != nil {
		return err
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readFile returns the contents of path on fs; an error that is
// os.ErrNotExist when there is no such file.
func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
