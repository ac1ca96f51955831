package store

import (
	"context"
	"sync"
	"time"
)

// stalls follows Pebble's write stalls: while its memtables or level 0
// are full, Pebble makes every write wait. Bulk writers (a refill) wait for
// a stall to end before they add to it (WaitUnstalled), so that clients'
// writes get through first.
type stalls struct {
	mu      sync.Mutex // guards the fields below
	stalled bool
	since   time.Time
	ended   chan struct{} // closed when the stall under way ends
	count   int64
	total   time.Duration
}

func (s *stalls) begin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		return
	}
	s.stalled, s.since, s.ended = true, time.Now(), make(chan struct{})
	s.count++
}

func (s *stalls) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stalled {
		return
	}
	s.stalled = false
	s.total += time.Since(s.since)
	close(s.ended)
}

// stats returns how many stalls there were and how long they lasted, the
// one under way included.
func (s *stalls) stats() (int64, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.total
	if s.stalled {
		total += time.Since(s.since)
	}
	return s.count, total
}

// WaitUnstalled returns at once when Pebble does not stall writes;
// otherwise when the stall ends, or after at most max (a bulk writer then
// writes anyway, so that it never waits forever), or with ctx's error.
func (s *Store) WaitUnstalled(ctx context.Context, max time.Duration) error {
	s.stall.mu.Lock()
	stalled, ended := s.stall.stalled, s.stall.ended
	s.stall.mu.Unlock()
	if !stalled {
		return nil
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ended:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
