package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/keyhash"
)

// testLogger sends a store's logs to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openTest opens a store in dir on fs (the real disk if nil) and closes it
// when the test ends.
func openTest(t testing.TB, fs vfs.FS, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openMem opens a store on a fresh in-memory file system.
func openMem(t testing.TB) *Store { return openTest(t, vfs.NewMem(), "db") }

func mustPut(t testing.TB, s *Store, key string, rec Record) PutResult {
	t.Helper()
	res, err := s.Put(context.Background(), []byte(key), rec)
	if err != nil {
		t.Fatalf("Put(%q, %v): %v", key, rec, err)
	}
	return res
}

func mustGet(t testing.TB, s *Store, key string) Record {
	t.Helper()
	rec, err := s.Get(context.Background(), []byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return rec
}

func TestPutOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		before []Record // put first, in order
		put    Record
		want   Outcome
		stored Record // the record stored afterwards, and PutResult.Current
	}{
		{"new key is written", nil, live(10, "a"), Written, live(10, "a")},
		{"new tombstone is written", nil, tomb(10), Written, tomb(10)},
		{"newer value wins", []Record{live(10, "a")}, live(11, "b"), Written, live(11, "b")},
		{"older value is stale", []Record{live(10, "a")}, live(9, "b"), Stale, live(10, "a")},
		{"identical value is unchanged", []Record{live(10, "a")}, live(10, "a"), Unchanged, live(10, "a")},
		{"identical empty value is unchanged", []Record{live(10, "")}, live(10, ""), Unchanged, live(10, "")},
		{"identical tombstone is unchanged", []Record{tomb(10)}, tomb(10), Unchanged, tomb(10)},
		{"larger bytes win a timestamp tie", []Record{live(10, "a")}, live(10, "b"), Written, live(10, "b")},
		{"smaller bytes lose a timestamp tie", []Record{live(10, "b")}, live(10, "a"), Stale, live(10, "b")},
		{"bytes win over an empty value at a tie", []Record{live(10, "")}, live(10, "a"), Written, live(10, "a")},
		{"tombstone wins over a value at a tie", []Record{live(10, "a")}, tomb(10), Written, tomb(10)},
		{"value loses to a tombstone at a tie", []Record{tomb(10)}, live(10, "zzz"), Stale, tomb(10)},
		{"newer tombstone wins over a value", []Record{live(10, "a")}, tomb(11), Written, tomb(11)},
		{"older tombstone is stale", []Record{live(10, "a")}, tomb(9), Stale, live(10, "a")},
		{"value wins over an older tombstone", []Record{tomb(10)}, live(11, "a"), Written, live(11, "a")},
		{"older value is stale after a tombstone", []Record{tomb(10)}, live(9, "a"), Stale, tomb(10)},
		{"tombstone value is dropped", nil, Record{Timestamp: 10, Tombstone: true, Value: []byte("x")}, Written, tomb(10)},
		{"tombstone value is ignored", []Record{tomb(10)}, Record{Timestamp: 10, Tombstone: true, Value: []byte("x")}, Unchanged, tomb(10)},
		{"the winner of a sequence stays", []Record{live(5, "a"), live(12, "c"), live(7, "b")}, live(11, "d"), Stale, live(12, "c")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openMem(t)
			for _, rec := range tt.before {
				mustPut(t, s, "k", rec)
			}
			res := mustPut(t, s, "k", tt.put)
			if res.Outcome != tt.want {
				t.Errorf("Put(%v) outcome = %v, want %v", tt.put, res.Outcome, tt.want)
			}
			if !sameRecord(res.Current, tt.stored) {
				t.Errorf("Put(%v) current = %v, want %v", tt.put, res.Current, tt.stored)
			}
			if got := mustGet(t, s, "k"); !sameRecord(got, tt.stored) {
				t.Errorf("Get after Put(%v) = %v, want %v", tt.put, got, tt.stored)
			}
		})
	}
}

