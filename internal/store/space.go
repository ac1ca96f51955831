package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const (
	// defaultMinFreeBytes is Options.MinFreeBytes when it is 0: room for
	// Pebble to flush every memtable it may hold before writes stall
	// (MemTableStopWritesThreshold of them) and to compact.
	defaultMinFreeBytes = 4 * memTableSize
	// spaceCheckEvery is how often at most the store reads its file
	// system's free space while writes come in.
	spaceCheckEvery = 100 * time.Millisecond
	// spaceWatchEvery is how often the store reads its file system's free
	// space when no write comes in, to give the ballast back when
	// something else fills the disk, and to make it again.
	spaceWatchEvery = 500 * time.Millisecond
	// writeOverhead is added to the key and value bytes of each write to
	// count what it takes in the write-ahead log (record and batch
	// headers, the record's own header).
	writeOverhead = 64
)

// space keeps the store's file system from filling up: it admits a write
// only if the file system keeps reserve bytes free once the write is in,
// so that Pebble never meets ENOSPC in its write-ahead log (which it
// cannot survive) and flushes and compactions have room. It reads the
// free space at most every spaceCheckEvery, or once writes admitted since
// took an eighth of the reserve, and counts what it admits in between.
//
// Once the free space is within an eighth of the reserve of running out,
// the store is low on space: it refuses every write, small ones included,
// until the free space is back above the reserve and that eighth, so that
// writes do not come and go with every flush or compaction. (A large
// write that does not fit while space is plentiful is refused alone.)
//
// Pebble preallocates each write-ahead log at 110% of a memtable (35 MiB)
// and keeps up to MemTableStopWritesThreshold+1 old logs for reuse, so
// the free space drops by 35 MiB at a time while a young store's
// memtables grow to their full size, and writes into a log fill space
// that is already taken.
//
// The ballast (ballast.go), half the reserve, is given back once the free
// space falls under a quarter of the reserve: only something else than
// the store's admitted writes can take it that far.
type space struct {
	fs      vfs.FS
	dir     string
	logger  *slog.Logger
	reserve uint64
	ballast *ballast
	// readOnly is set when the store opened read-only (beforeOpen): every
	// write is refused until the store is opened again, which onWritable
	// is called once to ask for when the free space is back.
	readOnly   bool
	onWritable func()
	asked      bool // onWritable was called
	// off is set when the file system cannot tell its free space: no
	// write is refused then.
	off atomic.Bool

	mu      sync.Mutex // guards the fields below
	checked time.Time  // when free was read; zero: read it at the next write
	free    uint64     // free bytes when checked, less what was admitted since
	taken   uint64     // bytes admitted since checked
	known   bool       // free has been read at least once
	low     bool       // low on space: every write is refused
	refused int64      // writes refused
}

// newSpace returns the guard of the file system of the store in dir,
// which keeps reserve bytes free and a ballast of half of it.
func newSpace(fs vfs.FS, dir string, reserve uint64, logger *slog.Logger) *space {
	return &space{fs: fs, dir: dir, logger: logger, reserve: reserve,
		ballast: newBallast(fs, dir, reserve/2, logger)}
}

// beforeOpen gives the ballast back if the file system is already short
// of space, so that Pebble can write what opening a store writes (a new
// log, a new manifest): a node whose disk filled up starts, serves reads
// and refuses writes, instead of failing to start again and again.
//
// It reports whether the store must open read-only: the file system has
// less than the reserve free even without the ballast, not enough for
// Pebble to flush what its log replays.
func (sp *space) beforeOpen() (readOnly bool) {
	usage, err := sp.fs.GetDiskUsage(sp.dir)
	if err != nil || usage.AvailBytes >= sp.reserve {
		return false
	}
	if sp.ballast.isPresent() {
		sp.ballast.release("the disk is nearly full as the store opens", usage.AvailBytes)
		if after, err := sp.fs.GetDiskUsage(sp.dir); err == nil {
			usage = after
		}
	}
	if usage.AvailBytes >= sp.reserve {
		return false
	}
	sp.readOnly = true
	sp.logger.Error("store: the disk is nearly full as the store opens: opening it read-only; it serves reads, refuses writes (507), and reopens itself to take writes once space is freed",
		"dir", sp.dir, "free", formatBytes(usage.AvailBytes), "reserve", formatBytes(sp.reserve), "resume_at", formatBytes(sp.resumeAt()))
	return true
}

// start reads the free space for the first time, once the store's
// directory exists.
func (sp *space) start() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.readLocked(time.Now())
}

// watch reads the free space every spaceWatchEvery until stop is closed:
// it gives the ballast back when the file system is about to run out,
// and makes it when there is room.
func (sp *space) watch(stop <-chan struct{}) {
	sp.tend()
	t := time.NewTicker(spaceWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			sp.tend()
		}
	}
}

