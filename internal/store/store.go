package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/keyhash"
)

var (
	// ErrNotFound is returned by Get when the store holds no record for the
	// key. A tombstone is a record: Get returns it, not ErrNotFound.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt is wrapped by the errors of Open, Get, Put, Remove, Scan,
	// Fingerprints and RangeDigest when a stored key or value does not
	// follow the layout of the package doc.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrEmptyKey is returned by Put, Get and Remove when the key is empty.
	ErrEmptyKey = errors.New("store: empty key")
)

const (
	// defaultCacheSize is the block cache size when Options.CacheSize is 0.
	defaultCacheSize = 64 << 20
	// numStripes is the number of locks that serialise Put and Remove of
	// one key. A power of two; a key's stripe is its hash modulo it.
	numStripes = 1024
	// ctxCheckEvery is how many records Scan visits between two looks at
	// its context.
	ctxCheckEvery = 256
	// memTableSize is the size of one of Pebble's memtables.
	memTableSize = 32 << 20
	// valueSeparationMin is the smallest value stored in a blob file,
	// apart from the keys.
	valueSeparationMin = 16 << 10
)

// Options configure Open. The zero value is a durable store on the real
// disk with a 64 MiB block cache that logs nothing.
type Options struct {
	// FS is the file system the store lives on. If nil, it is the real disk
	// (vfs.Default); tests use vfs.NewMem or vfs.NewCrashableMem.
	FS vfs.FS
	// Logger receives Pebble's messages and the store's own events. If nil,
	// nothing is logged.
	Logger *slog.Logger
	// NoSync, if true, lets Put and Remove return before their write is
	// synced to the write-ahead log, so a machine crash can lose
	// acknowledged writes. For benchmarks only, never in production. The
	// zero value, false, is durable.
	NoSync bool
	// CacheSize is the size of the block cache in bytes. If 0, it is
	// 64 MiB. Negative is an error.
	CacheSize int64
	// MinFreeBytes is the free space, in bytes, that the store keeps on its
	// file system for Pebble's flushes and compactions: a write that would
	// leave less is refused with ErrNoSpace, and writes are accepted again
	// once space is freed (see space.go). If 0, it is 128 MiB, four
	// memtables. Negative is an error. On a file system that does not tell
	// its free space (vfs.NewMem) no write is refused.
	MinFreeBytes int64
	// OnFatal, if not nil, is called once, in a goroutine of its own, with
	// an error wrapping ErrFailed when the store meets an error it cannot
	// survive (a failed write or sync of its write-ahead log): the store
	// then serves nothing more, and its owner should stop the process
	// (docs/operations.md). The store does not log the error itself then.
	// If nil, the store logs it.
	OnFatal func(error)
	// OnWritable is called once, from a goroutine of the store's, when a
	// store that opened read-only (its file system had less than the
	// reserve free when it opened: it then refuses every write) finds the free
	// space back above the point where writes resume: its owner should
	// close it and open it again to take writes. If nil, the store logs
	// that a restart is due.
	OnWritable func()
}

// Stats describe a store's size.
type Stats struct {
	// Keys is the number of records, tombstones included: counted by Open
	// and kept up to date by Put and Remove.
	Keys int64
	// DiskBytes is the disk space the database uses, in bytes: tables,
	// write-ahead log and metadata, including files not yet deleted.
	DiskBytes uint64
	// WriteStalls counts the times Pebble stalled writes (its memtables
	// or level 0 were full), and WriteStalled is how long they lasted.
	WriteStalls  int64
	WriteStalled time.Duration
	// FreeBytes is the free space on the store's file system when the
	// store last looked (0 if it cannot tell), less what writes took
	// since. LowSpace is true while it is below Options.MinFreeBytes, and
	// WritesRefused counts the writes refused with ErrNoSpace.
	FreeBytes     uint64
	LowSpace      bool
	WritesRefused int64
	// DamagedFiles counts the files Pebble found damaged (a checksum
	// mismatch) since Open.
	DamagedFiles int64
}

