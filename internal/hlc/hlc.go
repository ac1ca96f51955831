// Package hlc is the node's clock for write timestamps, and the rule that
// every timestamp from outside must follow.
//
// A timestamp is an int64 count of microseconds since the Unix epoch, as in
// the original Tako, so a client's X-Timestamp means the same thing. The
// clock follows the wall clock but never goes backwards and never hands out
// the same timestamp twice: Now returns max(wall, last+1). Timestamps seen
// elsewhere (a client's X-Timestamp, a peer's record) never move it: one
// client's timestamp, or one peer's wrong clock, would otherwise drag every
// later write of the node. A write that must follow a newer version of its
// key is stamped above that version for that key alone (the node asks a
// read quorum for the key's timestamps first: see writeRecord).
//
// Check is the rule for a timestamp that comes in, at every door: 1 ≤ ts ≤
// the receiver's now + the deployment's max_timestamp_ahead.
package hlc

import (
	"errors"
	"fmt"
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

// ErrOutOfRange is wrapped by the errors of Check.
var ErrOutOfRange = errors.New("hlc: timestamp out of range")

// Check returns nil when ts may come in at a receiver whose clock reads
// now: 1 ≤ ts ≤ now + ahead. Otherwise it returns an error wrapping
// ErrOutOfRange that says by how much ts misses. Nothing in it overflows,
// whatever ts is.
func Check(ts, now int64, ahead time.Duration) error {
	now = max(now, 0)
	switch {
	case ts < 1:
		return fmt.Errorf("%w: timestamp %d is before 1 (microseconds since the Unix epoch)", ErrOutOfRange, ts)
	case ts > now && uint64(ts-now) > uint64(ahead.Microseconds()):
		// ts > now ≥ 0 here, so ts-now cannot overflow; its duration
		// can, so it is written in seconds.
		return fmt.Errorf("%w: timestamp %d is %.1f s ahead of this node's clock (%d), more than max_timestamp_ahead (%s)",
			ErrOutOfRange, ts, float64(ts-now)/1e6, now, ahead)
	}
	return nil
}

// ErrBadExpiry is wrapped by the errors of CheckExpiry.
var ErrBadExpiry = errors.New("hlc: expiry out of range")

// CheckExpiry returns nil when a write may ask for its value to expire at
// expiresAt (microseconds since the Unix epoch) at a receiver whose clock
// reads now: after now, and no further ahead than maxTTL. Otherwise it
// returns an error wrapping ErrBadExpiry that says why. It is the rule of
// every door a client writes through (HTTP, the Go client, a node's binary
// port); records from replicas, repair and restores keep their expiry
// whatever it is.
func CheckExpiry(expiresAt, now int64, maxTTL time.Duration) error {
	switch {
	case expiresAt <= now:
		return fmt.Errorf("%w: the expiry %d is not after now (%d): a value that expires at once is a delete", ErrBadExpiry, expiresAt, now)
	case now >= 0 && uint64(expiresAt-now) > uint64(maxTTL.Microseconds()):
		return fmt.Errorf("%w: the expiry %d is %.0f s ahead of this clock, more than max_ttl (%s)", ErrBadExpiry, expiresAt, float64(expiresAt-now)/1e6, maxTTL)
	}
	return nil
}

// Wall returns the wall clock's current time in microseconds, without
// advancing the logical clock. Nodes use it to judge whether a client's
// timestamp lies too far in the future.
func (c *Clock) Wall() int64 { return c.wall().UnixMicro() }
