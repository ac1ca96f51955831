package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Record is the version of a key that a store holds: a timestamp, whether it
// is a delete, and the value.
type Record struct {
	// Timestamp is in microseconds since the Unix epoch.
	Timestamp int64
	// Tombstone marks a delete. A tombstone has no value: Put ignores the
	// Value of a tombstone and stores none.
	Tombstone bool
	// Value is the value's bytes; empty values are valid. Records returned
	// by Get and Put own their Value; those passed to Scan's callback do not.
	Value []byte
}

// Compare orders two records of one key by which one wins: the newest
// timestamp first; on equal timestamps a tombstone wins over a live value;
// then the value bytes (bytes.Compare, the larger wins). It returns a
// positive number when a wins over b, a negative one when b wins over a,
// and 0 when they are identical. The Values of two tombstones are not
// compared, since a tombstone has none. Every replica applies this same
// rule, so replicas converge on the same winner.
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
	return bytes.Compare(a.Value, b.Value)
}

// Outcome says what a Put did.
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

// PutResult is what Put did and what is stored after it.
type PutResult struct {
	// Outcome says whether the record was written.
	Outcome Outcome
	// Current is the record stored after the Put: the winner. It is the
	// given record when Outcome is Written or Unchanged, the stored one
	// when Outcome is Stale.
	Current Record
}

// The layout of a Pebble key and value, drawn in the package doc. These
// constants are part of the on-disk format.
const (
	// hashLen is the length of the hash prefix of a Pebble key.
	hashLen = 4

	// formatVersion is the first byte of every Pebble value.
	formatVersion = 1
	// flagTombstone is the flags bit of a tombstone.
	flagTombstone = 1 << 0
	// flagsKnown are the flags bits this version defines.
	flagsKnown = flagTombstone
	// headerLen is the length of a Pebble value before the value bytes:
	// version, flags and timestamp.
	headerLen = 1 + 1 + 8
)

// encodeKey returns the Pebble key of key, whose hash is h.
func encodeKey(h uint32, key []byte) []byte {
	k := make([]byte, hashLen+len(key))
	binary.BigEndian.PutUint32(k, h)
	copy(k[hashLen:], key)
	return k
}

// hashBound returns the 4-byte Pebble key that sorts before every Pebble
// key whose hash is h and after every key whose hash is smaller.
func hashBound(h uint32) []byte {
	return binary.BigEndian.AppendUint32(make([]byte, 0, hashLen), h)
}

// decodeKey returns the user key of a Pebble key, aliasing k.
func decodeKey(k []byte) ([]byte, error) {
	if len(k) <= hashLen {
		return nil, fmt.Errorf("%w: key %x of %d bytes, want more than %d", ErrCorrupt, k, len(k), hashLen)
	}
	return k[hashLen:len(k):len(k)], nil
}

// encodeValue returns the Pebble value of rec. A tombstone's Value is
// dropped.
func encodeValue(rec Record) []byte {
	var flags byte
	value := rec.Value
	if rec.Tombstone {
		flags |= flagTombstone
		value = nil
	}
	v := make([]byte, headerLen+len(value))
	v[0] = formatVersion
	v[1] = flags
	binary.BigEndian.PutUint64(v[2:], uint64(rec.Timestamp))
	copy(v[headerLen:], value)
	return v
}

// decodeValue parses a Pebble value. The returned record's Value aliases v;
// it is nil for a tombstone.
func decodeValue(v []byte) (Record, error) {
	if len(v) < headerLen {
		return Record{}, fmt.Errorf("%w: value of %d bytes, want at least %d", ErrCorrupt, len(v), headerLen)
	}
	if v[0] != formatVersion {
		return Record{}, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v[0], formatVersion)
	}
	flags := v[1]
	if flags&^flagsKnown != 0 {
		return Record{}, fmt.Errorf("%w: unknown flags %#02x", ErrCorrupt, flags)
	}
	rec := Record{
		Timestamp: int64(binary.BigEndian.Uint64(v[2:headerLen])),
		Tombstone: flags&flagTombstone != 0,
	}
	if rec.Tombstone {
		if len(v) > headerLen {
			return Record{}, fmt.Errorf("%w: tombstone with %d value bytes", ErrCorrupt, len(v)-headerLen)
		}
		return rec, nil
	}
	rec.Value = v[headerLen:len(v):len(v)]
	return rec, nil
}
