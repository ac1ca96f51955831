package archive

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"

	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
)

// MaxKeySize is the longest key an archive holds, as the cluster's.
const MaxKeySize = 4096

// Entry is one record of an archive: a key and its version.
//
// In a records frame, once decompressed, the range's index (uvarint)
// comes first, then each entry: the key's length (uvarint, 1 to
// MaxKeySize), the key, the timestamp (varint, microseconds), a flags
// byte (bit 0: a tombstone; bit 1: the value expires; the others 0), the
// expiry (varint, microseconds, never 0; only with bit 1), the value's
// length (uvarint; 0 for a tombstone) and the value. Archives written
// before expiries existed never set bit 1 and read as before.
type Entry struct {
	Key    []byte
	Record record.Record
}

// The bits of an entry's flags.
const (
	// flagTombstone marks a delete.
	flagTombstone = 1 << 0
	// flagExpires marks a value that expires: its expiry follows.
	flagExpires = 1 << 1
	// entryFlagsKnown are the bits an entry's flags may have.
	entryFlagsKnown = flagTombstone | flagExpires
)

// appendEntry appends e's encoding to b.
func appendEntry(b []byte, e Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendVarint(b, e.Record.Timestamp)
	if e.Record.Tombstone {
		b = append(b, flagTombstone)
		return binary.AppendUvarint(b, 0)
	}
	if e.Record.ExpiresAt != 0 {
		b = append(b, flagExpires)
		b = binary.AppendVarint(b, e.Record.ExpiresAt)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Record.Value)))
	return append(b, e.Record.Value...)
}

// decodeEntries decodes a records frame's payload, once decompressed: its
// range index and its entries, whose keys and values alias p.
func decodeEntries(p []byte) (int, []Entry, error) {
	idx, n := binary.Uvarint(p)
	if n <= 0 || idx > 1<<31 {
		return 0, nil, fmt.Errorf("bad range index")
	}
	p = p[n:]
	var entries []Entry
	for len(p) > 0 {
		klen, n := binary.Uvarint(p)
		if n <= 0 || klen == 0 || klen > MaxKeySize || uint64(len(p)-n) < klen {
			return 0, nil, fmt.Errorf("entry %d: bad key length", len(entries))
		}
		p = p[n:]
		e := Entry{Key: p[:klen:klen]}
		p = p[klen:]
		ts, n := binary.Varint(p)
		if n <= 0 {
			return 0, nil, fmt.Errorf("entry %d (key %q): bad timestamp", len(entries), e.Key)
		}
		p = p[n:]
		e.Record.Timestamp = ts
		if len(p) == 0 || p[0]&^entryFlagsKnown != 0 || p[0] == flagTombstone|flagExpires {
			return 0, nil, fmt.Errorf("entry %d (key %q): bad flags", len(entries), e.Key)
		}
		e.Record.Tombstone = p[0]&flagTombstone != 0
		expires := p[0]&flagExpires != 0
		p = p[1:]
		if expires {
			exp, n := binary.Varint(p)
			if n <= 0 || exp == 0 {
				return 0, nil, fmt.Errorf("entry %d (key %q): bad expiry", len(entries), e.Key)
			}
			e.Record.ExpiresAt = exp
			p = p[n:]
		}
		vlen, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < vlen || e.Record.Tombstone && vlen != 0 {
			return 0, nil, fmt.Errorf("entry %d (key %q): bad value length", len(entries), e.Key)
		}
		p = p[n:]
		if !e.Record.Tombstone {
			e.Record.Value = p[:vlen:vlen]
		}
		p = p[vlen:]
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return 0, nil, fmt.Errorf("no entries")
	}
	return int(idx), entries, nil
}

// checkPlace checks that key hashes into r and comes after prev (nil: the
// range's first) in (hash, key) order, the order of a range.
func checkPlace(r Range, prev, key []byte) error {
	h := keyhash.Sum(key)
	if !r.Contains(h) {
		return fmt.Errorf("the key %q (hash %d) is not in the range %d-%d", key, h, r.Lo, r.Hi)
	}
	if prev != nil && cmp.Or(cmp.Compare(keyhash.Sum(prev), h), bytes.Compare(prev, key)) >= 0 {
		return fmt.Errorf("the key %q comes after %q, out of order", key, prev)
	}
	return nil
}
