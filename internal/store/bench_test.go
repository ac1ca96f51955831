package store

import (
	"bytes"
	"context"
	"fmt"
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