// TestPutTieBothOrders checks that two records with equal timestamps end
// with the same winner whichever arrives first: replicas converge.
func TestPutTieBothOrders(t *testing.T) {
	pairs := [][2]Record{
		{live(10, "a"), live(10, "b")},
		{live(10, ""), live(10, "a")},
		{live(10, "ab"), live(10, "b")},
		{live(10, "a"), tomb(10)},
	}
	for _, p := range pairs {
		t.Run(fmt.Sprintf("%v/%v", p[0], p[1]), func(t *testing.T) {
			winner := p[0]
			if Compare(p[1], p[0]) > 0 {
				winner = p[1]
			}
			for _, order := range [][2]Record{{p[0], p[1]}, {p[1], p[0]}} {
				s := openMem(t)
				mustPut(t, s, "k", order[0])
				mustPut(t, s, "k", order[1])
				if got := mustGet(t, s, "k"); !sameRecord(got, winner) {
					t.Errorf("after Put(%v), Put(%v): Get = %v, want %v", order[0], order[1], got, winner)
				}
			}
		})
	}
}

func TestGetNotFound(t *testing.T) {
	s := openMem(t)
	mustPut(t, s, "present", live(1, "v"))
	if _, err := s.Get(context.Background(), []byte("absent")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(absent) error = %v, want ErrNotFound", err)
	}
}

func TestEmptyKey(t *testing.T) {
	s := openMem(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, nil, live(1, "v")); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Put(empty key) error = %v, want ErrEmptyKey", err)
	}
	if _, err := s.Get(ctx, []byte{}); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Get(empty key) error = %v, want ErrEmptyKey", err)
	}
	if _, err := s.Remove(ctx, nil, live(1, "v")); !errors.Is(err, ErrEmptyKey) {
		t.Errorf("Remove(empty key) error = %v, want ErrEmptyKey", err)
	}
}

func TestEmptyValue(t *testing.T) {
	s := openMem(t)
	mustPut(t, s, "k", live(1, ""))
	got := mustGet(t, s, "k")
	if got.Tombstone || len(got.Value) != 0 || got.Timestamp != 1 {
		t.Errorf("Get = %v, want a live empty value at 1", got)
	}
}

func TestNoAliasing(t *testing.T) {
	s := openMem(t)
	value := []byte("original")
	res := mustPut(t, s, "k", Record{Timestamp: 1, Value: value})
	copy(value, "MUTATED!")
	copy(res.Current.Value, "MUTATED!")
	got := mustGet(t, s, "k")
	if string(got.Value) != "original" {
		t.Fatalf("Get after mutating the caller's and the result's value = %q, want %q", got.Value, "original")
	}
	copy(got.Value, "MUTATED!")
	if got := mustGet(t, s, "k"); string(got.Value) != "original" {
		t.Errorf("Get after mutating an earlier Get's value = %q, want %q", got.Value, "original")
	}
	stale := mustPut(t, s, "k", live(0, "old"))
	copy(stale.Current.Value, "MUTATED!")
	if got := mustGet(t, s, "k"); string(got.Value) != "original" {
		t.Errorf("Get after mutating a Stale result's value = %q, want %q", got.Value, "original")
	}
}

