package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/takodb/tako/internal/keyhash"
)

// The fingerprint and the slots are drawn in the package doc. These
// constants are part of what replicas compare: two nodes that disagree on
// any of them see every range as different.
const (
	// DigestSlots is the number of equal slots the hash space is cut into.
	// The store keeps the digest of every slot in memory; the slot of a key
	// is keyhash.Sum(key) >> 16.
	DigestSlots = 1 << 16

	// slotShift is the shift from a key hash to its slot: a slot spans
	// 1 << slotShift hashes.
	slotShift = 32 - 16
	// slotMask selects a hash's position inside its slot.
	slotMask = 1<<slotShift - 1

	// fnvOffset64 and fnvPrime64 are FNV-1a 64's parameters.
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Fingerprint is a stable 64-bit hash of one record of one key: FNV-1a 64
// over
//
//	uint32 BE len(key) | key | int64 BE timestamp | flags byte (bit 0 tombstone, bit 1 expires) | value [| int64 BE expiry]
//
// finished with MurmurHash3's fmix64; the expiry only for a value that
// expires, so a record without one has the fingerprint it had before
// expiries existed. A tombstone's Value and expiry are ignored, as Put
// ignores them, so records that Compare finds identical have equal
// fingerprints, on every node.
func Fingerprint(key []byte, rec Record) uint64 {
	var buf [8]byte
	h := uint64(fnvOffset64)
	binary.BigEndian.PutUint32(buf[:4], uint32(len(key)))
	h = fnv1a(h, buf[:4])
	h = fnv1a(h, key)
	binary.BigEndian.PutUint64(buf[:], uint64(rec.Timestamp))
	h = fnv1a(h, buf[:])
	var flags byte
	value := rec.Value
	switch {
	case rec.Tombstone:
		flags = flagTombstone
		value = nil
	case rec.ExpiresAt != 0:
		flags = flagExpires
	}
	h = (h ^ uint64(flags)) * fnvPrime64
	h = fnv1a(h, value)
	if flags&flagExpires != 0 {
		binary.BigEndian.PutUint64(buf[:], uint64(rec.ExpiresAt))
		h = fnv1a(h, buf[:])
	}
	return fmix64(h)
}

// fnv1a continues the FNV-1a 64 hash h over b.
func fnv1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// fmix64 is MurmurHash3's finaliser, as in keyhash.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// Digest summarises the records of a hash range. Two stores that hold the
// same records in a range have equal digests of it; different records give
// different digests but for a chance of about 2^-64.
type Digest struct {
	// XOR is the XOR of the fingerprints of the records.
	XOR uint64
	// Count is the number of records, tombstones included.
	Count uint64
}

// add folds the record whose fingerprint is fp into d.
func (d *Digest) add(fp uint64) {
	d.XOR ^= fp
	d.Count++
}

// slotDigest is the digest of one slot. Put and Remove of keys in different
// stripes can update one slot at the same time, so it is updated with
// atomics, never under a lock; XOR and count are two words, so a reader
// racing a writer can see one updated and not yet the other.
type slotDigest struct {
	xor   atomic.Uint64
	count atomic.Uint64
}

// toggle XORs fp into the slot's XOR: it adds a fingerprint, or removes one
// added before.
func (d *slotDigest) toggle(fp uint64) {
	for {
		old := d.xor.Load()
		if d.xor.CompareAndSwap(old, old^fp) {
			return
		}
	}
}

// added records that a record with fingerprint fp was written to a key
// that had none.
func (d *slotDigest) added(fp uint64) {
	d.toggle(fp)
	d.count.Add(1)
}

// replaced records that the record with fingerprint old was overwritten by
// one with fingerprint new.
func (d *slotDigest) replaced(old, new uint64) { d.toggle(old ^ new) }

// removed records that the record with fingerprint fp was deleted.
func (d *slotDigest) removed(fp uint64) {
	d.toggle(fp)
	d.count.Add(math.MaxUint64) // minus one
}

// slot returns the digest of the slot of the keys whose hash is h.
func (s *Store) slot(h uint32) *slotDigest { return &s.slots[h>>slotShift] }

// RangeDigest returns the digest of the records whose key's hash h satisfies
// lo <= h <= hi; lo > hi is an empty range. It reads the digests of the
// slots wholly inside the range from memory and scans only the records of
// the at most two slots that the range cuts, so the digest of the whole hash
// space costs DigestSlots memory reads and no I/O.
//
// The digest is exact for the records written by the Puts and Removes that
// returned before RangeDigest was called. Writes to the range that run at
// the same time may be partly included; a digest that differs because of
// them differs again, or not, at the next comparison.
//
// RangeDigest returns ErrClosed after Close, the context's error if ctx is
// done, and an error wrapping ErrCorrupt if a record of a cut slot cannot
// be decoded.
func (s *Store) RangeDigest(ctx context.Context, lo, hi uint32) (Digest, error) {
	if err := ctx.Err(); err != nil {
		return Digest{}, err
	}
	if err := s.enter(); err != nil {
		return Digest{}, err
	}
	defer s.exit()
	var d Digest
	if lo > hi {
		return d, nil
	}

	first, last, cut, n := splitRange(lo, hi)
	for _, c := range cut[:n] {
		err := s.scan(ctx, c[0], c[1], func(key []byte, rec Record) error {
			d.add(Fingerprint(key, rec))
			return nil
		})
		if err != nil {
			return Digest{}, err
		}
	}
	for i := first; i <= last; i++ {
		d.XOR ^= s.slots[i].xor.Load()
		d.Count += s.slots[i].count.Load()
	}
	return d, nil
}

// splitRange splits the hash range [lo, hi], lo <= hi, into the slots first
// to last, which it covers whole (none if last < first), and cut[:n], the at
// most two pieces of the slots at its edges that it covers in part.
func splitRange(lo, hi uint32) (first, last int, cut [2][2]uint32, n int) {
	first, last = int(lo>>slotShift), int(hi>>slotShift)
	if lo&slotMask != 0 {
		cut[n] = [2]uint32{lo, min(hi, lo|slotMask)}
		n++
		first++
	}
	if first <= last && hi&slotMask != slotMask {
		cut[n] = [2]uint32{hi &^ slotMask, hi}
		n++
		last--
	}
	return first, last, cut, n
}

// Fingerprints calls fn with the key, the fingerprint and the timestamp of
// every record whose key's hash h satisfies lo <= h <= hi, in (hash, key)
// order: it is Scan for comparing records with a peer's without sending
// them. The key passed to fn is valid only until fn returns; fn must copy
// it to keep it, and must not modify it. Like Scan, Fingerprints sees a
// snapshot taken when it starts, and fn may call the store's other methods.
//
// Fingerprints returns the errors Scan returns.
func (s *Store) Fingerprints(ctx context.Context, lo, hi uint32, fn func(key []byte, fp uint64, ts int64) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	return s.scan(ctx, lo, hi, func(key []byte, rec Record) error {
		return fn(key, Fingerprint(key, rec), rec.Timestamp)
	})
}

// buildDigests sums every record into the slot digests and returns the
// number of records. Open calls it before it returns the store, so no write
// runs at the same time.
func (s *Store) buildDigests(ctx context.Context) (n int64, err error) {
	err = s.scan(ctx, 0, math.MaxUint32, func(key []byte, rec Record) error {
		s.slot(keyhash.Sum(key)).added(Fingerprint(key, rec))
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("building digests: %w", err)
	}
	return n, nil
}