// Store is a node's record store. Its methods are safe for concurrent use.
type Store struct {
	db        *pebble.DB
	created   bool // Open made a new database: the directory held none
	dir       string
	logger    *slog.Logger
	writeOpts *pebble.WriteOptions

	// fate says whether the store failed (see failure.go).
	fate *fate
	// space refuses writes when the file system runs out of space.
	space *space
	// events logs Pebble's background errors and damaged files.
	events *eventLog

	// stripes serialise the read-compare-write of Put and Remove: each
	// guards the records of the keys whose hash is its index modulo
	// numStripes. A write holds its stripe until its write-ahead log
	// record is synced, and Get takes the stripe shared: Pebble makes a
	// write visible to readers before its sync completes, and a record
	// read from the store must be one that a crash cannot take back (a
	// read that answered with it made it seen; the simulator found
	// versions read once and gone after a crash, on a slow disk).
	stripes [numStripes]sync.RWMutex

	// mu guards closed. Calls hold it shared only while they register in
	// ops, so Close never waits on a call for mu, and a call that another
	// call makes (from Scan's callback, say) cannot deadlock with Close.
	mu     sync.RWMutex
	closed bool
	// ops counts the calls in progress; Close waits for them before it
	// closes db.
	ops sync.WaitGroup
	// closeDone is closed when the first Close has returned.
	closeDone chan struct{}
	// stopWatch stops space.watch, which closes watchDone when it returns.
	stopWatch, watchDone chan struct{}
	// closeErr is the first Close's result; written before closeDone is closed.
	closeErr error

	// keys is the number of records: those Open found, plus those Put
	// created, minus those Remove deleted.
	keys atomic.Int64

	// stall follows Pebble's write stalls (see WaitUnstalled).
	stall *stalls

	// slots are the digests of the records of each slot of the hash space
	// (see RangeDigest). Open builds them; Put and Remove update them,
	// under the key's stripe, after their write succeeded. Two stripes
	// share a slot, so they are updated with atomics.
	slots [DigestSlots]slotDigest
}

// Open opens the store in dir, creating it if it does not exist, and reads
// every record once to build the digests of the hash space's slots (see
// RangeDigest) before it returns: about half a second per million records
// of 100 bytes in the page cache, more from a cold disk. The caller must
// Close it.
//
// Open returns an error wrapping ErrCorrupt if a stored record cannot be
// decoded, and a *DamageError (ErrDamaged) if a file of the store fails
// its checksum.
func Open(dir string, opts Options) (*Store, error) {
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("store: opening %q: CacheSize is %d, want 0 (the default) or more", dir, opts.CacheSize)
	}
	if opts.MinFreeBytes < 0 {
		return nil, fmt.Errorf("store: opening %q: MinFreeBytes is %d, want 0 (the default, %d) or more", dir, opts.MinFreeBytes, defaultMinFreeBytes)
	}
	minFree := opts.MinFreeBytes
	if minFree == 0 {
		minFree = defaultMinFreeBytes
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = defaultCacheSize
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref() // the DB holds its own reference

	stall := &stalls{}
	fate := &fate{logger: logger, onFatal: opts.OnFatal}
	events := &eventLog{l: logger, dir: dir}
	sp := newSpace(fs, dir, uint64(minFree), logger)
	sp.onWritable = opts.OnWritable
	readOnly := sp.beforeOpen()
	popts := &pebble.Options{
		FS:    fs,
		Cache: cache,
		// An explicit version, so that upgrading Pebble never changes the
		// format of files on disk by itself. It includes WAL sync chunks,
		// which tell a torn tail from corruption when the WAL is replayed.
		FormatMajorVersion: pebble.FormatValueSeparation,
		Logger:             pebbleLogger{l: logger, fate: fate},
		EventListener:      eventListener(logger, stall, events, sp),
		// Pebble's 4 MiB memtables fill after 64 values of 64 KiB: a
		// refill, or a client writing large values, then meets a write
		// stall every few milliseconds. Larger memtables, and more of them
		// and of level 0's files before writes stall, absorb a burst.
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
	}
	// Values of valueSeparationMin bytes or more live in blob files, apart
	// from the keys and small values: compactions move references, not the
	// large values, and reads of small keys do not wade through them.
	popts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           valueSeparationMin,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	// On a file system without room to flush what the log replays, the
	// store opens read-only: Pebble replays the log into memory and writes
	// nothing (no flush, no compaction, no new log), so the node starts and
	// serves reads instead of retrying a flush that cannot succeed.
	popts.ReadOnly = readOnly
	// Every Put reads its key first, and most Puts are of keys the store
	// has not seen: bloom filters answer those reads without disk reads.
	// Levels after the first inherit the policy.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)

	// A directory without a database (missing, or empty) gets a new one:
	// the node may have lost its disk (Created).
	created := true
	if desc, err := pebble.Peek(dir, fs); err == nil && desc.Exists {
		created = false
	}
	var db *pebble.DB
	if err := fate.guard(func() (err error) {
		db, err = pebble.Open(dir, popts)
		return err
	}); err != nil {
		return nil, fmt.Errorf("store: opening %q: %w", dir, damaged(err, dir))
	}
	s := &Store{
		db:        db,
		created:   created,
		dir:       dir,
		logger:    logger,
		writeOpts: pebble.Sync,
		closeDone: make(chan struct{}),
		stopWatch: make(chan struct{}),
		watchDone: make(chan struct{}),
		stall:     stall,
		fate:      fate,
		space:     sp,
		events:    events,
	}
	if opts.NoSync {
		s.writeOpts = pebble.NoSync
	}
	sp.start()
	go func() {
		defer close(s.watchDone)
		sp.watch(s.stopWatch)
	}()
	start := time.Now()
	n, err := s.buildDigests(context.Background())
	if err != nil {
		// The error that matters is the build's; Close's can only add noise.
		s.stopWatching()
		_ = s.guard(db.Close)
		return nil, fmt.Errorf("store: opening %q: %w", dir, err)
	}
	s.keys.Store(n)
	free, _, _ := sp.stats()
	logger.Info("store opened", "dir", dir, "sync", !opts.NoSync, "cache_bytes", cacheSize,
		"records", n, "digests_took", time.Since(start), "free_bytes", free, "min_free_bytes", minFree)
	return s, nil
}

