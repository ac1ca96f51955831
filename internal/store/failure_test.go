package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// walFault injects errorfs.ErrInjected into the operations of kinds on
// write-ahead log files while it is on.
type walFault struct {
	on    atomic.Bool
	kinds []errorfs.OpKind
}

func (f *walFault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	for _, k := range f.kinds {
		if op.Kind == k {
			return errorfs.ErrInjected
		}
	}
	return nil
}

func (f *walFault) String() string { return "wal fault" }

// fatalRecorder is an Options.OnFatal that keeps what it was called with.
type fatalRecorder struct {
	mu    sync.Mutex
	errs  []error
	first chan struct{}
}

func newFatalRecorder() *fatalRecorder { return &fatalRecorder{first: make(chan struct{})} }

func (r *fatalRecorder) onFatal(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	if len(r.errs) == 1 {
		close(r.first)
	}
}

// wait returns what OnFatal was called with, after the first call.
func (r *fatalRecorder) wait(t *testing.T) []error {
	t.Helper()
	select {
	case <-r.first:
	case <-time.After(5 * time.Second):
		t.Fatal("OnFatal was not called")
	}
	time.Sleep(10 * time.Millisecond) // a second call, if there were one
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// TestWALFaultFailsTheStore: when a write or sync of the write-ahead log
// fails, no Put that the fault touched returns success, the store fails
// (OnFatal, once; every later call, reads included, returns ErrFailed;
// Close returns at once), and after a crash every write that Put
// acknowledged is there.
func TestWALFaultFailsTheStore(t *testing.T) {
	tests := []struct {
		name  string
		kinds []errorfs.OpKind
	}{
		{"sync fails", []errorfs.OpKind{errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo}},
		{"write fails", []errorfs.OpKind{errorfs.OpFileWrite, errorfs.OpFileWriteAt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			fault := &walFault{kinds: tt.kinds}
			fatal := newFatalRecorder()
			s, err := Open("db", Options{FS: errorfs.Wrap(mem, fault), Logger: testLogger(t), OnFatal: fatal.onFatal})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			// Writers Put keys of their own until they meet an error;
			// the fault starts once some writes were acknowledged.
			const writers = 8
			var acked sync.Map // key -> Record
			var ackCount atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Go(func() {
					for i := 0; ; i++ {
						key := fmt.Sprintf("w%d-%d", w, i)
						rec := live(int64(i+1), key)
						if _, err := s.Put(ctx, []byte(key), rec); err != nil {
							errs <- err
							return
						}
						acked.Store(key, rec)
						ackCount.Add(1)
					}
				})
			}
			for ackCount.Load() < 200 {
				time.Sleep(time.Millisecond)
			}
			fault.on.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, ErrFailed) {
					t.Errorf("a Put during the fault returned %v, want ErrFailed", err)
				}
			}

			got := fatal.wait(t)
			if len(got) != 1 || !errors.Is(got[0], ErrFailed) || !errors.Is(got[0], errorfs.ErrInjected) && !strings.Contains(got[0].Error(), "injected") {
				t.Errorf("OnFatal got %v, want one call with ErrFailed and the injected error", got)
			}
			// The store serves nothing more, reads included: the memtable
			// may hold writes that are not on the disk.
			fault.on.Store(false)
			if _, err := s.Get(ctx, []byte("w0-0")); !errors.Is(err, ErrFailed) {
				t.Errorf("Get after the failure = %v, want ErrFailed", err)
			}
			if _, err := s.Put(ctx, []byte("after"), live(1, "x")); !errors.Is(err, ErrFailed) {
				t.Errorf("Put after the failure = %v, want ErrFailed", err)
			}
			if err := s.Scan(ctx, 0, 1<<32-1, func([]byte, Record) error { return nil }); !errors.Is(err, ErrFailed) {
				t.Errorf("Scan after the failure = %v, want ErrFailed", err)
			}
			if _, err := s.PutMany(ctx, []Entry{{Key: []byte("after"), Record: live(1, "x")}}); !errors.Is(err, ErrFailed) {
				t.Errorf("PutMany after the failure = %v, want ErrFailed", err)
			}
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case err := <-closed:
				if !errors.Is(err, ErrFailed) {
					t.Errorf("Close after the failure = %v, want ErrFailed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close of a failed store hangs")
			}

			// The process restarts after a crash that loses what was not
			// synced: every acknowledged write is there.
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(1, 2))})
			s2 := openTest(t, crashed, "db")
			n := 0
			acked.Range(func(k, v any) bool {
				n++
				got, err := s2.Get(ctx, []byte(k.(string)))
				if err != nil || !sameRecord(got, v.(Record)) {
					t.Errorf("acknowledged %s: after the restart Get = %v, %v; want %v", k, got, err, v)
				}
				return true
			})
			t.Logf("%d writes acknowledged before the fault, all there after the restart", n)
		})
	}
}

