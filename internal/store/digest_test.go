package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/keyhash"
)

// TestFingerprintGolden pins Fingerprint: a change here makes every range
// of a cluster of mixed versions look different. The expected values were
// computed independently, with these lines of Python:
//
//	import struct
//	M = (1 << 64) - 1
//	def fnv(b):
//	    h = 14695981039346656037
//	    for c in b: h = ((h ^ c) * 1099511628211) & M
//	    return h
//	def fmix(k):
//	    k ^= k >> 33; k = (k * 0xff51afd7ed558ccd) & M
//	    k ^= k >> 33; k = (k * 0xc4ceb9fe1a85ec53) & M
//	    return k ^ (k >> 33)
//	def fp(key, ts, tomb, value):
//	    if tomb: value = b''
//	    return fmix(fnv(struct.pack('>I', len(key)) + key + struct.pack('>q', ts)
//	                    + bytes([1 if tomb else 0]) + value))
func TestFingerprintGolden(t *testing.T) {
	tests := []struct {
		key  string
		rec  Record
		want uint64
	}{
		{"k", live(0, ""), 0x0a2a0880afd2e09a},
		{"k", tomb(0), 0x79e02d4338502d08},
		{"hello", live(1700000000000000, "world"), 0xf17bbe9759f3992a},
		{"user:42", Record{Timestamp: -1, Value: []byte{0x00, 0xff}}, 0xa615c185237bd9e6},
		{"gone", Record{Timestamp: 1234567890123456, Tombstone: true, Value: []byte("ignored")}, 0x4c97bf6f74dbca09},
		{"\x00", live(math.MaxInt64, string(bytes.Repeat([]byte("x"), 100))), 0xade4cb06d684f19a},
	}
	for _, tt := range tests {
		if got := Fingerprint([]byte(tt.key), tt.rec); got != tt.want {
			t.Errorf("Fingerprint(%q, %v) = %#016x, want %#016x", tt.key, tt.rec, got, tt.want)
		}
	}
}

// TestFingerprintFields checks that every field of a record, and where the
// key ends and the value begins, changes the fingerprint, and that what Put
// does not store (a tombstone's value, nil against empty) does not.
func TestFingerprintFields(t *testing.T) {
	type keyed struct {
		key string
		rec Record
	}
	base := keyed{"key", live(100, "value")}
	tests := []struct {
		name  string
		a, b  keyed
		equal bool
	}{
		{"same record", base, keyed{"key", live(100, "value")}, true},
		{"nil and empty value", keyed{"k", Record{Timestamp: 1}}, keyed{"k", Record{Timestamp: 1, Value: []byte{}}}, true},
		{"a tombstone's value", keyed{"k", tomb(5)}, keyed{"k", Record{Timestamp: 5, Tombstone: true, Value: []byte("x")}}, true},
		{"other key", base, keyed{"kez", base.rec}, false},
		{"longer key", base, keyed{"keys", base.rec}, false},
		{"key bytes moved into the value", base, keyed{"ke", live(100, "yvalue")}, false},
		{"newer timestamp", base, keyed{"key", live(101, "value")}, false},
		{"negative timestamp", base, keyed{"key", live(-100, "value")}, false},
		{"other value", base, keyed{"key", live(100, "valuf")}, false},
		{"empty value", base, keyed{"key", live(100, "")}, false},
		{"tombstone", base, keyed{"key", Record{Timestamp: 100, Tombstone: true, Value: []byte("value")}}, false},
		{"tombstone and empty value", keyed{"k", tomb(5)}, keyed{"k", live(5, "")}, false},
		{"an expiry", base, keyed{"key", Record{Timestamp: 100, Value: []byte("value"), ExpiresAt: 200}}, false},
		{"another expiry", keyed{"key", Record{Timestamp: 100, Value: []byte("value"), ExpiresAt: 201}}, keyed{"key", Record{Timestamp: 100, Value: []byte("value"), ExpiresAt: 200}}, false},
		{"a tombstone's expiry", keyed{"k", tomb(5)}, keyed{"k", Record{Timestamp: 5, Tombstone: true, ExpiresAt: 9}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := Fingerprint([]byte(tt.a.key), tt.a.rec), Fingerprint([]byte(tt.b.key), tt.b.rec)
			if (a == b) != tt.equal {
				t.Errorf("Fingerprint(%q, %v) = %#016x, Fingerprint(%q, %v) = %#016x; want equal: %v",
					tt.a.key, tt.a.rec, a, tt.b.key, tt.b.rec, b, tt.equal)
			}
		})
	}
}

