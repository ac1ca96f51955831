package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BallastFile is the name of the ballast in the store's directory: a file
// of space set aside that the store gives back to the file system when
// something else has filled it, so that Pebble can finish the flushes and
// the log it has started, and a node whose disk filled up can still open
// its store (CockroachDB keeps a ballast for the same reasons). Deleting
// it by hand is always safe: the store makes a new one once there is room.
const BallastFile = "TAKO-BALLAST"

// ballast is the store's ballast file: made when there is room, given
// back when the file system is about to run out.
type ballast struct {
	fs     vfs.FS
	path   string
	size   uint64
	logger *slog.Logger

	mu      sync.Mutex // guards the fields below, and the file
	present bool
	failed  bool // the last attempt to make it failed: do not retry at every reading
}

// newBallast returns the ballast of the store in dir, size bytes, and
// looks whether it is there.
func newBallast(fs vfs.FS, dir string, size uint64, logger *slog.Logger) *ballast {
	b := &ballast{fs: fs, path: fs.PathJoin(dir, BallastFile), size: size, logger: logger}
	if _, err := fs.Stat(b.path); err == nil {
		b.present = true
	}
	return b
}

// isPresent reports whether the ballast is on the disk.
func (b *ballast) isPresent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.present
}

// release deletes the ballast, if it is there, and says why.
func (b *ballast) release(why string, free uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.present {
		return
	}
	if err := b.fs.Remove(b.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.logger.Error("store: could not delete the ballast to free space", "path", b.path, "err", err)
		return
	}
	b.present = false
	attrs := []any{"path", b.path, "ballast", formatBytes(b.size)}
	if free > 0 {
		attrs = append(attrs, "free_before", formatBytes(free))
	}
	b.logger.Error("store: "+why+": deleted the ballast to give the store room to finish its work; free space on this disk now, and the store makes a new ballast by itself once there is room", attrs...)
}

// make writes the ballast out, if it is not there: a file of size bytes,
// its blocks allocated. A failure is logged once and leaves no file.
func (b *ballast) make() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.present || b.size == 0 {
		return
	}
	if err := b.write(); err != nil {
		_ = b.fs.Remove(b.path)
		if !b.failed {
			b.logger.Warn("store: could not make the ballast; the store runs without it", "path", b.path, "err", err)
		}
		b.failed = true
		return
	}
	b.present, b.failed = true, false
	b.logger.Info("store: made the ballast, space kept aside in case the disk fills up", "path", b.path, "size", formatBytes(b.size))
}

// write creates the file and allocates its blocks.
func (b *ballast) write() error {
	f, err := b.fs.Create(b.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if err := f.Preallocate(0, int64(b.size)); err != nil {
		_ = f.Close()
		return fmt.Errorf("allocating %s: %w", formatBytes(b.size), err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