// enter registers a call in progress, or returns ErrClosed after Close,
// or the store's failure (ErrFailed). A successful enter must be paired
// with exit.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.fate.failed(); err != nil {
		return err
	}
	s.ops.Add(1)
	return nil
}

// exit ends a call registered by enter.
func (s *Store) exit() { s.ops.Done() }

// stripe returns the lock of the keys whose hash is h.
func (s *Store) stripe(h uint32) *sync.RWMutex {
	return &s.stripes[h%numStripes]
}

// Put stores rec as key's record if it wins over the stored one (see
// Compare), atomically against other Puts and Removes of key, and returns
// what it did and the record stored afterwards. A tombstone's Value is not
// stored. Unless Options.NoSync is set, Put returns only once the write is
// synced to the write-ahead log; a Put that did not write does not sync.
// The returned record does not alias rec.Value or the store's buffers.
//
// Put returns ErrEmptyKey for an empty key, ErrClosed after Close, the
// context's error if ctx is done before the write starts, an error
// wrapping ErrCorrupt if the stored record cannot be decoded, ErrDamaged
// if it cannot be read, ErrNoSpace if the file system is too full to take
// the write, and ErrFailed if the write failed on the disk (or the store
// had failed before): such a write may or may not be in the store after a
// restart, and the store serves nothing more.
func (s *Store) Put(ctx context.Context, key []byte, rec Record) (PutResult, error) {
	if err := ctx.Err(); err != nil {
		return PutResult{}, err
	}
	if len(key) == 0 {
		return PutResult{}, ErrEmptyKey
	}
	if err := s.enter(); err != nil {
		return PutResult{}, err
	}
	defer s.exit()

	h := keyhash.Sum(key)
	mu := s.stripe(h)
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil { // the wait for the stripe may be long
		return PutResult{}, err
	}
	pk := encodeKey(h, key)
	cur, found, err := s.get(pk)
	if err != nil {
		return PutResult{}, fmt.Errorf("store: putting %q: %w", key, err)
	}
	if found {
		switch c := Compare(rec, cur); {
		case c == 0:
			return PutResult{Outcome: Unchanged, Current: cur}, nil
		case c < 0:
			return PutResult{Outcome: Stale, Current: cur}, nil
		}
	}
	v := encodeValue(rec)
	fp := Fingerprint(key, rec)
	if err := s.space.admit(len(pk) + len(v)); err != nil {
		return PutResult{}, fmt.Errorf("store: putting %q: %w", key, err)
	}
	if err := s.guard(func() error { return s.db.Set(pk, v, s.writeOpts) }); err != nil {
		// Pebble applies nothing of a failed Set: an error after the
		// write-ahead log took it is fatal (pebbleLogger.Fatalf), and the
		// store fails.
		return PutResult{}, fmt.Errorf("store: putting %q: %w", key, err)
	}
	if found {
		s.slot(h).replaced(Fingerprint(key, cur), fp)
	} else {
		s.slot(h).added(fp)
		s.keys.Add(1)
	}
	// Pebble copied v, so the record can alias it.
	stored, err := decodeValue(v)
	if err != nil {
		panic(fmt.Sprintf("store: decoding a value just encoded: %v", err))
	}
	return PutResult{Outcome: Written, Current: stored}, nil
}