// hotSlots are the slots testKeys crowds keys into: the two ends of the
// hash space and a slot boundary in its middle.
var hotSlots = []uint32{0, 1, 2, 0x7fff, 0x8000, DigestSlots - 1}

// testKeys returns n keys, prefix-0, prefix-1 ..., of which one in two has
// its hash in one of hotSlots, so that ranges inside one slot or cutting
// slots have records to digest.
func testKeys(prefix string, n int) [][]byte {
	hot := make(map[uint32]bool)
	for _, s := range hotSlots {
		hot[s] = true
	}
	keys := make([][]byte, 0, n)
	buf := []byte(prefix + "-")
	for i := 0; len(keys) < n; i++ {
		k := strconv.AppendInt(buf[:len(prefix)+1], int64(i), 10)
		if len(keys)%2 == 0 || hot[keyhash.Sum(k)>>slotShift] {
			keys = append(keys, bytes.Clone(k))
		}
		buf = k
	}
	return keys
}

// hashedFingerprint is a record's key hash and fingerprint.
type hashedFingerprint struct {
	hash uint32
	fp   uint64
}

// bruteForce returns the key hash and fingerprint of every record, read
// with Scan.
func bruteForce(t *testing.T, s *Store) []hashedFingerprint {
	t.Helper()
	var all []hashedFingerprint
	err := s.Scan(context.Background(), 0, math.MaxUint32, func(key []byte, rec Record) error {
		all = append(all, hashedFingerprint{keyhash.Sum(key), Fingerprint(key, rec)})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return all
}

// digestOf computes the digest of [lo, hi] record by record.
func digestOf(all []hashedFingerprint, lo, hi uint32) Digest {
	var d Digest
	for _, r := range all {
		if lo <= r.hash && r.hash <= hi {
			d.XOR ^= r.fp
			d.Count++
		}
	}
	return d
}

// testRanges returns ranges of every shape RangeDigest distinguishes: the
// whole space, empty ones, ranges inside one slot, cutting one or two
// slots, aligned on slots, and bounded by records' hashes.
func testRanges(rng *rand.Rand, all []hashedFingerprint, n int) [][2]uint32 {
	const top = math.MaxUint32
	ranges := [][2]uint32{
		{0, top}, {0, 0}, {top, top}, {1, 0}, {top, 0},
		{0, slotMask}, {slotMask, slotMask + 1}, {slotMask + 1, top}, {0, top - 1}, {1, top},
		{0x8000 << slotShift, 0x8000<<slotShift | slotMask}, {0x7fff << slotShift, 0x8000<<slotShift | slotMask},
		{0x7fff<<slotShift | 1, 0x8000<<slotShift | slotMask - 1},
	}
	// within returns a random hash of slot s.
	within := func(s uint32) uint32 { return s<<slotShift | rng.Uint32N(slotMask+1) }
	hot := func() uint32 { return hotSlots[rng.IntN(len(hotSlots))] }
	for len(ranges) < n {
		var lo, hi uint32
		switch rng.IntN(6) {
		case 0: // anywhere, lo > hi half the time
			lo, hi = rng.Uint32(), rng.Uint32()
		case 1: // inside one slot
			s := hot()
			lo, hi = within(s), within(s)
			lo, hi = min(lo, hi), max(lo, hi)
		case 2: // from one slot into one of the next three
			s := hot()
			lo, hi = within(s), within(min(s+1+rng.Uint32N(3), DigestSlots-1))
		case 3: // whole slots
			a, b := rng.Uint32N(DigestSlots), rng.Uint32N(DigestSlots)
			lo, hi = min(a, b)<<slotShift, max(a, b)<<slotShift|slotMask
		case 4, 5: // on, or next to, the hashes of records
			if len(all) == 0 {
				continue
			}
			a, b := all[rng.IntN(len(all))].hash, all[rng.IntN(len(all))].hash
			lo, hi = min(a, b), max(a, b)
			if rng.IntN(2) == 0 && lo < hi {
				lo++
			}
			if rng.IntN(2) == 0 && hi > lo {
				hi--
			}
		}
		ranges = append(ranges, [2]uint32{lo, hi})
	}
	return ranges
}

// checkRanges compares RangeDigest with a recomputation from Scan over
// n ranges.
func checkRanges(t *testing.T, s *Store, rng *rand.Rand, n int) {
	t.Helper()
	all := bruteForce(t, s)
	for _, r := range testRanges(rng, all, n) {
		got, err := s.RangeDigest(context.Background(), r[0], r[1])
		if err != nil {
			t.Fatalf("RangeDigest(%#08x, %#08x): %v", r[0], r[1], err)
		}
		if want := digestOf(all, r[0], r[1]); got != want {
			t.Fatalf("RangeDigest(%#08x, %#08x) = %+v, want %+v from Scan", r[0], r[1], got, want)
		}
	}
}

// TestSplitRange checks that splitRange partitions a range into whole slots
// and at most two pieces of slots, each of which it cuts: every hash of the
// range is in exactly one part, and no slot is scanned whole.
func TestSplitRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 43))
	for _, r := range testRanges(rng, nil, 20000) {
		lo, hi := r[0], r[1]
		if lo > hi {
			continue
		}
		first, last, cut, n := splitRange(lo, hi)
		parts := slices.Clone(cut[:n])
		for _, c := range parts {
			if c[0]>>slotShift != c[1]>>slotShift || c[0] > c[1] || (c[0]&slotMask == 0 && c[1]&slotMask == slotMask) {
				t.Fatalf("splitRange(%#08x, %#08x) cut %#08x-%#08x, want a part of one slot", lo, hi, c[0], c[1])
			}
		}
		if first <= last {
			parts = append(parts, [2]uint32{uint32(first) << slotShift, uint32(last)<<slotShift | slotMask})
		}
		slices.SortFunc(parts, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
		next := uint64(lo)
		for _, p := range parts {
			if uint64(p[0]) != next {
				t.Fatalf("splitRange(%#08x, %#08x) = slots %#04x-%#04x and cuts %x: %#08x is not in exactly one part", lo, hi, first, last, cut[:n], next)
			}
			next = uint64(p[1]) + 1
		}
		if next != uint64(hi)+1 {
			t.Fatalf("splitRange(%#08x, %#08x) = slots %#04x-%#04x and cuts %x: ends at %#08x", lo, hi, first, last, cut[:n], next-1)
		}
	}
}