// TestFatalfOutsideAGuardParks: Pebble calls Fatalf from its own
// goroutines too (a flush that cannot write the MANIFEST), where a panic
// would kill the process with a stack trace: there Fatalf fails the store
// and parks the goroutine; under guard it panics into the guard, which
// returns the failure.
func TestFatalfOutsideAGuardParks(t *testing.T) {
	fatal := newFatalRecorder()
	f := &fate{logger: testLogger(t), onFatal: fatal.onFatal}
	p := pebbleLogger{l: testLogger(t), fate: f}

	returned := make(chan struct{})
	go func() {
		p.Fatalf("MANIFEST sync failed: %v", errorfs.ErrInjected)
		close(returned)
	}()
	got := fatal.wait(t)
	if len(got) != 1 || !errors.Is(got[0], ErrFailed) || !strings.Contains(got[0].Error(), "pebble: MANIFEST sync failed") {
		t.Errorf("OnFatal got %v", got)
	}
	select {
	case <-returned:
		t.Error("Fatalf returned to Pebble")
	case <-time.After(50 * time.Millisecond):
	}

	err := f.guard(func() error {
		p.Fatalf("fatal commit error: %v", errorfs.ErrInjected)
		return nil
	})
	if !errors.Is(err, ErrFailed) {
		t.Errorf("guard around a Fatalf = %v, want ErrFailed", err)
	}
	err = f.guard(func() error { panic("pebble: invariant violated") })
	if !errors.Is(err, ErrFailed) {
		t.Errorf("guard around a panic = %v, want ErrFailed", err)
	}
}

// flipFS flips bytes of what is read from table files (.sst) while it is
// on: a disk that returns damaged data without an error.
type flipFS struct {
	vfs.FS
	on atomic.Bool
}

func (fs *flipFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !strings.HasSuffix(name, ".sst") {
		return f, err
	}
	return flipFile{File: f, on: &fs.on}, nil
}

type flipFile struct {
	vfs.File
	on *atomic.Bool
}

func (f flipFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if f.on.Load() {
		for i := 0; i < n; i += 97 {
			p[i] ^= 0x5a
		}
	}
	return n, err
}