// Get returns key's record, tombstone or not. The record does not alias the
// store's buffers.
//
// Get returns ErrNotFound if the store holds no record for key,
// ErrEmptyKey for an empty key, ErrClosed after Close, the context's error
// if ctx is done, an error wrapping ErrCorrupt if the stored record cannot
// be decoded, a *DamageError (ErrDamaged) if the file that holds it fails
// its checksum, and ErrFailed once the store failed.
func (s *Store) Get(ctx context.Context, key []byte) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	if len(key) == 0 {
		return Record{}, ErrEmptyKey
	}
	if err := s.enter(); err != nil {
		return Record{}, err
	}
	defer s.exit()

	h := keyhash.Sum(key)
	mu := s.stripe(h)
	// Wait for a write of the key under way to be synced (see stripes).
	mu.RLock()
	rec, found, err := s.get(encodeKey(h, key))
	mu.RUnlock()
	if err != nil {
		return Record{}, fmt.Errorf("store: getting %q: %w", key, err)
	}
	if !found {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// get reads the record stored under the Pebble key pk into memory of its
// own. found is false if there is none.
func (s *Store) get(pk []byte) (rec Record, found bool, err error) {
	v, closer, err := s.db.Get(pk)
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, damaged(err, s.dir)
	}
	defer closer.Close()
	rec, err = decodeValue(v)
	if err != nil {
		return Record{}, false, err
	}
	rec.Value = bytes.Clone(rec.Value)
	return rec, true, nil
}

// Scan calls fn with every record whose key's hash h satisfies
// lo <= h <= hi, in (hash, key) order. lo > hi is an empty range; a caller
// with a range that wraps around the ring scans it as two ranges. The key
// and the record's Value passed to fn are valid only until fn returns: fn
// must copy what it keeps, and must not modify them. Scan sees a consistent
// snapshot of the store taken when it starts; fn may call the store's other
// methods.
//
// Scan stops at, and returns, the first error fn returns. It returns
// ErrClosed after Close, the context's error if ctx is done (it looks every
// few hundred records), and an error wrapping ErrCorrupt if a stored key or
// record cannot be decoded.
func (s *Store) Scan(ctx context.Context, lo, hi uint32, fn func(key []byte, rec Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	return s.scan(ctx, lo, hi, fn)
}

// scan is Scan for a call that has entered.
func (s *Store) scan(ctx context.Context, lo, hi uint32, fn func(key []byte, rec Record) error) error {
	return s.scanFrom(ctx, lo, hi, hashBound(lo), fn)
}

// scanFrom is scan from the Pebble key lower (at or after lo's bound).
func (s *Store) scanFrom(ctx context.Context, lo, hi uint32, lower []byte, fn func(key []byte, rec Record) error) (err error) {
	if lo > hi {
		return nil
	}

	iopts := &pebble.IterOptions{LowerBound: lower}
	if hi < math.MaxUint32 {
		iopts.UpperBound = hashBound(hi + 1)
	}
	it, err := s.db.NewIterWithContext(ctx, iopts)
	if err != nil {
		return fmt.Errorf("store: scanning [%#08x, %#08x]: %w", lo, hi, damaged(err, s.dir))
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: scanning [%#08x, %#08x]: %w", lo, hi, damaged(cerr, s.dir))
		}
	}()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key, err := decodeKey(it.Key())
		if err != nil {
			return fmt.Errorf("store: scanning [%#08x, %#08x]: %w", lo, hi, err)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("store: scanning [%#08x, %#08x]: reading %q: %w", lo, hi, key, damaged(err, s.dir))
		}
		rec, err := decodeValue(v)
		if err != nil {
			return fmt.Errorf("store: scanning [%#08x, %#08x]: reading %q: %w", lo, hi, key, err)
		}
		if err := fn(key, rec); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("store: scanning [%#08x, %#08x]: %w", lo, hi, damaged(err, s.dir))
	}
	return nil
}