func TestCanceledContext(t *testing.T) {
	s := openMem(t)
	mustPut(t, s, "k", live(1, "v"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if _, err := s.Put(ctx, []byte("new"), live(1, "v")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put error = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, context.Canceled) {
		t.Errorf("Get error = %v, want context.Canceled", err)
	}
	if _, err := s.Remove(ctx, []byte("k"), live(1, "v")); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove error = %v, want context.Canceled", err)
	}
	called := false
	err := s.Scan(ctx, 0, math.MaxUint32, func([]byte, Record) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("Scan error = %v, called fn = %v; want context.Canceled, no call", err, called)
	}
	err = s.Fingerprints(ctx, 0, math.MaxUint32, func([]byte, uint64, int64) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("Fingerprints error = %v, called fn = %v; want context.Canceled, no call", err, called)
	}
	if _, err := s.RangeDigest(ctx, 0, math.MaxUint32); !errors.Is(err, context.Canceled) {
		t.Errorf("RangeDigest error = %v, want context.Canceled", err)
	}

	if _, err := s.Get(context.Background(), []byte("new")); !errors.Is(err, ErrNotFound) {
		t.Errorf("canceled Put wrote: Get error = %v, want ErrNotFound", err)
	}
	if got := mustGet(t, s, "k"); !sameRecord(got, live(1, "v")) {
		t.Errorf("canceled Remove removed: Get = %v", got)
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name    string
		stored  *Record
		expect  Record
		want    bool
		remains bool
	}{
		{"removes the expected value", &Record{Timestamp: 10, Value: []byte("a")}, live(10, "a"), true, false},
		{"removes the expected tombstone", &Record{Timestamp: 10, Tombstone: true}, tomb(10), true, false},
		{"keeps a newer record", &Record{Timestamp: 11, Value: []byte("a")}, live(10, "a"), false, true},
		{"keeps an older record", &Record{Timestamp: 9, Value: []byte("a")}, live(10, "a"), false, true},
		{"keeps other bytes", &Record{Timestamp: 10, Value: []byte("b")}, live(10, "a"), false, true},
		{"keeps a value when a tombstone is expected", &Record{Timestamp: 10, Value: []byte("a")}, tomb(10), false, true},
		{"keeps a tombstone when a value is expected", &Record{Timestamp: 10, Tombstone: true}, live(10, ""), false, true},
		{"nothing to remove", nil, live(10, "a"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openMem(t)
			if tt.stored != nil {
				mustPut(t, s, "k", *tt.stored)
			}
			got, err := s.Remove(context.Background(), []byte("k"), tt.expect)
			if err != nil || got != tt.want {
				t.Fatalf("Remove(%v) = %v, %v; want %v", tt.expect, got, err, tt.want)
			}
			rec, err := s.Get(context.Background(), []byte("k"))
			switch {
			case tt.remains && (err != nil || !sameRecord(rec, *tt.stored)):
				t.Errorf("Get after Remove = %v, %v; want %v", rec, err, *tt.stored)
			case !tt.remains && !errors.Is(err, ErrNotFound):
				t.Errorf("Get after Remove = %v, %v; want ErrNotFound", rec, err)
			}
			wantKeys := int64(0)
			if tt.remains {
				wantKeys = 1
			}
			if got := s.Stats().Keys; got != wantKeys {
				t.Errorf("Stats().Keys = %d, want %d", got, wantKeys)
			}
		})
	}
}

// TestConcurrentPutsSameKey races Puts of random records to one key and
// checks that the winner of them all is what remains, and that every Put
// reported an outcome consistent with its record.
func TestConcurrentPutsSameKey(t *testing.T) {
	const (
		writers   = 16
		perWriter = 300
	)
	s := openTest(t, nil, t.TempDir())
	ctx := context.Background()
	key := []byte("contended")

	maxes := make([]Record, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(1, uint64(w)))
			var best Record
			for i := range perWriter {
				// Few timestamps and values, so that ties are common.
				rec := Record{Timestamp: rng.Int64N(40), Value: []byte{'a' + byte(rng.IntN(4))}}
				if rng.IntN(5) == 0 {
					rec = Record{Timestamp: rec.Timestamp, Tombstone: true}
				}
				if i == 0 || Compare(rec, best) > 0 {
					best = rec
				}
				res, err := s.Put(ctx, key, rec)
				if err != nil {
					t.Errorf("Put(%v): %v", rec, err)
					return
				}
				switch c := Compare(res.Current, rec); {
				case res.Outcome == Written && !sameRecord(res.Current, rec),
					res.Outcome == Unchanged && c != 0,
					res.Outcome == Stale && c <= 0:
					t.Errorf("Put(%v) = %v with current %v", rec, res.Outcome, res.Current)
				}
			}
			maxes[w] = best
		})
	}
	wg.Wait()

	want := slices.MaxFunc(maxes, Compare)
	if got := mustGet(t, s, string(key)); !sameRecord(got, want) {
		t.Errorf("after concurrent Puts, Get = %v, want the maximum %v", got, want)
	}
}

