package hlc

import (
	"errors"
	"math"
	"math/big"
	"strings"
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

func TestCheck(t *testing.T) {
	const now = 1_700_000_000_000_000
	ahead := 10 * time.Minute
	tests := []struct {
		name string
		ts   int64
		ok   bool
	}{
		{"now", now, true},
		{"one", 1, true},
		{"zero", 0, false},
		{"negative", -5, false},
		{"most negative", math.MinInt64, false},
		{"at the limit", now + ahead.Microseconds(), true},
		{"past the limit", now + ahead.Microseconds() + 1, false},
		{"largest", math.MaxInt64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.ts, now, ahead)
			if (err == nil) != tt.ok {
				t.Fatalf("Check(%d) = %v, want ok %v", tt.ts, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("error %v does not wrap ErrOutOfRange", err)
			}
			if err != nil && strings.Contains(err.Error(), "-") && tt.ts > 0 {
				t.Fatalf("the message of a timestamp ahead has a minus sign (an overflow?): %v", err)
			}
		})
	}
}

// FuzzCheck holds the rule to its definition, computed without overflow:
// accepted exactly when 1 ≤ ts ≤ now + ahead.
func FuzzCheck(f *testing.F) {
	f.Add(int64(1_700_000_000_000_000), int64(1_700_000_000_000_000), int64(600_000_000))
	f.Add(int64(math.MaxInt64), int64(1_700_000_000_000_000), int64(600_000_000))
	f.Add(int64(-5), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, ts, now, aheadMicros int64) {
		if aheadMicros < 0 || aheadMicros > int64(math.MaxInt64/1000) {
			return
		}
		ahead := time.Duration(aheadMicros) * time.Microsecond
		limit := new(big.Int).Add(big.NewInt(max(now, 0)), big.NewInt(aheadMicros))
		want := ts >= 1 && big.NewInt(ts).Cmp(limit) <= 0
		err := Check(ts, now, ahead)
		if (err == nil) != want {
			t.Fatalf("Check(%d, %d, %s) = %v, want ok %v", ts, now, ahead, err, want)
		}
	})
}

func TestCheckExpiry(t *testing.T) {
	const now = 1_800_000_000_000_000
	for _, c := range []struct {
		exp  int64
		ok   bool
		want string
	}{
		{now + 1, true, ""},
		{now + time.Hour.Microseconds(), true, ""},
		{now, false, "not after now"},
		{now - 5, false, "not after now"},
		{1, false, "not after now"},
		{now + time.Hour.Microseconds() + 1, false, "more than max_ttl (1h0m0s)"},
		{math.MaxInt64, false, "more than max_ttl"},
	} {
		err := CheckExpiry(c.exp, now, time.Hour)
		if (err == nil) != c.ok || err != nil && (!errors.Is(err, ErrBadExpiry) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckExpiry(%d, now, 1h) = %v, want ok %v or %q", c.exp, err, c.ok, c.want)
		}
	}
}