// TestDamagedTableNeverServesWrongBytes: a table that reads back damaged
// gives a *DamageError naming it (counted in Stats), and one whose reads
// fail gives their error: never a record with other bytes, never "not
// found".
func TestDamagedTableNeverServesWrongBytes(t *testing.T) {
	fs := &flipFS{FS: vfs.NewMem()}
	fault := &tableReadFault{}
	// A block cache of one byte: every read goes to the file.
	s, err := Open("db", Options{FS: errorfs.Wrap(fs, fault), Logger: testLogger(t), CacheSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	want := map[string]Record{}
	for i := range 500 {
		key := fmt.Sprintf("k%03d", i)
		want[key] = live(int64(i+1), strings.Repeat(key, 20))
		mustPut(t, s, key, want[key])
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for key, rec := range want {
		if got := mustGet(t, s, key); !sameRecord(got, rec) {
			t.Fatalf("%s before the damage = %v, want %v", key, got, rec)
		}
	}

	t.Run("damaged bytes", func(t *testing.T) {
		fs.on.Store(true)
		defer fs.on.Store(false)
		for key, rec := range want {
			got, err := s.Get(ctx, []byte(key))
			if err == nil {
				if !sameRecord(got, rec) {
					t.Fatalf("%s from a damaged table = %v, want %v or an error", key, got, rec)
				}
				continue
			}
			var de *DamageError
			if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) || !strings.HasSuffix(de.Path, ".sst") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s from a damaged table: %q, want a one-line *DamageError naming the .sst", key, err)
			}
		}
		err := s.Scan(ctx, 0, 1<<32-1, func([]byte, Record) error { return nil })
		if !errors.Is(err, ErrDamaged) {
			t.Errorf("Scan over a damaged table = %v, want ErrDamaged", err)
		}
		if _, err := s.Put(ctx, []byte("k000"), live(1000, "new")); !errors.Is(err, ErrDamaged) {
			t.Errorf("Put over a damaged record = %v, want ErrDamaged (it reads first)", err)
		}
		if got := s.Stats().DamagedFiles; got != 1 {
			t.Errorf("Stats().DamagedFiles = %d, want 1", got)
		}
	})

	t.Run("read errors", func(t *testing.T) {
		fault.on.Store(true)
		defer fault.on.Store(false)
		for key := range want {
			got, err := s.Get(ctx, []byte(key))
			if err == nil && !sameRecord(got, want[key]) || errors.Is(err, ErrNotFound) {
				t.Fatalf("%s while the table's reads fail = %v, %v; want the record or an error", key, got, err)
			}
		}
	})

	for key, rec := range want {
		if got := mustGet(t, s, key); !sameRecord(got, rec) {
			t.Fatalf("%s once the disk reads well again = %v, want %v", key, got, rec)
		}
	}
}

// tableReadFault fails the reads of table files while it is on.
type tableReadFault struct{ on atomic.Bool }

func (f *tableReadFault) MaybeError(op errorfs.Op) error {
	if f.on.Load() && strings.HasSuffix(op.Path, ".sst") && (op.Kind == errorfs.OpFileReadAt || op.Kind == errorfs.OpFileRead) {
		return errorfs.ErrInjected
	}
	return nil
}

func (f *tableReadFault) String() string { return "table read fault" }

// TestDamagedStoreDoesNotOpen: Open reads every record, so a table whose
// bytes changed on the disk, or a write-ahead log damaged before its end,
// keeps the store from opening, with one line that names the file (the
// directory for a log, which Pebble does not name).
func TestDamagedStoreDoesNotOpen(t *testing.T) {
	t.Run("table", func(t *testing.T) {
		dir := t.TempDir()
		s := openTest(t, nil, dir)
		for i := range 1000 {
			mustPut(t, s, fmt.Sprintf("k%04d", i), live(1, strings.Repeat("v", 100)))
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		if len(ssts) != 1 {
			t.Fatalf("tables: %v, want one", ssts)
		}
		flipBytes(t, ssts[0], 100)
		_, err := Open(dir, Options{Logger: testLogger(t)})
		var de *DamageError
		if !errors.As(err, &de) || de.Path != ssts[0] || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open of a store with a damaged table: %q, want one line with a *DamageError naming %s", err, ssts[0])
		}
		t.Logf("Open: %v", err)
	})

	t.Run("write-ahead log", func(t *testing.T) {
		mem := vfs.NewCrashableMem()
		s, err := Open("db", Options{FS: mem, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		// More than a few of the log's 32 KiB blocks, all synced.
		for i := range 3000 {
			mustPut(t, s, fmt.Sprintf("k%04d", i), live(1, strings.Repeat("v", 100)))
		}
		crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0, RNG: rand.New(rand.NewPCG(1, 2))})
		logs, err := crashed.List("db")
		if err != nil {
			t.Fatal(err)
		}
		damagedOne := false
		for _, name := range logs {
			if !strings.HasSuffix(name, ".log") {
				continue
			}
			st, err := crashed.Stat("db/" + name)
			if err != nil || st.Size() < 4*32<<10 {
				continue
			}
			f, err := crashed.OpenReadWrite("db/"+name, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 8), st.Size()/2); err != nil {
				t.Fatal(err)
			}
			f.Close()
			damagedOne = true
		}
		if !damagedOne {
			t.Fatalf("no write-ahead log of four blocks or more in %v", logs)
		}
		_, err = Open("db", Options{FS: crashed, Logger: testLogger(t)})
		var de *DamageError
		if !errors.As(err, &de) || de.Path != "db" || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Open of a store with a damaged log: %q, want one line with a *DamageError naming the directory", err)
		}
		t.Logf("Open: %v", err)
	})
}

