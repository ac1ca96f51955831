package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/takodb/tako/internal/keyhash"
)

// Bulk operations, for refilling a node: a sender walks a hash range from a
// cursor (ScanAfter) and estimates what is left of it (EstimateRange); a
// receiver applies what it received in batches (PutMany).

// Entry is a key and its record, for PutMany.
type Entry struct {
	Key    []byte
	Record Record
}

// ScanAfter is Scan that starts after the key after, in (hash, key) order:
// it calls fn with the records whose key's hash is within [lo, hi] and
// that sort after after. An empty after starts at lo, as Scan does.
func (s *Store) ScanAfter(ctx context.Context, lo, hi uint32, after []byte, fn func(key []byte, rec Record) error) error {
	if len(after) == 0 {
		return s.Scan(ctx, lo, hi, fn)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	h := keyhash.Sum(after)
	switch {
	case h > hi:
		return nil
	case h < lo:
		return s.scan(ctx, lo, hi, fn)
	}
	// The Pebble key right after after's is after's with a zero byte
	// appended.
	return s.scanFrom(ctx, lo, hi, append(encodeKey(h, after), 0), fn)
}

// EstimateRange estimates the records and the bytes of keys and values
// whose key's hash is within [lo, hi]: the count is exact (from the
// digests), the bytes are that count times the store's average record
// size on disk. For progress reports.
func (s *Store) EstimateRange(ctx context.Context, lo, hi uint32) (records, bytes uint64, err error) {
	d, err := s.RangeDigest(ctx, lo, hi)
	if err != nil {
		return 0, 0, err
	}
	st := s.Stats()
	if st.Keys <= 0 {
		return d.Count, 0, nil
	}
	return d.Count, uint64(float64(d.Count) * float64(st.DiskBytes) / float64(st.Keys)), nil
}

// PutMany offers every entry to the store as Put does, each stored only if
// it wins over the stored record of its key, and commits the winners in one
// write, synced (unless Options.NoSync) before it returns. It is atomic
// against Put and Remove of the same keys: it holds their locks while it
// reads, compares and commits, so callers keep batches small (a few hundred
// keys) to keep other writers of those keys waiting briefly. It returns how
// many entries it wrote.
//
// The entries must be in strictly increasing (hash, key) order, as a range
// stream delivers them; PutMany refuses others with an error, and so never
// sees a key twice. It returns ErrEmptyKey for an empty key, ErrClosed after
// Close, the context's error if ctx is done before it writes, an error
// wrapping ErrCorrupt if a stored record cannot be decoded, and the errors
// of Put for a store that is damaged, full (ErrNoSpace: nothing of the
// batch is written) or failed.
func (s *Store) PutMany(ctx context.Context, entries []Entry) (int, error) {
	return s.putMany(ctx, entries, s.writeOpts)
}

// PutManyUnsynced is PutMany without the sync: its records may be lost by
// a crash until Sync returns. A caller that applies several batches in a
// row syncs once, after the last.
func (s *Store) PutManyUnsynced(ctx context.Context, entries []Entry) (int, error) {
	return s.putMany(ctx, entries, pebble.NoSync)
}

// Sync returns once every write that returned before it is synced to the
// write-ahead log (unless Options.NoSync). It returns ErrClosed after
// Close.
func (s *Store) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	if err := s.guard(func() error { return s.db.LogData(nil, s.writeOpts) }); err != nil {
		return fmt.Errorf("store: syncing: %w", err)
	}
	return nil
}

func (s *Store) putMany(ctx context.Context, entries []Entry, wo *pebble.WriteOptions) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return 0, nil
	}
	pks := make([][]byte, len(entries))
	hashes := make([]uint32, len(entries))
	for i, e := range entries {
		if len(e.Key) == 0 {
			return 0, ErrEmptyKey
		}
		hashes[i] = keyhash.Sum(e.Key)
		pks[i] = encodeKey(hashes[i], e.Key)
		if i > 0 && bytes.Compare(pks[i-1], pks[i]) >= 0 {
			return 0, fmt.Errorf("store: putting many: entry %d (%q) does not sort after entry %d (%q)", i, e.Key, i-1, entries[i-1].Key)
		}
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.exit()

	// Lock the keys' stripes in increasing order, each once, so that two
	// PutMany calls never wait for each other in a cycle.
	stripes := make([]uint32, len(hashes))
	for i, h := range hashes {
		stripes[i] = h % numStripes
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.stripes[i].Lock()
	}
	defer func() {
		for _, i := range stripes {
			s.stripes[i].Unlock()
		}
	}()
	if err := ctx.Err(); err != nil {
		return 0, err
	}

	type change struct {
		i      int
		old    Record
		found  bool
		winner Record
	}
	var changes []change
	b := s.db.NewBatch()
	defer b.Close()
	size := 0
	for i, e := range entries {
		cur, found, err := s.get(pks[i])
		if err != nil {
			return 0, fmt.Errorf("store: putting %q: %w", e.Key, err)
		}
		if found && Compare(e.Record, cur) <= 0 {
			continue
		}
		v := encodeValue(e.Record)
		if err := b.Set(pks[i], v, nil); err != nil {
			return 0, fmt.Errorf("store: putting %q: %w", e.Key, err)
		}
		size += len(pks[i]) + len(v)
		changes = append(changes, change{i: i, old: cur, found: found, winner: e.Record})
	}
	if len(changes) == 0 {
		return 0, nil
	}
	if err := s.space.admit(size); err != nil {
		return 0, fmt.Errorf("store: putting %d records: %w", len(changes), err)
	}
	if err := s.guard(func() error { return b.Commit(wo) }); err != nil {
		return 0, fmt.Errorf("store: putting %d records: %w", len(changes), err)
	}
	for _, c := range changes {
		key, h := entries[c.i].Key, hashes[c.i]
		fp := Fingerprint(key, c.winner)
		if c.found {
			s.slot(h).replaced(Fingerprint(key, c.old), fp)
		} else {
			s.slot(h).added(fp)
			s.keys.Add(1)
		}
	}
	return len(changes), nil
}

// Purge removes key's record, whatever it is, atomically against Put and
// Remove of key, and reports whether there was one. It is for an
// operator's purge of a key whose record no client write can replace (a
// timestamp that breaks the rule): unlike a client's delete it leaves no
// tombstone, so it is done on every replica at once. Unless
// Options.NoSync is set, it returns once the delete is synced.
//
// Purge returns ErrEmptyKey for an empty key, ErrClosed after Close, the
// context's error if ctx is done before it starts, and an error wrapping
// ErrCorrupt if the stored record cannot be decoded.
func (s *Store) Purge(ctx context.Context, key []byte) (bool, error) {
	return s.removeIf(ctx, key, "purging", func(Record) bool { return true })
}
