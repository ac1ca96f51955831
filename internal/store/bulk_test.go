package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/keyhash"
)

// TestScanAfterResumesExactly walks the whole hash space in pieces of a
// few records, each resumed after the last key of the one before, and
// gets every record exactly once, in order.
func TestScanAfterResumesExactly(t *testing.T) {
	s := openMem(t)
	want := fillScanStore(t, s, 500)
	ctx := context.Background()
	for _, step := range []int{1, 7, 64, 1000} {
		var got []scanned
		var after []byte
		for {
			n := 0
			err := s.ScanAfter(ctx, 0, math.MaxUint32, after, func(key []byte, rec Record) error {
				got = append(got, scanned{hashOf(key), string(key), cloneRecord(rec)})
				if n++; n == step {
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				t.Fatal(err)
			}
			if n < step {
				break
			}
			after = []byte(got[len(got)-1].key)
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: %d records, want %d", step, len(got), len(want))
		}
		for i := range want {
			if got[i].key != want[i].key || !sameRecord(got[i].rec, want[i].rec) {
				t.Fatalf("step %d: record %d is %v, want %v", step, i, got[i], want[i])
			}
		}
	}
	// A cursor past the range's end yields nothing; one before its start
	// starts at the range.
	last := want[len(want)-1]
	if n := countAfter(t, s, 0, last.hash-1, []byte(last.key)); n != 0 {
		t.Errorf("after a key beyond the range: %d records", n)
	}
	mid := want[250]
	if want[0].hash < mid.hash && want[249].hash < mid.hash {
		if n := countAfter(t, s, mid.hash, math.MaxUint32, []byte(want[0].key)); n != len(want)-250 {
			t.Errorf("after a key before the range: %d records, want %d", n, len(want)-250)
		}
	}
}

var errStop = errors.New("stop")

func countAfter(t *testing.T, s *Store, lo, hi uint32, after []byte) int {
	t.Helper()
	n := 0
	if err := s.ScanAfter(context.Background(), lo, hi, after, func([]byte, Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func cloneRecord(r Record) Record {
	r.Value = append([]byte(nil), r.Value...)
	return r
}

// TestPutManyKeepsWinnersAndDigests applies batches over records already
// stored: only the entries that win are written, and the store ends with
// the same records, count and digests as one that got every entry by Put.
func TestPutManyKeepsWinnersAndDigests(t *testing.T) {
	ctx := context.Background()
	bulk, single := openMem(t), openMem(t)
	r := rand.New(rand.NewPCG(1, 2))
	// Both stores hold some records first.
	for i := range 300 {
		rec := live(int64(r.IntN(100)+1), fmt.Sprint("old", i))
		mustPut(t, bulk, fmt.Sprint("k", i), rec)
		mustPut(t, single, fmt.Sprint("k", i), rec)
	}
	// The batch: older, equal and newer versions of those, and new keys.
	var entries []Entry
	for i := range 600 {
		rec := live(int64(r.IntN(200)+1), fmt.Sprint("new", i))
		if i%5 == 0 {
			rec = tomb(int64(r.IntN(200) + 1))
		}
		entries = append(entries, Entry{Key: fmt.Appendf(nil, "k%d", i), Record: rec})
	}
	sortEntries(entries)
	wrote := 0
	for start := 0; start < len(entries); start += 64 {
		n, err := bulk.PutMany(ctx, entries[start:min(start+64, len(entries))])
		if err != nil {
			t.Fatal(err)
		}
		wrote += n
	}
	written := 0
	for _, e := range entries {
		res, err := single.Put(ctx, e.Key, e.Record)
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcome == Written {
			written++
		}
	}
	if wrote != written {
		t.Errorf("PutMany wrote %d entries, Put %d", wrote, written)
	}
	if a, b := bulk.Stats().Keys, single.Stats().Keys; a != b {
		t.Errorf("keys: %d after PutMany, %d after Put", a, b)
	}
	da, _ := bulk.RangeDigest(ctx, 0, math.MaxUint32)
	db, _ := single.RangeDigest(ctx, 0, math.MaxUint32)
	if da != db {
		t.Errorf("digest %+v after PutMany, %+v after Put", da, db)
	}
	for _, e := range entries {
		if a, b := mustGet(t, bulk, string(e.Key)), mustGet(t, single, string(e.Key)); !sameRecord(a, b) {
			t.Fatalf("%s: %v after PutMany, %v after Put", e.Key, a, b)
		}
	}
}

// TestPutManyRefusesDisorder shows that a batch out of (hash, key) order,
// or with a key twice, changes nothing.
func TestPutManyRefusesDisorder(t *testing.T) {
	s := openMem(t)
	entries := []Entry{{Key: []byte("a"), Record: live(1, "x")}, {Key: []byte("b"), Record: live(1, "y")}}
	sortEntries(entries)
	for name, bad := range map[string][]Entry{
		"reversed":  {entries[1], entries[0]},
		"twice":     {entries[0], entries[0]},
		"empty key": {{Key: nil, Record: live(1, "z")}},
	} {
		if _, err := s.PutMany(context.Background(), bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := s.Stats().Keys; n != 0 {
		t.Errorf("the refused batches stored %d records", n)
	}
}

// TestPutManySurvivesACrash: what PutMany returned for is on disk after a
// crash that loses everything not synced.
func TestPutManySurvivesACrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := range 200 {
		entries = append(entries, Entry{Key: fmt.Appendf(nil, "%d", i), Record: live(int64(i+1), fmt.Sprint("v", i))})
	}
	sortEntries(entries)
	if _, err := s.PutMany(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(4, 5))})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, crashed, "db")
	for _, e := range entries {
		if got := mustGet(t, s, string(e.Key)); !sameRecord(got, e.Record) {
			t.Fatalf("after the crash, %s = %v, want %v", e.Key, got, e.Record)
		}
	}
}

// TestPutManyUnsyncedThenSync: unsynced batches are durable once Sync
// returns, and a crash before it may lose them (the crash has teeth).
func TestPutManyUnsyncedThenSync(t *testing.T) {
	for _, synced := range []bool{true, false} {
		fs := vfs.NewCrashableMem()
		s, err := Open("db", Options{FS: fs, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		var entries []Entry
		for i := range 100 {
			entries = append(entries, Entry{Key: fmt.Appendf(nil, "%d", i), Record: live(int64(i+1), fmt.Sprint("v", i))})
		}
		sortEntries(entries)
		for start := 0; start < len(entries); start += 10 {
			if _, err := s.PutManyUnsynced(context.Background(), entries[start:start+10]); err != nil {
				t.Fatal(err)
			}
		}
		if synced {
			if err := s.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(4, 5))})
		s.Close()
		s = openTest(t, crashed, "db")
		kept := s.Stats().Keys
		if synced && kept != int64(len(entries)) {
			t.Errorf("after Sync and a crash, %d of %d records", kept, len(entries))
		}
		if !synced && kept == int64(len(entries)) {
			t.Errorf("without Sync a crash kept all %d records: the test shows nothing", kept)
		}
	}
}

// TestEstimateRange counts exactly and estimates bytes above zero for a
// range that holds data.
func TestEstimateRange(t *testing.T) {
	s := openMem(t)
	want := fillScanStore(t, s, 400)
	lo, hi := want[100].hash, want[299].hash
	records, _, err := s.EstimateRange(context.Background(), lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	exact := 0
	for _, w := range want {
		if w.hash >= lo && w.hash <= hi {
			exact++
		}
	}
	if int(records) != exact {
		t.Errorf("EstimateRange counted %d records, want %d", records, exact)
	}
	if _, _, err := s.EstimateRange(context.Background(), 0, math.MaxUint32); err != nil {
		t.Errorf("whole space: %v", err)
	}
}

func hashOf(key []byte) uint32 { return keyhash.Sum(key) }

// sortEntries sorts entries in the store's (hash, key) order.
func sortEntries(entries []Entry) {
	for i := 1; i < len(entries); i++ {
		for j := i; j > 0 && cmpScanned(scanned{hashOf(entries[j].Key), string(entries[j].Key), Record{}},
			scanned{hashOf(entries[j-1].Key), string(entries[j-1].Key), Record{}}) < 0; j-- {
			entries[j], entries[j-1] = entries[j-1], entries[j]
		}
	}
}

// TestPurge removes any record, a tombstone or one with a timestamp no
// Put could beat, and keeps the digests and the count right.
func TestPurge(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	mustPut(t, s, "poisoned", live(math.MaxInt64, "x"))
	mustPut(t, s, "gone", tomb(5))
	mustPut(t, s, "kept", live(5, "y"))
	for _, k := range []string{"poisoned", "gone"} {
		if ok, err := s.Purge(ctx, []byte(k)); !ok || err != nil {
			t.Fatalf("Purge(%s) = %v, %v", k, ok, err)
		}
	}
	if ok, err := s.Purge(ctx, []byte("absent")); ok || err != nil {
		t.Fatalf("Purge(absent) = %v, %v", ok, err)
	}
	if n := s.Stats().Keys; n != 1 {
		t.Errorf("%d records left, want 1", n)
	}
	other := openMem(t)
	mustPut(t, other, "kept", live(5, "y"))
	a, _ := s.RangeDigest(ctx, 0, math.MaxUint32)
	b, _ := other.RangeDigest(ctx, 0, math.MaxUint32)
	if a != b {
		t.Errorf("digest after purges %+v, want that of the one record left %+v", a, b)
	}
}
