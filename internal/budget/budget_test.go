package budget

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestTryAcquire: reservations are granted while they fit, large ones only
// up to the budget less its last sixteenth, small ones up to the whole
// budget; a reservation larger than a request may hold is cut to it.
func TestTryAcquire(t *testing.T) {
	const size = 16 << 20 // large reservations fill at most 15 MiB
	tests := []struct {
		name   string
		before int64 // reserved first
		n      int64
		held   int64
		ok     bool
	}{
		{"nothing", 0, 0, 0, true},
		{"a negative count", 0, -5, 0, true},
		{"small, empty budget", 0, 100, 100, true},
		{"large, empty budget", 0, 8 << 20, 8 << 20, true},
		{"large, up to the large share", 7 << 20, 8 << 20, 8 << 20, true},
		{"large, one byte past the large share", 7<<20 + 1, 8 << 20, 8 << 20, false},
		{"small, within the last sixteenth", 15 << 20, Small, Small, true},
		{"small, up to the whole budget", size - Small, Small, Small, true},
		{"small, one byte past the whole budget", size - Small + 1, Small, Small, false},
		{"larger than a request may hold, empty budget", 0, 1 << 30, 15 << 20, true},
		{"larger than a request may hold, one byte reserved", 1, 1 << 30, 15 << 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(size, 0)
			if tt.before > 0 {
				// Small pieces, which may fill the whole budget.
				for left := tt.before; left > 0; left -= min(left, Small) {
					if _, ok := b.TryAcquire(min(left, Small)); !ok {
						t.Fatalf("reserving %d bytes first failed", tt.before)
					}
				}
			}
			held, ok := b.TryAcquire(tt.n)
			if ok != tt.ok || (ok && held != tt.held) {
				t.Fatalf("TryAcquire(%d) with %d reserved = %d, %v; want %d, %v", tt.n, tt.before, held, ok, tt.held, tt.ok)
			}
			want := tt.before
			if ok {
				want += held
			}
			if got := b.InUse(); got != want {
				t.Errorf("InUse = %d, want %d", got, want)
			}
			b.Release(b.InUse())
			if got := b.InUse(); got != 0 {
				t.Errorf("InUse after releasing everything = %d", got)
			}
		})
	}
}