// TestSlotDigestConcurrentUpdates hammers one slot from many goroutines, as
// writers of different stripes do: no update may be lost.
func TestSlotDigestConcurrentUpdates(t *testing.T) {
	const (
		writers   = 16
		perWriter = 20000
	)
	// fp is a fingerprint of writer w's record i.
	fp := func(w, i int) uint64 { return fmix64(uint64(w)<<32 | uint64(i)) }
	var d slotDigest
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				d.added(fp(w, i))
			}
			for i := 0; i < perWriter; i += 2 {
				d.removed(fp(w, i+1))
				d.replaced(fp(w, i), ^fp(w, i))
			}
		})
	}
	wg.Wait()
	var want Digest // the even records, overwritten
	for w := range writers {
		for i := 0; i < perWriter; i += 2 {
			want.add(^fp(w, i))
		}
	}
	if got := (Digest{d.xor.Load(), d.count.Load()}); got != want {
		t.Errorf("after concurrent updates, slot digest = %+v, want %+v", got, want)
	}
}

// opCounts counts what randomOps did, to show that it covers every case.
type opCounts struct {
	created, overwritten, stale, unchanged, removed, notRemoved int
}

// randomOps applies n random writes to keys: Puts of new keys, of newer,
// older and equal records, of tombstones, and Removes that match or not.
func randomOps(t *testing.T, s *Store, rng *rand.Rand, keys [][]byte, n int, c *opCounts) {
	t.Helper()
	ctx := context.Background()
	for range n {
		key := keys[rng.IntN(len(keys))]
		cur, err := s.Get(ctx, key)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q): %v", key, err)
		}
		op := rng.IntN(10)
		if found && op >= 7 {
			expect := cur
			if op == 9 { // someone else's idea of the record
				expect.Timestamp += int64(rng.IntN(3)) - 1
				expect.Tombstone = !expect.Tombstone
			}
			removed, err := s.Remove(ctx, key, expect)
			if err != nil || removed != (op != 9) {
				t.Fatalf("Remove(%q, %v) of %v = %v, %v", key, expect, cur, removed, err)
			}
			if removed {
				c.removed++
			} else {
				c.notRemoved++
			}
			continue
		}
		rec := Record{Timestamp: rng.Int64N(1000), Value: []byte{'a' + byte(rng.IntN(3))}}
		switch {
		case found && op < 2:
			rec = cur
		case found:
			rec.Timestamp = cur.Timestamp + int64(rng.IntN(3)) - 1
		}
		if rng.IntN(5) == 0 {
			rec = Record{Timestamp: rec.Timestamp, Tombstone: true}
		}
		res, err := s.Put(ctx, key, rec)
		if err != nil {
			t.Fatalf("Put(%q, %v): %v", key, rec, err)
		}
		switch {
		case res.Outcome == Written && !found:
			c.created++
		case res.Outcome == Written:
			c.overwritten++
		case res.Outcome == Stale:
			c.stale++
		case res.Outcome == Unchanged:
			c.unchanged++
		}
	}
}

