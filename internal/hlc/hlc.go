// Package hlc is the node's hybrid logical clock for write timestamps.
//
// A timestamp is an int64 count of microseconds since the Unix epoch, as in
// the original Tako, so a client's X-Timestamp means the same thing. The
// clock follows the wall clock but never goes backwards and never hands out
// the same timestamp twice: Now returns max(wall, last+1). Observe moves the
// clock past a timestamp seen elsewhere (a peer's record, a client's
// X-Timestamp), so that a write which follows another through the cluster
// gets a larger timestamp and wins, even when wall clocks disagree a little
// or step back.
package hlc

import (
	"sync"
	"time"
)

// Clock is a hybrid logical clock. The zero value is not usable; call New.
// A Clock is safe for concurrent use.
type Clock struct {
	wall func() time.Time

	mu   sync.Mutex // guards last
	last int64
}

// New returns a clock that follows wall; a nil wall means time.Now.
func New(wall func() time.Time) *Clock {
	if wall == nil {
		wall = time.Now
	}
	return &Clock{wall: wall}
}

// Now returns a timestamp larger than every timestamp Now returned or
// Observe saw before, and no smaller than the wall clock.
func (c *Clock) Now() int64 {
	w := c.wall().UnixMicro()
	c.mu.Lock()
	defer c.mu.Unlock()
	if w <= c.last {
		w = c.last + 1
	}
	c.last = w
	return w
}

// Observe records a timestamp seen elsewhere: later calls to Now return
// larger timestamps.
func (c *Clock) Observe(ts int64) {
	c.mu.Lock()
	if ts > c.last {
		c.last = ts
	}
	c.mu.Unlock()
}

// Wall returns the wall clock's current time in microseconds, without
// advancing the logical clock. Nodes use it to judge whether a client's
// timestamp lies too far in the future.
func (c *Clock) Wall() int64 { return c.wall().UnixMicro() }
