package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// TestACheckpointOpensWithEveryAcknowledgedWrite: a checkpoint taken on a
// real disk while the store serves holds every record written before it,
// opens as a store of its own, and does not see later writes.
func TestACheckpointOpensWithEveryAcknowledgedWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, nil, filepath.Join(dir, "db"))
	for i := range 500 {
		rec := Record{Timestamp: int64(i + 1), Value: []byte(fmt.Sprintf("v%d", i))}
		if i%7 == 0 {
			rec = Record{Timestamp: int64(i + 1), Tombstone: true}
		}
		if _, err := s.Put(ctx, []byte(fmt.Sprintf("k%d", i)), rec); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(dir, "snap")
	if err := s.Checkpoint(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, []byte("after"), Record{Timestamp: 1000, Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx, snap); err == nil {
		t.Fatal("a checkpoint into a directory that exists succeeded")
	}
	c := openTest(t, nil, snap)
	for i := range 500 {
		rec, err := c.Get(ctx, []byte(fmt.Sprintf("k%d", i)))
		if err != nil || rec.Timestamp != int64(i+1) || rec.Tombstone != (i%7 == 0) {
			t.Fatalf("k%d in the checkpoint: %+v, %v", i, rec, err)
		}
	}
	if _, err := c.Get(ctx, []byte("after")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a write after the checkpoint is in it: %v", err)
	}
}
