package store

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// syncGate holds every sync of a write-ahead log file while it is armed,
// until it is released: a disk that takes its time.
type syncGate struct {
	armed   atomic.Bool
	waiting chan struct{} // gets a value when a sync starts to wait
	release chan struct{} // closed to let the syncs go on
}

func (g *syncGate) MaybeError(op errorfs.Op) error {
	if !g.armed.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		select {
		case g.waiting <- struct{}{}:
		default:
		}
		<-g.release
	}
	return nil
}

func (g *syncGate) String() string { return "sync gate" }

// TestGetDoesNotSeeAWriteBeforeItIsSynced: Pebble makes a write visible
// to readers before its write-ahead log is synced. A Get that returned
// such a record would let a read answer with a version that a crash then
// takes back (the simulator found reads going back in time that way, with
// a slow disk and a crash). Get waits for the write instead.
func TestGetDoesNotSeeAWriteBeforeItIsSynced(t *testing.T) {
	ctx := context.Background()
	gate := &syncGate{waiting: make(chan struct{}, 1), release: make(chan struct{})}
	s, err := Open("db", Options{FS: errorfs.Wrap(vfs.NewMem(), gate), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var released atomic.Bool
	release := func() {
		gate.armed.Store(false)
		if released.CompareAndSwap(false, true) {
			close(gate.release)
		}
	}
	defer release() // before Close, also when the test fails
	key := []byte("k")
	if _, err := s.Put(ctx, key, live(1, "old")); err != nil {
		t.Fatal(err)
	}
	gate.armed.Store(true)
	putDone := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, key, live(2, "new"))
		putDone <- err
	}()
	select {
	case <-gate.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the write never synced")
	}
	got := make(chan Record, 1)
	go func() {
		rec, err := s.Get(ctx, key)
		if err != nil {
			t.Errorf("Get: %v", err)
		}
		got <- rec
	}()
	select {
	case rec := <-got:
		t.Fatalf("Get answered %q @%d while the write of @2 was not synced yet", rec.Value, rec.Timestamp)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-putDone; err != nil {
		t.Fatal(err)
	}
	if rec := <-got; rec.Timestamp != 2 || string(rec.Value) != "new" {
		t.Fatalf("Get after the sync = %q @%d, want \"new\" @2", rec.Value, rec.Timestamp)
	}
}
