package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpoint makes a consistent copy of the store in dir, which must not
// exist, on the store's file system: hard links to the immutable files
// where the file system has them (near instant, little space), copies of
// the rest, the write-ahead log flushed first so that every write
// acknowledged before the call is in the copy. The copy opens as a store
// of its own (Open). It returns ErrClosed after Close.
func (s *Store) Checkpoint(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	if err := s.guard(func() error { return s.db.Checkpoint(dir, pebble.WithFlushedWAL()) }); err != nil {
		return fmt.Errorf("store: checkpoint in %s: %w", dir, err)
	}
	return nil
}