// TestRangeDigestMatchesBruteForce checks RangeDigest against a
// recomputation from Scan and Fingerprint after every few hundred random
// writes.
func TestRangeDigestMatchesBruteForce(t *testing.T) {
	s := openMem(t)
	rng := rand.New(rand.NewPCG(7, 11))
	keys := testKeys("prop", 600)
	var c opCounts
	for range 12 {
		randomOps(t, s, rng, keys, 500, &c)
		checkRanges(t, s, rng, 300)
	}
	if c.created == 0 || c.overwritten == 0 || c.stale == 0 || c.unchanged == 0 || c.removed == 0 || c.notRemoved == 0 {
		t.Errorf("the random writes missed a case: %+v", c)
	}
	all := bruteForce(t, s)
	if got := s.Stats().Keys; got != int64(len(all)) {
		t.Errorf("Stats().Keys = %d, want %d", got, len(all))
	}
}

// slotsOf returns the digest of every slot, as RangeDigest reports it.
func slotsOf(t *testing.T, s *Store) []Digest {
	t.Helper()
	d := make([]Digest, DigestSlots)
	for i := range d {
		var err error
		lo := uint32(i) << slotShift
		if d[i], err = s.RangeDigest(context.Background(), lo, lo|slotMask); err != nil {
			t.Fatalf("RangeDigest of slot %d: %v", i, err)
		}
	}
	return d
}

// checkSlots compares the digest of every slot with a recomputation from
// Scan, and the store's key count with the number of records.
func checkSlots(t *testing.T, s *Store) {
	t.Helper()
	all := bruteForce(t, s)
	want := make([]Digest, DigestSlots)
	for _, r := range all {
		want[r.hash>>slotShift].add(r.fp)
	}
	for i, got := range slotsOf(t, s) {
		if got != want[i] {
			t.Errorf("digest of slot %#04x = %+v, want %+v from Scan", i, got, want[i])
		}
	}
	if got := s.Stats().Keys; got != int64(len(all)) {
		t.Errorf("Stats().Keys = %d, want %d", got, len(all))
	}
}

// TestRangeDigestConcurrentWrites races Puts and Removes of overlapping
// keys, crowded into few slots so that many stripes update each slot at
// once; run it with -race.
func TestRangeDigestConcurrentWrites(t *testing.T) {
	const (
		writers   = 16
		perWriter = 400
	)
	s := openMem(t)
	ctx := context.Background()
	keys := testKeys("race", 128)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(13, uint64(w)))
			for range perWriter {
				key := keys[rng.IntN(len(keys))]
				if rng.IntN(8) == 0 {
					cur, err := s.Get(ctx, key)
					if err == nil {
						_, err = s.Remove(ctx, key, cur)
					}
					if err != nil && !errors.Is(err, ErrNotFound) {
						t.Errorf("Get and Remove(%q): %v", key, err)
						return
					}
					continue
				}
				rec := Record{Timestamp: rng.Int64N(30), Value: []byte{'a' + byte(rng.IntN(4))}}
				if rng.IntN(5) == 0 {
					rec = tomb(rec.Timestamp)
				}
				if _, err := s.Put(ctx, key, rec); err != nil {
					t.Errorf("Put(%q, %v): %v", key, rec, err)
					return
				}
			}
		})
	}
	wg.Wait()

	all := bruteForce(t, s)
	got, err := s.RangeDigest(ctx, 0, math.MaxUint32)
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf(all, 0, math.MaxUint32); got != want || want.Count == 0 {
		t.Errorf("after concurrent writes, RangeDigest of the whole space = %+v, want %+v from Scan", got, want)
	}
	checkSlots(t, s)
}

