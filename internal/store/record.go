package store

import (
	"encoding/binary"
	"fmt"

	"github.com/takodb/tako/internal/record"
)

// Record is the version of a key that a store holds (record.Record). Records
// returned by Get and Put own their Value; those passed to Scan's callback
// do not.
type Record = record.Record

// Compare orders two records of one key by which one wins (record.Compare).
func Compare(a, b Record) int { return record.Compare(a, b) }

// Outcome says what a Put did (record.Outcome).
type Outcome = record.Outcome

// The outcomes of a Put.
const (
	Written   = record.Written
	Unchanged = record.Unchanged
	Stale     = record.Stale
)

// PutResult is what Put did and what is stored after it (record.PutResult).
type PutResult = record.PutResult

// The layout of a Pebble key and value, drawn in the package doc. These
// constants are part of the on-disk format.
const (
	// hashLen is the length of the hash prefix of a Pebble key.
	hashLen = 4

	// formatVersion is the first byte of every Pebble value.
	formatVersion = 1
	// flagTombstone is the flags bit of a tombstone.
	flagTombstone = 1 << 0
	// flagExpires is the flags bit of a value that expires: its expiry
	// follows the timestamp.
	flagExpires = 1 << 1
	// flagsKnown are the flags bits this version defines.
	flagsKnown = flagTombstone | flagExpires
	// headerLen is the length of a Pebble value before the value bytes:
	// version, flags and timestamp; a value that expires has its expiry
	// (expiryLen more bytes) between them.
	headerLen = 1 + 1 + 8
	// expiryLen is the length of a value's expiry.
	expiryLen = 8
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

// encodeValue returns the Pebble value of rec. A tombstone's Value and
// ExpiresAt are dropped. A record without expiry has the layout it had
// before expiries existed.
func encodeValue(rec Record) []byte {
	var flags byte
	value := rec.Value
	head := headerLen
	switch {
	case rec.Tombstone:
		flags |= flagTombstone
		value = nil
	case rec.ExpiresAt != 0:
		flags |= flagExpires
		head += expiryLen
	}
	v := make([]byte, head+len(value))
	v[0] = formatVersion
	v[1] = flags
	binary.BigEndian.PutUint64(v[2:], uint64(rec.Timestamp))
	if flags&flagExpires != 0 {
		binary.BigEndian.PutUint64(v[headerLen:], uint64(rec.ExpiresAt))
	}
	copy(v[head:], value)
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
		if flags&flagExpires != 0 {
			return Record{}, fmt.Errorf("%w: tombstone with an expiry", ErrCorrupt)
		}
		if len(v) > headerLen {
			return Record{}, fmt.Errorf("%w: tombstone with %d value bytes", ErrCorrupt, len(v)-headerLen)
		}
		return rec, nil
	}
	head := headerLen
	if flags&flagExpires != 0 {
		if len(v) < headerLen+expiryLen {
			return Record{}, fmt.Errorf("%w: value of %d bytes with an expiry, want at least %d", ErrCorrupt, len(v), headerLen+expiryLen)
		}
		rec.ExpiresAt = int64(binary.BigEndian.Uint64(v[headerLen:]))
		if rec.ExpiresAt == 0 {
			return Record{}, fmt.Errorf("%w: expiry flag set with an expiry of 0", ErrCorrupt)
		}
		head += expiryLen
	}
	rec.Value = v[head:len(v):len(v)]
	return rec, nil
}
