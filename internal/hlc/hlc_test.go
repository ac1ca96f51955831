package hlc

import (
	"sync"
	"testing"
	"time"
)

type fakeWall struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeWall) now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeWall) set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

func TestClock(t *testing.T) {
	base := time.UnixMicro(1_700_000_000_000_000)
	tests := []struct {
		name    string
		steps   func(c *Clock, w *fakeWall) int64
		wantMin int64
		wantMax int64
	}{
		{"follows the wall clock", func(c *Clock, w *fakeWall) int64 { return c.Now() }, base.UnixMicro(), base.UnixMicro()},
		{"never repeats when the wall stands still", func(c *Clock, w *fakeWall) int64 { c.Now(); return c.Now() }, base.UnixMicro() + 1, base.UnixMicro() + 1},
		{"never goes backwards when the wall steps back", func(c *Clock, w *fakeWall) int64 {
			c.Now()
			w.set(base.Add(-time.Hour))
			return c.Now()
		}, base.UnixMicro() + 1, base.UnixMicro() + 1},
		{"moves past an observed timestamp", func(c *Clock, w *fakeWall) int64 {
			c.Observe(base.UnixMicro() + 5_000_000)
			return c.Now()
		}, base.UnixMicro() + 5_000_001, base.UnixMicro() + 5_000_001},
		{"ignores an older observed timestamp", func(c *Clock, w *fakeWall) int64 {
			c.Observe(base.UnixMicro() - 5_000_000)
			return c.Now()
		}, base.UnixMicro(), base.UnixMicro()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWall{t: base}
			c := New(w.now)
			got := tt.steps(c, w)
			if got < tt.wantMin || got > tt.wantMax {
				t.Fatalf("Now() = %d, want in [%d, %d]", got, tt.wantMin, tt.wantMax)
			}
		})
	}
}

func TestConcurrentNowIsUnique(t *testing.T) {
	c := New(nil)
	const goroutines, each = 8, 2000
	out := make(chan int64, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				out <- c.Now()
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := make(map[int64]bool, goroutines*each)
	for ts := range out {
		if seen[ts] {
			t.Fatalf("timestamp %d handed out twice", ts)
		}
		seen[ts] = true
	}
}