// Remove deletes key's record if it is still exactly expect (Compare
// returns 0), atomically against Puts and other Removes of key, and reports
// whether it did. It is for garbage collection: a client's delete is a Put
// of a tombstone. Unless Options.NoSync is set, a Remove that deletes
// returns only once the delete is synced to the write-ahead log.
//
// Remove returns ErrEmptyKey for an empty key, ErrClosed after Close, the
// context's error if ctx is done before the delete starts, an error
// wrapping ErrCorrupt if the stored record cannot be decoded, and the
// errors of Put for a store that is damaged, full or failed.
func (s *Store) Remove(ctx context.Context, key []byte, expect Record) (bool, error) {
	return s.removeIf(ctx, key, "removing", func(cur Record) bool { return Compare(cur, expect) == 0 })
}

// removeIf deletes key's record if want says so of it, atomically against
// Puts and other removals of key, and reports whether it did; doing names
// the operation in errors.
func (s *Store) removeIf(ctx context.Context, key []byte, doing string, want func(cur Record) bool) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(key) == 0 {
		return false, ErrEmptyKey
	}
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.exit()

	h := keyhash.Sum(key)
	mu := s.stripe(h)
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return false, err
	}
	pk := encodeKey(h, key)
	cur, found, err := s.get(pk)
	if err != nil {
		return false, fmt.Errorf("store: %s %q: %w", doing, key, err)
	}
	if !found || !want(cur) {
		return false, nil
	}
	if err := s.space.admit(len(pk)); err != nil {
		return false, fmt.Errorf("store: %s %q: %w", doing, key, err)
	}
	if err := s.guard(func() error { return s.db.Delete(pk, s.writeOpts) }); err != nil {
		return false, fmt.Errorf("store: %s %q: %w", doing, key, err)
	}
	s.slot(h).removed(Fingerprint(key, cur))
	s.keys.Add(-1)
	return true, nil
}

// Stats returns the store's size. It is cheap: it reads counters and does
// no I/O. After Close it returns the zero Stats.
func (s *Store) Stats() Stats {
	if s.enter() != nil {
		return Stats{}
	}
	defer s.exit()
	count, stalled := s.stall.stats()
	free, refused, low := s.space.stats()
	return Stats{
		Keys:          s.keys.Load(),
		DiskBytes:     s.db.Metrics().DiskSpaceUsage(),
		WriteStalls:   count,
		WriteStalled:  stalled,
		FreeBytes:     free,
		LowSpace:      low,
		WritesRefused: refused,
		DamagedFiles:  s.events.nDamaged.Load(),
	}
}

// Close waits for the calls in progress to return (a Scan included, so a
// Scan callback must not wait for Close), then closes the database. It is
// idempotent: later calls wait for the first to finish and return its
// result. After Close every method returns ErrClosed.
//
// Close of a store that failed (ErrFailed) neither waits for the calls in
// progress, which may be stuck in Pebble, nor closes the database, which
// Pebble cannot do cleanly after such an error: it returns the failure,
// and the process should exit, which releases the store's files.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closeDone
		return s.closeErr
	}
	s.closed = true
	s.mu.Unlock()
	s.stopWatching()

	if err := s.fate.failed(); err != nil {
		s.closeErr = err
		close(s.closeDone)
		return s.closeErr
	}
	s.ops.Wait()
	if err := s.guard(s.db.Close); err != nil {
		s.closeErr = fmt.Errorf("store: closing: %w", err)
	}
	s.logger.Info("store closed")
	close(s.closeDone)
	return s.closeErr
}

// stopWatching stops the watch of the free space and waits for it.
func (s *Store) stopWatching() {
	close(s.stopWatch)
	<-s.watchDone
}

// eventListener logs the Pebble events an operator must hear about
// (background errors, damaged files: see eventLog), looks at the free
// space again when Pebble met a full disk, and follows write stalls in
// stall, which Stats counts (they are logged at debug level: a burst of
// writes can cause hundreds). Flushes and compactions belong in metrics,
// not logs.
func eventListener(l *slog.Logger, stall *stalls, events *eventLog, sp *space) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			if errors.Is(err, syscall.ENOSPC) {
				sp.outOfSpace()
			}
			events.backgroundError(err)
		},
		DataCorruption: events.dataCorruption,
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			stall.begin()
			l.Debug("pebble: write stall began", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			stall.end()
			l.Debug("pebble: write stall ended")
		},
	}
}

// Created reports whether Open made a new database because the directory
// held none (a new node, or one whose disk was lost or wiped), rather than
// opening one that a previous run left, empty or not.
func (s *Store) Created() bool { return s.created }