// TestRangeDigestReopen checks that Open rebuilds the digests that Put and
// Remove kept up to date before Close.
func TestRangeDigestReopen(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var c opCounts
	randomOps(t, s, rand.New(rand.NewPCG(17, 19)), testKeys("reopen", 500), 3000, &c)
	before := slotsOf(t, s)
	keysBefore := s.Stats().Keys
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, fs, "db")
	after := slotsOf(t, s)
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("digest of slot %#04x = %+v after reopening, %+v before", i, after[i], before[i])
		}
	}
	if got := s.Stats().Keys; got != keysBefore {
		t.Errorf("Stats().Keys = %d after reopening, %d before", got, keysBefore)
	}
	checkSlots(t, s)
}

// TestRangeDigestOrderIndependent gives two stores the same records, several
// versions per key, in different orders: like replicas that converged, they
// have equal digests of every range.
func TestRangeDigestOrderIndependent(t *testing.T) {
	type write struct {
		key []byte
		rec Record
	}
	rng := rand.New(rand.NewPCG(23, 29))
	var writes []write
	for _, key := range testKeys("order", 400) {
		for range 1 + rng.IntN(4) {
			rec := Record{Timestamp: rng.Int64N(5), Value: []byte{'a' + byte(rng.IntN(3))}}
			if rng.IntN(4) == 0 {
				rec = tomb(rec.Timestamp)
			}
			writes = append(writes, write{key, rec})
		}
	}
	a, b := openMem(t), openMem(t)
	for _, s := range []*Store{a, b} {
		rng.Shuffle(len(writes), func(i, j int) { writes[i], writes[j] = writes[j], writes[i] })
		for _, w := range writes {
			if _, err := s.Put(context.Background(), w.key, w.rec); err != nil {
				t.Fatal(err)
			}
		}
	}

	da, db := slotsOf(t, a), slotsOf(t, b)
	for i := range da {
		if da[i] != db[i] {
			t.Errorf("digest of slot %#04x = %+v in one store, %+v in the other", i, da[i], db[i])
		}
	}
	for _, r := range testRanges(rng, bruteForce(t, a), 500) {
		ga, erra := a.RangeDigest(context.Background(), r[0], r[1])
		gb, errb := b.RangeDigest(context.Background(), r[0], r[1])
		if erra != nil || errb != nil || ga != gb {
			t.Errorf("RangeDigest(%#08x, %#08x) = %+v, %v in one store, %+v, %v in the other", r[0], r[1], ga, erra, gb, errb)
		}
	}
	if d, _ := a.RangeDigest(context.Background(), 0, math.MaxUint32); d.Count != 400 {
		t.Errorf("RangeDigest of the whole space counts %d records, want 400", d.Count)
	}
}

// TestFingerprints checks that Fingerprints reports what Scan and
// Fingerprint do, and stops at its callback's error.
func TestFingerprints(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	var c opCounts
	randomOps(t, s, rand.New(rand.NewPCG(31, 37)), testKeys("fps", 300), 1000, &c)

	type seen struct {
		key string
		fp  uint64
		ts  int64
	}
	lo, hi := uint32(0x7fff<<slotShift|0x1234), uint32(0x8000<<slotShift|0x4321)
	var want, got []seen
	if err := s.Scan(ctx, lo, hi, func(key []byte, rec Record) error {
		want = append(want, seen{string(key), Fingerprint(key, rec), rec.Timestamp})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Fingerprints(ctx, lo, hi, func(key []byte, fp uint64, ts int64) error {
		got = append(got, seen{string(key), fp, ts})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Fingerprints(%#08x, %#08x) = %v, want %v", lo, hi, got, want)
	}

	stop := errors.New("stop")
	calls := 0
	err := s.Fingerprints(ctx, 0, math.MaxUint32, func([]byte, uint64, int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Fingerprints = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// TestOpenRejectsCorruptRecord: Open reads every record to build the
// digests, and refuses a store with a record it cannot decode rather than
// digest it wrongly.
func TestOpenRejectsCorruptRecord(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", live(1, "v"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open("db", &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatValueSeparation, Logger: pebbleLogger{l: testLogger(t), fate: &fate{logger: testLogger(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	bad := encodeValue(live(1, "v"))
	bad[0] = formatVersion + 1
	if err := db.Set(encodeKey(keyhash.Sum([]byte("k")), []byte("k")), bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open("db", Options{FS: fs, Logger: testLogger(t)}); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a store with a corrupt record = %v, want ErrCorrupt", err)
	}
}
