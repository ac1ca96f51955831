package store

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
)

// benchValue is the 100-byte value of every benchmark record.
var benchValue = bytes.Repeat([]byte("0123456789"), 10)

// openBench opens a store on the real disk in a temporary directory.
func openBench(b *testing.B, noSync bool) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), Options{NoSync: noSync, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchKey(i int64) []byte { return fmt.Appendf(nil, "bench-%d", i) }

// benchPuts Puts new keys, from one goroutine.
func benchPuts(b *testing.B, s *Store) {
	ctx := context.Background()
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		if _, err := s.Put(ctx, benchKey(i), Record{Timestamp: i, Value: benchValue}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPutSync is one writer waiting for every fsync.
func BenchmarkPutSync(b *testing.B) { benchPuts(b, openBench(b, false)) }

// BenchmarkPutNoSync is one writer that does not wait for fsyncs, for
// comparison: the cost of the store without the disk's latency.
func BenchmarkPutNoSync(b *testing.B) { benchPuts(b, openBench(b, true)) }

// BenchmarkPutNoSyncOverwrite overwrites the records of 10,000 keys with
// newer ones, from one goroutine, without fsyncs: the read-compare-write
// path of a key the store holds.
func BenchmarkPutNoSyncOverwrite(b *testing.B) {
	const n = 10000
	s := openBench(b, true)
	ctx := context.Background()
	for i := range int64(n) {
		if _, err := s.Put(ctx, benchKey(i), Record{Timestamp: 0, Value: benchValue}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	var i int64
	for b.Loop() {
		if _, err := s.Put(ctx, benchKey(i%n), Record{Timestamp: 1 + i, Value: benchValue}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPutSyncParallel16 is 16 writers of synced Puts, sharing fsyncs
// through Pebble's group commit; ns/op is per Put.
func BenchmarkPutSyncParallel16(b *testing.B) {
	const writers = 16
	s := openBench(b, false)
	ctx := context.Background()
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if _, err := s.Put(ctx, benchKey(i), Record{Timestamp: i, Value: benchValue}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkGet reads random keys of a store filled with 10,000 records.
func BenchmarkGet(b *testing.B) {
	const n = 10000
	s := openBench(b, true)
	ctx := context.Background()
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = benchKey(int64(i))
		if _, err := s.Put(ctx, keys[i], Record{Timestamp: int64(i), Value: benchValue}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(benchValue)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// A stride coprime with n visits the keys out of order.
		i = (i + 7919) % n
		if _, err := s.Get(ctx, keys[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangeDigestWholeSpace digests the whole hash space of a store
// of 100,000 records: DigestSlots memory reads, no I/O.
func BenchmarkRangeDigestWholeSpace(b *testing.B) {
	const n = 100000
	s := openBench(b, true)
	ctx := context.Background()
	for i := range int64(n) {
		if _, err := s.Put(ctx, benchKey(i), Record{Timestamp: i, Value: benchValue}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		d, err := s.RangeDigest(ctx, 0, math.MaxUint32)
		if err != nil || d.Count != n {
			b.Fatalf("RangeDigest = %+v, %v; want %d records", d, err, n)
		}
	}
}

// BenchmarkRangeDigestCutSlots digests ranges that start and end inside a
// slot, of a store of 100,000 records: two short scans (about 1.5 records
// per slot here) on top of the memory reads.
func BenchmarkRangeDigestCutSlots(b *testing.B) {
	const n = 100000
	s := openBench(b, true)
	ctx := context.Background()
	for i := range int64(n) {
		if _, err := s.Put(ctx, benchKey(i), Record{Timestamp: i, Value: benchValue}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	lo := uint32(0x1234_5678)
	for b.Loop() {
		if _, err := s.RangeDigest(ctx, lo, lo+1<<24); err != nil {
			b.Fatal(err)
		}
		lo += 0x9e37_79b9
	}
}

// BenchmarkFingerprint hashes a record of a 10-byte key and a 100-byte
// value; Put does it twice when it overwrites.
func BenchmarkFingerprint(b *testing.B) {
	key := benchKey(1234567)
	rec := Record{Timestamp: 1, Value: benchValue}
	b.SetBytes(int64(len(key) + len(benchValue)))
	var sink uint64
	for b.Loop() {
		sink ^= Fingerprint(key, rec)
	}
	_ = sink
}
