// Package budget bounds the bytes a process holds for requests in flight:
// one Budget per process, shared by every port that reads request bodies,
// so that what they hold together stays within one figure however many
// requests arrive at once.
//
// A request reserves its bytes before it reads them and releases them once
// it is answered. A reservation that does not fit waits, up to the
// Budget's wait, for others to be released, and is then refused with
// ErrExhausted: the caller answers "overloaded, retry shortly" instead of
// holding the bytes.
//
// The last sixteenth of the budget is kept for small reservations (Small
// bytes or less): large ones stop short of it, so that a budget filled by
// a few large uploads still serves the small requests that make most of
// the traffic. A reservation larger than a request may hold (the budget
// less that sixteenth, for a large one) is cut to it, so that a request
// larger than the whole budget is still served, alone.
//
// Grants are not in arrival order: a reservation that fits is granted at
// once, even while larger ones wait, so that a large reservation never
// holds up small ones behind it. A large one waits at most the Budget's
// wait.
package budget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Small is the largest reservation, in bytes, that may use the last
// sixteenth of a budget.
const Small = 64 << 10

// DefaultWait is how long the requests of a Tako process wait for room
// before they are refused: long enough to ride out a burst, short enough
// that a client told to retry loses little.
const DefaultWait = time.Second

// ErrExhausted is returned by Acquire when the reservation did not fit
// within the Budget's wait.
var ErrExhausted = errors.New("budget: exhausted")

// Budget is a number of bytes that requests reserve and release. A nil
// *Budget is no limit: every reservation is granted at once. A Budget is
// safe for concurrent use.
type Budget struct {
	size  int64         // the whole budget
	large int64         // what reservations larger than Small may fill together
	wait  time.Duration // how long Acquire waits at most

	used    atomic.Int64 // bytes reserved
	waiting atomic.Int64 // len(queue), read without mu by Release

	mu    sync.Mutex // guards queue and each waiter's granted
	queue []*waiter  // Acquire calls waiting, in arrival order
}

// waiter is an Acquire call that waits for its reservation.
type waiter struct {
	n       int64         // what it reserves, already cut to what it may hold
	ready   chan struct{} // closed when granted
	granted bool
}

// New returns a budget of size bytes, whose Acquire waits up to wait for a
// reservation that does not fit (zero or less: not at all). It panics if
// size is not positive.
func New(size int64, wait time.Duration) *Budget {
	if size <= 0 {
		panic(fmt.Sprintf("budget: size %d is not positive", size))
	}
	return &Budget{size: size, large: size - size/16, wait: max(wait, 0)}
}

// Size returns the budget's size in bytes, 0 for a nil Budget.
func (b *Budget) Size() int64 {
	if b == nil {
		return 0
	}
	return b.size
}

// InUse returns the bytes reserved, 0 for a nil Budget.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// held returns what a reservation of n bytes holds (n, or what a request
// may hold when n exceeds it) and the ceiling it must stay under.
func (b *Budget) held(n int64) (held, ceiling int64) {
	switch {
	case n <= 0:
		return 0, b.size
	case n <= Small:
		return min(n, b.size), b.size
	}
	return min(n, b.large), b.large
}

// TryAcquire reserves n bytes if they fit now, and returns what it reserved
// (n, or less when n is more than a request may hold: see the package
// doc), to pass to Release. It does not wait.
func (b *Budget) TryAcquire(n int64) (int64, bool) {
	if b == nil {
		return max(n, 0), true
	}
	held, ceiling := b.held(n)
	return held, b.take(held, ceiling)
}

// take adds held to the bytes reserved if they stay within ceiling.
func (b *Budget) take(held, ceiling int64) bool {
	if held == 0 {
		return true
	}
	for {
		used := b.used.Load()
		if used+held > ceiling {
			return false
		}
		if b.used.CompareAndSwap(used, used+held) {
			return true
		}
	}
}

// Acquire reserves n bytes, waiting up to the Budget's wait while they do
// not fit, and returns what it reserved (as TryAcquire), to pass to
// Release. It returns ErrExhausted when the wait ended first, and ctx's
// error, wrapped, when ctx was done first; in both cases nothing is
// reserved.
func (b *Budget) Acquire(ctx context.Context, n int64) (int64, error) {
	if held, ok := b.TryAcquire(n); ok {
		return held, nil
	}
	if b.wait == 0 {
		return 0, ErrExhausted
	}
	held, ceiling := b.held(n)
	w := &waiter{n: held, ready: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, w)
	b.waiting.Add(1)
	// A Release between the TryAcquire above and the queueing did not
	// see this waiter: try again now that it would.
	if b.take(held, ceiling) {
		b.removeLocked(w)
		b.mu.Unlock()
		return held, nil
	}
	b.mu.Unlock()

	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return held, nil
	case <-timer.C:
		err = ErrExhausted
	case <-ctx.Done():
		err = fmt.Errorf("budget: waiting for %d bytes: %w", held, ctx.Err())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted {
		// Granted as the wait ended: the reservation is the caller's.
		return held, nil
	}
	b.removeLocked(w)
	return 0, err
}

// Release gives back n bytes that Acquire or TryAcquire reserved (their
// sum, for several), and grants what now fits to the reservations that
// wait.
func (b *Budget) Release(n int64) {
	if b == nil || n <= 0 {
		return
	}
	if b.used.Add(-n) < 0 {
		panic(fmt.Sprintf("budget: released %d bytes more than were reserved", -b.used.Load()))
	}
	if b.waiting.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := 0; i < len(b.queue); {
		w := b.queue[i]
		ceiling := b.size
		if w.n > Small {
			ceiling = b.large
		}
		if !b.take(w.n, ceiling) {
			i++
			continue
		}
		w.granted = true
		close(w.ready)
		b.removeLocked(w)
	}
}

// removeLocked takes w out of the queue.
func (b *Budget) removeLocked(w *waiter) {
	if i := slices.Index(b.queue, w); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.waiting.Add(-1)
	}
}