// flipBytes flips 8 bytes of the file at path from offset off.
func flipBytes(t *testing.T, path string, off int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := off; i < off+8 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFullDiskRefusesWritesAndResumes: a write that would eat into the
// reserve is refused with ErrNoSpace and writes nothing, while reads go
// on; from then on every write is refused until the free space is back
// above the reserve and an eighth of it; then writes are accepted again by
// themselves. A large write that does not fit while space is plentiful is
// refused alone.
func TestFullDiskRefusesWritesAndResumes(t *testing.T) {
	const reserve = 1 << 20
	mem := vfs.NewMem()
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 100 << 20, TotalBytes: 200 << 20, UsedBytes: 100 << 20})
	s := openTestOpts(t, "db", Options{FS: mem, MinFreeBytes: reserve})
	ctx := context.Background()
	mustPut(t, s, "a", live(1, "before"))
	mustPut(t, s, "gone", live(1, "x"))

	setFree := func(free uint64) {
		mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: free, TotalBytes: 200 << 20, UsedBytes: 200<<20 - free})
		s.space.recheck()
	}
	setFree(reserve + 400<<10)
	if _, err := s.Put(ctx, []byte("big"), live(1, strings.Repeat("x", 500<<10))); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a write of 500 KiB with 400 KiB above the reserve = %v, want ErrNoSpace", err)
	}
	if st := s.Stats(); st.LowSpace {
		t.Errorf("a large write refused with plenty of space made the store low on space: %+v", st)
	}
	// Writes are counted against the free space between two readings
	// (the store reads it again after an eighth of the reserve).
	setFree(reserve + 100<<10)
	mustPut(t, s, "b", live(1, strings.Repeat("x", 40<<10)))
	mustPut(t, s, "b", live(2, strings.Repeat("x", 40<<10)))
	if _, err := s.Put(ctx, []byte("c"), live(1, strings.Repeat("x", 40<<10))); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a third write of 40 KiB with 100 KiB above the reserve = %v, want ErrNoSpace", err)
	}
	// Low on space now: a small write that would fit is refused too.
	if _, err := s.Put(ctx, []byte("c"), live(1, "small")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a small write once the store is low on space = %v, want ErrNoSpace", err)
	}

	setFree(reserve / 2)
	writes := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, []byte("a"), live(2, "after")); return err }},
		{"Put of a tombstone", func() error { _, err := s.Put(ctx, []byte("a"), tomb(3)); return err }},
		{"PutMany", func() error {
			_, err := s.PutMany(ctx, []Entry{{Key: []byte("a"), Record: live(4, "many")}})
			return err
		}},
		{"Remove", func() error { _, err := s.Remove(ctx, []byte("gone"), live(1, "x")); return err }},
		{"Purge", func() error { _, err := s.Purge(ctx, []byte("gone")); return err }},
	}
	for _, w := range writes {
		err := w.do()
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "reserve") {
			t.Errorf("%s on a full disk = %v, want ErrNoSpace with the reason", w.name, err)
		}
	}
	if got := mustGet(t, s, "a"); !sameRecord(got, live(1, "before")) {
		t.Errorf("a on a full disk = %v, want the record from before", got)
	}
	if _, err := s.Get(ctx, []byte("gone")); err != nil {
		t.Errorf("gone on a full disk: %v, want it still there", err)
	}
	// A Put that does not write needs no space.
	if res, err := s.Put(ctx, []byte("a"), live(1, "before")); err != nil || res.Outcome != Unchanged {
		t.Errorf("an unchanged Put on a full disk = %v, %v; want Unchanged", res, err)
	}
	st := s.Stats()
	if !st.LowSpace || st.FreeBytes != reserve/2 || st.WritesRefused != int64(len(writes))+3 {
		t.Errorf("Stats on a full disk: %+v, want LowSpace, FreeBytes %d, WritesRefused %d", st, reserve/2, len(writes)+3)
	}

	// Just above the reserve is not enough to resume.
	setFree(reserve + reserve/16)
	if _, err := s.Put(ctx, []byte("a"), live(5, "x")); !errors.Is(err, ErrNoSpace) {
		t.Errorf("a write with less than an eighth of the reserve above it = %v, want ErrNoSpace", err)
	}
	setFree(10 << 20)
	mustPut(t, s, "a", live(5, "resumed"))
	if got := mustGet(t, s, "a"); !sameRecord(got, live(5, "resumed")) {
		t.Errorf("a after space came back = %v", got)
	}
	if st := s.Stats(); st.LowSpace {
		t.Errorf("Stats after space came back: %+v, want not LowSpace", st)
	}
}