// scanned is one record passed to a Scan callback, copied.
type scanned struct {
	hash uint32
	key  string
	rec  Record
}

func cmpScanned(a, b scanned) int {
	return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.key, b.key))
}

// fillScanStore puts n records with keys key-0 ... and returns them in
// (hash, key) order.
func fillScanStore(t *testing.T, s *Store, n int) []scanned {
	t.Helper()
	want := make([]scanned, n)
	for i := range n {
		key := fmt.Sprintf("key-%d", i)
		rec := live(int64(i), fmt.Sprintf("value-%d", i))
		if i%7 == 0 {
			rec = tomb(int64(i))
		}
		mustPut(t, s, key, rec)
		want[i] = scanned{keyhash.Sum([]byte(key)), key, rec}
	}
	slices.SortFunc(want, cmpScanned)
	return want
}

// scanAll scans [lo, hi] and returns copies of what it saw.
func scanAll(t *testing.T, s *Store, lo, hi uint32) []scanned {
	t.Helper()
	var got []scanned
	err := s.Scan(context.Background(), lo, hi, func(key []byte, rec Record) error {
		rec.Value = bytes.Clone(rec.Value)
		got = append(got, scanned{keyhash.Sum(key), string(key), rec})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%#08x, %#08x): %v", lo, hi, err)
	}
	return got
}

func TestScanPartition(t *testing.T) {
	s := openMem(t)
	want := fillScanStore(t, s, 3000)

	rng := rand.New(rand.NewPCG(2, 3))
	// Range starts: the ends of the hash space, points on each side of
	// some keys' hashes, and random points.
	starts := []uint32{0, 1, math.MaxUint32 - 1, math.MaxUint32}
	for i := 0; i < len(want); i += 97 {
		h := want[i].hash
		starts = append(starts, h, h+1)
	}
	for range 50 {
		starts = append(starts, rng.Uint32())
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)

	var got []scanned
	for i, lo := range starts {
		hi := uint32(math.MaxUint32)
		if i+1 < len(starts) {
			hi = starts[i+1] - 1
		}
		part := scanAll(t, s, lo, hi)
		for _, r := range part {
			if r.hash < lo || r.hash > hi {
				t.Errorf("Scan(%#08x, %#08x) returned %q with hash %#08x", lo, hi, r.key, r.hash)
			}
		}
		got = append(got, part...)
	}
	if len(got) != len(want) {
		t.Fatalf("partition of %d ranges returned %d records, want %d", len(starts), len(got), len(want))
	}
	for i := range want {
		if got[i].key != want[i].key || !sameRecord(got[i].rec, want[i].rec) {
			t.Fatalf("record %d of the partition = %q %v, want %q %v", i, got[i].key, got[i].rec, want[i].key, want[i].rec)
		}
	}

	if all := scanAll(t, s, 0, math.MaxUint32); len(all) != len(want) {
		t.Errorf("Scan of the whole space returned %d records, want %d", len(all), len(want))
	}
	if empty := scanAll(t, s, 10, 9); len(empty) != 0 {
		t.Errorf("Scan with lo > hi returned %d records, want none", len(empty))
	}
}

func TestScanStopsWithCallbackError(t *testing.T) {
	s := openMem(t)
	fillScanStore(t, s, 100)
	stop := errors.New("stop")
	calls := 0
	err := s.Scan(context.Background(), 0, math.MaxUint32, func([]byte, Record) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 10 {
		t.Errorf("Scan = %v after %d calls; want the callback's error after 10", err, calls)
	}
}

func TestScanStopsWhenContextCanceled(t *testing.T) {
	s := openMem(t)
	fillScanStore(t, s, 3*ctxCheckEvery)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := s.Scan(ctx, 0, math.MaxUint32, func([]byte, Record) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls > ctxCheckEvery {
		t.Errorf("Scan = %v after %d calls; want context.Canceled within %d", err, calls, ctxCheckEvery)
	}
}

// TestScanCallbackRemoves is garbage collection: a Scan whose callback
// removes the tombstones it sees.
func TestScanCallbackRemoves(t *testing.T) {
	s := openMem(t)
	want := fillScanStore(t, s, 500)
	ctx := context.Background()
	err := s.Scan(ctx, 0, math.MaxUint32, func(key []byte, rec Record) error {
		if !rec.Tombstone {
			return nil
		}
		removed, err := s.Remove(ctx, key, rec)
		if err == nil && !removed {
			err = fmt.Errorf("tombstone %q not removed", key)
		}
		return err
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	live := slices.DeleteFunc(want, func(r scanned) bool { return r.rec.Tombstone })
	got := scanAll(t, s, 0, math.MaxUint32)
	if !slices.EqualFunc(got, live, func(a, b scanned) bool { return a.key == b.key && sameRecord(a.rec, b.rec) }) {
		t.Errorf("after removing tombstones, Scan returned %d records, want the %d live ones", len(got), len(live))
	}
}

// TestReopen writes 10,000 records to a real disk, closes, reopens, and
// finds them all.
func TestReopen(t *testing.T) {
	const (
		n       = 10000
		writers = 16
	)
	dir := t.TempDir()
	ctx := context.Background()
	key := func(i int) []byte { return fmt.Appendf(nil, "reopen-%d", i) }
	rec := func(i int) Record {
		if i%10 == 0 {
			return tomb(int64(i))
		}
		return Record{Timestamp: int64(i), Value: bytes.Repeat(fmt.Appendf(nil, "%d.", i), 10)}
	}

	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if _, err := s.Put(ctx, key(i), rec(i)); err != nil {
					t.Errorf("Put(%q): %v", key(i), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s = openTest(t, nil, dir)
	for i := range n {
		got, err := s.Get(ctx, key(i))
		if err != nil || !sameRecord(got, rec(i)) {
			t.Fatalf("after reopening, Get(%q) = %v, %v; want %v", key(i), got, err, rec(i))
		}
	}
	if got := len(scanAll(t, s, 0, math.MaxUint32)); got != n {
		t.Errorf("after reopening, Scan returned %d records, want %d", got, n)
	}
	st := s.Stats()
	if st.Keys != n || st.DiskBytes == 0 {
		t.Errorf("after reopening, Stats = %+v, want %d keys and some bytes", st, n)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", live(1, "v"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, []byte("k"), live(2, "v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close error = %v, want ErrClosed", err)
	}
	if _, err := s.Get(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close error = %v, want ErrClosed", err)
	}
	if _, err := s.Remove(ctx, []byte("k"), live(1, "v")); !errors.Is(err, ErrClosed) {
		t.Errorf("Remove after Close error = %v, want ErrClosed", err)
	}
	if err := s.Scan(ctx, 0, math.MaxUint32, func([]byte, Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Scan after Close error = %v, want ErrClosed", err)
	}
	if err := s.Fingerprints(ctx, 0, math.MaxUint32, func([]byte, uint64, int64) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Fingerprints after Close error = %v, want ErrClosed", err)
	}
	if _, err := s.RangeDigest(ctx, 0, math.MaxUint32); !errors.Is(err, ErrClosed) {
		t.Errorf("RangeDigest after Close error = %v, want ErrClosed", err)
	}
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("Stats after Close = %+v, want zero", st)
	}
}

// TestCloseDuringScan closes the store from a Scan callback's goroutine:
// calls made from the callback see ErrClosed instead of deadlocking, and
// Close returns once the Scan has.
func TestCloseDuringScan(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	fillScanStore(t, s, 10)
	ctx := context.Background()
	closed := make(chan error)
	err = s.Scan(ctx, 0, math.MaxUint32, func(key []byte, _ Record) error {
		go func() { closed <- s.Close() }()
		for {
			if _, err := s.Get(ctx, key); err != nil {
				return err
			}
		}
	})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Scan = %v, want ErrClosed from the callback", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestStatsKeys(t *testing.T) {
	s := openMem(t)
	for i := range 100 {
		mustPut(t, s, fmt.Sprint(i), live(1, "v"))
	}
	for i := range 10 {
		mustPut(t, s, fmt.Sprint(i), live(2, "v")) // overwrites
		mustPut(t, s, fmt.Sprint(i), live(0, "v")) // stale
	}
	for i := range 5 {
		if ok, err := s.Remove(context.Background(), []byte(fmt.Sprint(i)), live(2, "v")); !ok || err != nil {
			t.Fatalf("Remove(%d) = %v, %v", i, ok, err)
		}
	}
	if got := s.Stats().Keys; got != 95 {
		t.Errorf("Stats().Keys = %d, want 95", got)
	}
}

func TestOpenRejectsNegativeCacheSize(t *testing.T) {
	if s, err := Open("db", Options{FS: vfs.NewMem(), CacheSize: -1}); err == nil {
		s.Close()
		t.Fatal("Open with CacheSize -1 succeeded, want an error")
	}
}

// TestCrashableMemKeepsSyncedWrites crashes an in-memory file system right
// after synced Puts: the crash keeps only what was synced, plus some of the
// rest, and every Put must survive it.
func TestCrashableMemKeepsSyncedWrites(t *testing.T) {
	for _, unsynced := range []int{0, 50} {
		t.Run(fmt.Sprintf("unsynced data kept %d%%", unsynced), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open("db", Options{FS: fs, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			const n = 1000
			for i := range n {
				mustPut(t, s, fmt.Sprint(i), live(int64(i), fmt.Sprint("v", i)))
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(4, 5))})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openTest(t, crashed, "db")
			for i := range n {
				if got := mustGet(t, s, fmt.Sprint(i)); !sameRecord(got, live(int64(i), fmt.Sprint("v", i))) {
					t.Fatalf("after the crash, Get(%d) = %v", i, got)
				}
			}
		})
	}
}

// TestCrashableMemNoSyncLoses shows that the crash above has teeth: without
// syncs, a crash loses acknowledged writes.
func TestCrashableMemNoSyncLoses(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := Open("db", Options{FS: fs, NoSync: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := range n {
		mustPut(t, s, fmt.Sprint(i), live(int64(i), "v"))
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, crashed, "db")
	lost := 0
	for i := range n {
		if _, err := s.Get(context.Background(), []byte(fmt.Sprint(i))); errors.Is(err, ErrNotFound) {
			lost++
		}
	}
	if lost == 0 {
		t.Errorf("a crash after %d unsynced Puts lost none of them; the crash test cannot tell synced from unsynced", n)
	}
}

// TestCreatedTellsANewDatabaseFromAnEmptyOne: a directory without a
// database gets a new one (Created: the node may have lost its disk); a
// database that a previous run left, even empty, is not new.
func TestCreatedTellsANewDatabaseFromAnEmptyOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Created() {
		t.Error("a store opened in a missing directory is not Created")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Created() {
		t.Error("an empty store left by a previous run is Created again")
	}
	if n := s.Stats().Keys; n != 0 {
		t.Errorf("%d keys, want 0", n)
	}
}