// tend reads the free space if it was not read lately, and makes the
// ballast if it is missing and there is room for it above the point
// where writes are accepted.
func (sp *space) tend() {
	if sp.off.Load() {
		return
	}
	sp.mu.Lock()
	now := time.Now()
	if now.Sub(sp.checked) >= spaceCheckEvery {
		sp.readLocked(now)
	}
	room := sp.known && !sp.low && sp.free >= sp.resumeAt()+sp.ballast.size
	ask := sp.readOnly && sp.known && sp.free >= sp.resumeAt() && !sp.asked
	if ask {
		sp.asked = true
	}
	sp.mu.Unlock()
	if ask {
		if sp.onWritable != nil {
			sp.onWritable()
		} else {
			sp.logger.Warn("store: free space is back, but the store opened read-only: open it again to take writes", "dir", sp.dir)
		}
		return
	}
	if sp.readOnly {
		return // a read-only store writes no ballast
	}
	if room && !sp.ballast.isPresent() {
		sp.ballast.make()
		sp.recheck()
	}
}

// admit reserves n bytes for a write, or returns an error wrapping
// ErrNoSpace.
func (sp *space) admit(n int) error {
	if sp.off.Load() {
		return nil
	}
	if sp.readOnly {
		return fmt.Errorf("%w: the store of %s opened read-only because its disk had less than the reserve of %s (-min-free) free when it started; it takes writes again once %s are free",
			ErrNoSpace, sp.dir, formatBytes(sp.reserve), formatBytes(sp.resumeAt()))
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	now := time.Now()
	if now.Sub(sp.checked) >= spaceCheckEvery || sp.taken >= sp.reserve/8 {
		sp.readLocked(now)
		if sp.off.Load() {
			return nil
		}
	}
	need := uint64(n + writeOverhead)
	if sp.low || sp.free < sp.reserve+need {
		if !sp.low && sp.free < sp.resumeAt() {
			sp.lowLocked()
		}
		sp.refused++
		return fmt.Errorf("%w: %s free on the file system of %s, the store keeps a reserve of %s (-min-free) and this write needs %s; writes are accepted again once %s are free",
			ErrNoSpace, formatBytes(sp.free), sp.dir, formatBytes(sp.reserve), formatBytes(need), formatBytes(sp.resumeAt()))
	}
	sp.free -= need
	sp.taken += need
	return nil
}

// readLocked reads the free space from the file system. A file system
// that cannot tell (vfs.NewMem) turns the guard off.
func (sp *space) readLocked(now time.Time) {
	usage, err := sp.fs.GetDiskUsage(sp.dir)
	switch {
	case errors.Is(err, vfs.ErrUnsupported):
		if !sp.off.Swap(true) {
			sp.logger.Info("store: the file system does not tell its free space; writes are not refused when it fills up", "dir", sp.dir)
		}
		return
	case err != nil:
		// Keep counting down from the last reading; try again later.
		if !sp.checked.IsZero() {
			sp.logger.Warn("store: reading the free space failed", "dir", sp.dir, "err", err)
		}
		sp.checked = now
		return
	}
	sp.checked, sp.free, sp.taken, sp.known = now, usage.AvailBytes, 0, true
	if sp.free < sp.reserve/4 && sp.ballast.isPresent() {
		sp.ballast.release("the disk is nearly full and something else than the store's writes filled it", sp.free)
		sp.checked = time.Time{} // read the space it gave at the next write
	}
	switch {
	case !sp.low && sp.free < sp.reserve:
		sp.lowLocked()
	case sp.low && sp.free >= sp.resumeAt():
		if sp.readOnly {
			sp.logger.Warn("store: free space is back above the reserve: reopening the store, which opened read-only, to accept writes",
				"dir", sp.dir, "free", formatBytes(sp.free), "reserve", formatBytes(sp.reserve))
		} else {
			sp.logger.Warn("store: free space is back above the reserve: accepting writes again",
				"dir", sp.dir, "free", formatBytes(sp.free), "reserve", formatBytes(sp.reserve))
		}
		sp.low = false
	}
}

// resumeAt is the free space from which a store low on space accepts
// writes again.
func (sp *space) resumeAt() uint64 { return sp.reserve + sp.reserve/8 }

// lowLocked makes the store low on space, and says so.
func (sp *space) lowLocked() {
	sp.low = true
	sp.logger.Error("store: disk nearly full: refusing writes (507, or CodeInsufficientStorage on the binary port) while reads go on; they are accepted again by themselves once space is freed",
		"dir", sp.dir, "free", formatBytes(sp.free), "reserve", formatBytes(sp.reserve), "resume_at", formatBytes(sp.resumeAt()))
}

// recheck makes the next write read the free space again.
func (sp *space) recheck() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.checked = time.Time{}
}

// outOfSpace is called when Pebble met ENOSPC in the background: the
// ballast is given back at once, and the free space read again.
func (sp *space) outOfSpace() {
	sp.ballast.release("Pebble met a full disk", 0)
	sp.recheck()
}

// stats returns the free space as last read (0 if never), and the writes
// refused so far.
func (sp *space) stats() (free uint64, refused int64, low bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.known {
		return 0, sp.refused, false
	}
	return sp.free, sp.refused, sp.low
}

// formatBytes writes n in MiB (or KiB, or bytes when small), for messages.
func formatBytes(n uint64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