// TestAcquireWaitsForARelease: a reservation that does not fit waits, and
// is granted as soon as a release makes room.
func TestAcquireWaitsForARelease(t *testing.T) {
	b := New(1<<20, 10*time.Second)
	first, err := b.Acquire(t.Context(), 900<<10)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() {
		_, err := b.Acquire(t.Context(), 500<<10)
		granted <- err
	}()
	waitWaiting(t, b, 1)
	select {
	case err := <-granted:
		t.Fatalf("granted while the budget was full: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	start := time.Now()
	b.Release(first)
	if err := <-granted; err != nil {
		t.Fatalf("after the release: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("granted %v after the release", d)
	}
	if got := b.InUse(); got != 500<<10 {
		t.Errorf("InUse = %d, want %d", got, 500<<10)
	}
}

// TestAcquireGivesUpAfterItsWait: a reservation that does not fit within
// the wait is refused with ErrExhausted, one whose context ends with the
// context's error; neither reserves anything.
func TestAcquireGivesUpAfterItsWait(t *testing.T) {
	b := New(1<<20, 50*time.Millisecond)
	if _, err := b.Acquire(t.Context(), 1<<20); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := b.Acquire(t.Context(), 100<<10)
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("Acquire on a full budget: %v, want ErrExhausted", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want the wait (50ms)", d)
	}

	long := New(1<<20, time.Hour)
	long.TryAcquire(1 << 20)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := long.Acquire(ctx, 100<<10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a context that ends: %v, want its error", err)
	}
	for _, b := range []*Budget{b, long} {
		if got, want := b.InUse(), int64(1<<20-(1<<20)/16); got != want {
			t.Errorf("InUse = %d after refusals, want %d: they reserved something", got, want)
		}
		if n := b.waiting.Load(); n != 0 {
			t.Errorf("%d waiters left after they gave up", n)
		}
	}
	noWait := New(1<<20, 0)
	noWait.TryAcquire(1 << 20) // the large share
	noWait.TryAcquire(Small)   // and the rest
	start = time.Now()
	if _, err := noWait.Acquire(t.Context(), 1); !errors.Is(err, ErrExhausted) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("a budget without wait: %v after %v, want ErrExhausted at once", err, time.Since(start))
	}
}

// TestSmallRequestsPassWaitingLargeOnes: a large reservation that waits
// does not hold up a small one that fits; the large one is granted once
// there is room for it.
func TestSmallRequestsPassWaitingLargeOnes(t *testing.T) {
	b := New(16<<20, 10*time.Second)
	upload, _ := b.TryAcquire(12 << 20)
	large := make(chan error, 1)
	go func() {
		_, err := b.Acquire(t.Context(), 8<<20)
		large <- err
	}()
	waitWaiting(t, b, 1)
	for range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		n, err := b.Acquire(ctx, 4<<10)
		cancel()
		if err != nil {
			t.Fatalf("a small reservation behind a waiting large one: %v", err)
		}
		b.Release(n)
	}
	b.Release(upload)
	if err := <-large; err != nil {
		t.Fatalf("the large reservation after the release: %v", err)
	}
}

// TestNilBudgetIsNoLimit: a nil *Budget grants everything and holds nothing.
func TestNilBudgetIsNoLimit(t *testing.T) {
	var b *Budget
	if n, ok := b.TryAcquire(1 << 40); !ok || n != 1<<40 {
		t.Errorf("TryAcquire = %d, %v", n, ok)
	}
	if n, err := b.Acquire(t.Context(), 1<<40); err != nil || n != 1<<40 {
		t.Errorf("Acquire = %d, %v", n, err)
	}
	b.Release(1 << 40)
	if b.InUse() != 0 || b.Size() != 0 {
		t.Errorf("InUse %d, Size %d; want 0, 0", b.InUse(), b.Size())
	}
}

// TestNeverMoreThanTheBudget: many goroutines reserving and releasing
// random amounts never hold more than the budget together, every
// reservation that was granted is released, and none waits forever.
func TestNeverMoreThanTheBudget(t *testing.T) {
	const size = 1 << 20
	b := New(size, 5*time.Millisecond)
	var mu sync.Mutex
	var held, worst int64 // by the goroutines' own count
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				want := r.Int64N(3 * Small)
				if r.IntN(10) == 0 {
					want = r.Int64N(2 * size)
				}
				n, err := b.Acquire(t.Context(), want)
				if err != nil {
					if !errors.Is(err, ErrExhausted) {
						t.Errorf("Acquire(%d): %v", want, err)
					}
					continue
				}
				mu.Lock()
				held += n
				worst = max(worst, held)
				mu.Unlock()
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(100)) * time.Microsecond)
				}
				mu.Lock()
				held -= n
				mu.Unlock()
				b.Release(n)
			}
		})
	}
	wg.Wait()
	if worst > size {
		t.Errorf("the goroutines held %d bytes at once, more than the budget (%d)", worst, size)
	}
	if b.InUse() != 0 || b.waiting.Load() != 0 || len(b.queue) != 0 {
		t.Errorf("after every release: InUse %d, %d waiting, queue %d; want none", b.InUse(), b.waiting.Load(), len(b.queue))
	}
}

// TestReleasingMoreThanReservedPanics: a release that does not match a
// reservation is a programmer error.
func TestReleasingMoreThanReservedPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	b := New(100, 0)
	b.TryAcquire(10)
	b.Release(11)
}

// waitWaiting waits until n reservations wait in b.
func waitWaiting(t *testing.T, b *Budget, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.waiting.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations wait, want %d", b.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
