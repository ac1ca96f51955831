package node

import (
	"sync/atomic"
	"time"
)

const (
	// foregroundWindow is how long after a client's read or write the
	// node counts as serving clients.
	foregroundWindow = 200 * time.Millisecond
	// foregroundShare is the part of repair_bandwidth that repair and
	// refill take while the node serves clients: the rest of the disk and,
	// on a small machine, of the CPU is theirs.
	foregroundShare = 4
)

// foreground follows whether the node serves clients: every read and
// write of a replica (for a client, or for read repair) marks it, and
// background work (repair, refill) slows down while it is recent.
type foreground struct {
	last atomic.Int64 // unix nanoseconds of the last mark, coarse
}

// mark records a client's read or write now.
func (f *foreground) mark() {
	now := time.Now().UnixNano()
	// At most one store a millisecond: marks come from every request.
	if now-f.last.Load() > int64(time.Millisecond) {
		f.last.Store(now)
	}
}

// active reports whether a client's read or write was marked within
// foregroundWindow.
func (f *foreground) active() bool {
	return time.Now().UnixNano()-f.last.Load() < int64(foregroundWindow)
}

// backgroundRate is the rate, in bytes per second, that repair and refill
// may take now: repair_bandwidth, or a foregroundShare-th of it while the
// node serves clients.
func (n *Node) backgroundRate() int64 {
	rate := n.settings(n.cfg.Load()).RepairBandwidth
	if n.foreground.active() {
		rate = max(rate/foregroundShare, 1)
	}
	return rate
}