// TestMinFreeBytesNegative: a negative reserve is a mistake, not "off".
func TestMinFreeBytesNegative(t *testing.T) {
	if _, err := Open("db", Options{FS: vfs.NewMem(), MinFreeBytes: -1}); err == nil || !strings.Contains(err.Error(), "MinFreeBytes") {
		t.Errorf("Open with MinFreeBytes -1 = %v, want an error naming it", err)
	}
}

// openTestOpts opens a store in dir with opts (logging to the test) and
// closes it when the test ends.
func openTestOpts(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	opts.Logger = testLogger(t)
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestBallastIsGivenBackAndMadeAgain: the store keeps a ballast of half
// its reserve once there is room; when something else takes the free
// space under a quarter of the reserve, the ballast is deleted; it is made
// again once there is room. A store opened on a disk already under the
// reserve deletes its ballast before Pebble opens, so that it can start.
func TestBallastIsGivenBackAndMadeAgain(t *testing.T) {
	const reserve = 4 << 20
	mem := vfs.NewMem()
	setUsage := func(free uint64) { setFreeSpace(mem, free) }
	setUsage(100 << 20)
	s := openTestOpts(t, "db", Options{FS: mem, MinFreeBytes: reserve})
	ballastPath := mem.PathJoin("db", BallastFile)
	exists := func() bool { _, err := mem.Stat(ballastPath); return err == nil }
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 5 s for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil("the ballast to be made", exists)

	// Under the reserve but above a quarter of it: writes are refused,
	// the ballast stays (the store's own writes cannot take it further).
	setUsage(reserve / 2)
	s.space.recheck()
	if _, err := s.Put(context.Background(), []byte("k"), live(1, "v")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a write under the reserve = %v, want ErrNoSpace", err)
	}
	if !exists() {
		t.Fatal("the ballast was given back with half the reserve free")
	}
	// Something else took the space: the ballast goes, without a write.
	setUsage(reserve / 8)
	waitUntil("the ballast to be given back", func() bool { return !exists() })
	// Space is back: the ballast is made again, and writes go on.
	setUsage(100 << 20)
	waitUntil("the ballast to be made again", exists)
	mustPut(t, s, "k", live(1, "v"))

	// A store that opens on a full disk gives its ballast back first.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setUsage(reserve / 2)
	s2 := openTestOpts(t, "db", Options{FS: mem, MinFreeBytes: reserve})
	if exists() {
		t.Error("a store opened with half its reserve free kept its ballast")
	}
	if got := mustGet(t, s2, "k"); !sameRecord(got, live(1, "v")) {
		t.Errorf("k after reopening on a full disk = %v", got)
	}
}

// TestOpensReadOnlyOnAFullDisk: a store opened with less than its reserve
// free (its ballast gone too) opens read-only: it serves what it holds,
// refuses writes with the reason, and once the free space is back asks
// its owner, once, to open it again (OnWritable).
func TestOpensReadOnlyOnAFullDisk(t *testing.T) {
	const reserve = 4 << 20
	mem := vfs.NewMem()
	setUsage := func(free uint64) { setFreeSpace(mem, free) }
	setUsage(100 << 20)
	s, err := Open("db", Options{FS: mem, MinFreeBytes: reserve, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", live(1, "v"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setUsage(reserve / 8)
	writable := make(chan struct{}, 4)
	s = openTestOpts(t, "db", Options{FS: mem, MinFreeBytes: reserve, OnWritable: func() { writable <- struct{}{} }})
	if got := mustGet(t, s, "k"); !sameRecord(got, live(1, "v")) {
		t.Errorf("k on a store opened read-only: %v", got)
	}
	if _, err := s.Put(context.Background(), []byte("k2"), live(1, "v")); !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a write to a store opened read-only = %v, want ErrNoSpace saying why", err)
	}
	setUsage(100 << 20)
	select {
	case <-writable:
	case <-time.After(5 * time.Second):
		t.Fatal("OnWritable was not called within 5 s of space coming back")
	}
	select {
	case <-writable:
		t.Error("OnWritable was called twice")
	case <-time.After(2 * spaceWatchEvery):
	}
}

// setFreeSpace makes mem, a file system of 200 MiB, report free bytes free.
func setFreeSpace(mem *vfs.MemFS, free uint64) {
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: free, TotalBytes: 200 << 20, UsedBytes: 200<<20 - free})
}
