// Package store is a Tako node's embedded storage engine: a Pebble database
// that keeps, for every key, exactly one record, the winner among all the
// versions of that key the node has been given, and that keeps in memory the
// digests of ranges of the hash space that replicas compare to repair each
// other.
//
// # Records and which one wins
//
// A Record is a timestamp (microseconds since the Unix epoch), a tombstone
// flag (the record is a delete), a value and when it expires (0: never).
// Compare orders two records of one key by which one wins: the newer
// timestamp; on equal timestamps a tombstone over a live value; then the
// larger value bytes; then the earlier expiry (any over none). Every
// replica applies the same rule, so replicas that have been given the same
// records hold the same winner whatever order the records arrived in. The
// store keeps an expired value like any other record: what expiry means
// to a client, as what a tombstone means, is the caller's business.
//
// Put is a read-compare-write, atomic per key: it stores the record only if
// it wins over the stored one and reports what happened as an Outcome
// (Written, Unchanged or Stale) together with the record now stored. Get
// returns tombstones like any other record; what a tombstone means to a
// client is the caller's business. Remove deletes a record outright, and only
// if it is still the one the caller expects: it is for garbage collection
// (dropped ownership, tombstones past their grace period), never for a
// client's delete, which is a Put of a tombstone.
//
// # Durability
//
// Put and Remove return only once their write is synced to Pebble's
// write-ahead log, so an acknowledged write survives a crash of the process
// or of the machine. Concurrent writers share fsyncs through Pebble's group
// commit. Options.NoSync turns this off, for benchmarks only.
//
// # When the disk fails
//
// Pebble cannot go on after a write or sync of its write-ahead log failed
// (the write is then in the memtable, visible, but not known to be on the
// disk). The store then fails as a whole: the write returns an error
// wrapping ErrFailed, so it is never acknowledged, every later call
// returns ErrFailed too, reads included, and Options.OnFatal tells the
// owner, who should stop the process; a restart replays what was synced.
//
// A full disk would be such a failure, so the store keeps
// Options.MinFreeBytes free on its file system: a write that would eat
// into that reserve is refused with ErrNoSpace, reads go on, and writes
// are accepted again once space is freed.
//
// A file whose checksum does not match is never read as data: the read
// returns a *DamageError (ErrDamaged) naming the file. Open reads every
// record, so a store with a damaged table does not open; nor does one
// whose write-ahead log is damaged before its last 32 KiB block (damage
// in that block looks like a write torn by a crash, and Pebble drops the
// records from there on). failure.go has the details.
//
// # On-disk layout
//
// The two layouts below are part of the on-disk format: changing either
// makes existing data unreadable. The hash is keyhash.Sum, the one hash of
// Tako's key space.
//
// A Pebble key is the big-endian hash of the user key followed by the user
// key itself, which is never empty:
//
//	+----------------------+--------------------------+
//	| keyhash.Sum(key)     | key                      |
//	| uint32, big-endian   | 1 or more bytes          |
//	+----------------------+--------------------------+
//	0                      4                          4+len(key)
//
// Pebble orders keys bytewise, so records are ordered by (hash, key), and
// the records whose keys hash into [lo, hi] are one contiguous run of Pebble
// keys, from the 4-byte key lo up to (excluding) the 4-byte key hi+1. Scan
// walks such runs; RangeDigest summarises them.
//
// A Pebble value is a 10-byte header followed by the value bytes; a value
// that expires has its expiry between them:
//
//	+---------+---------+-----------------------+-----------------------+---------------------+
//	| version | flags   | timestamp             | expiry (flags bit 1)  | value               |
//	| 1 byte  | 1 byte  | int64, big-endian, µs | int64, big-endian, µs | 0 or more bytes     |
//	+---------+---------+-----------------------+-----------------------+---------------------+
//	0         1         2                       10                      10 or 18
//
//	version  1 (formatVersion). Any other version is ErrCorrupt.
//	flags    bit 0: tombstone; bit 1: the value expires. Bits 2-7 are zero;
//	         a set one, or both bits 0 and 1, is ErrCorrupt.
//	expiry   only with bit 1: Record.ExpiresAt, never 0. Records written
//	         before expiries existed have bit 1 clear and read as before.
//	value    empty for a tombstone; a tombstone with value bytes is ErrCorrupt.
//
// A value shorter than the header is ErrCorrupt too.
//
// # Digests of hash ranges
//
// Replicas repair each other without a round trip per key by comparing
// digests of ranges of the hash space and exchanging records only where the
// digests differ. A record's fingerprint, a Digest, DigestSlots and the slot
// of a key are part of what replicas compare: every node must compute them
// alike, so changing any of them makes every range of a mixed-version
// cluster look different.
//
// Fingerprint hashes one record of one key with FNV-1a 64 over these bytes,
// then mixes the result with MurmurHash3's fmix64:
//
//	+--------------------+-----------+-----------------------+---------+-----------------+
//	| len(key)           | key       | timestamp             | flags   | value           | [expiry]
//	| uint32, big-endian | len bytes | int64, big-endian, µs | 1 byte  | 0 or more bytes | [int64, BE]
//	+--------------------+-----------+-----------------------+---------+-----------------+
//
//	flags    bit 0: tombstone; bit 1: the value expires; bits 2-7 are zero.
//	value    empty for a tombstone, whatever Record.Value holds.
//	expiry   only with bit 1 (a value whose ExpiresAt is set), so a record
//	         without one has the fingerprint it had before expiries existed.
//
// The length prefix keeps the key and value apart: ("ab", "c") and
// ("a", "bc") hash differently.
//
// The Digest of a set of records is the XOR of their fingerprints and their
// count. XOR makes it independent of the order records arrived in and lets
// one write update it in O(1): remove the old record's fingerprint, add the
// new one's.
//
// The hash space is cut into DigestSlots (65,536) equal slots of 65,536
// hashes; the slot of a key is keyhash.Sum(key) >> 16. The store keeps the
// Digest of every slot in memory (1 MiB): Open builds it by reading every
// record once, and Put and Remove update it, under their stripe's lock,
// once their write has succeeded. RangeDigest adds up the slots a range
// covers whole and scans the records of the at most two slots it cuts, so a
// digest of the whole space is 65,536 memory reads and no I/O. A range
// digest is exact for the writes that returned before it began; writes that
// run while it reads may be partly in it.
//
// # Concurrency
//
// A Store is safe for concurrent use. Put and Remove of one key are
// serialised by a lock chosen by the key's hash (one of a fixed set of
// stripes), held across the read, the comparison and the synced write; writes
// to keys of different stripes proceed in parallel and share fsyncs. Keys of
// different stripes share a digest slot, which writes update with atomic
// compare-and-swap, never under a lock of their own. Close waits for the
// calls in progress, then closes the database; every later call returns
// ErrClosed.
package store
