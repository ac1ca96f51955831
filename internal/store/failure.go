package store

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/takodb/tako/internal/record"
)

// What the disk can do to a store, and what the store does about it.
//
// A failed write or sync of Pebble's write-ahead log is fatal to Pebble:
// the commit pipeline's log writer keeps the error and fails every later
// sync, and Pebble calls its logger's Fatalf, which must not return (if it
// did, the write would be reported as successful). The batch is already in
// the memtable by then and visible to readers, though it is not durable. A
// failed write of the MANIFEST, or of a new write-ahead log when the
// memtable rotates, is as fatal. So the store fails as a whole: from the
// first such error on, every method returns an error wrapping ErrFailed
// without touching Pebble, reads included (they could return a write that
// was never synced), and Options.OnFatal is called once, so that the
// process can stop and restart from what was synced. This is the lesson
// PostgreSQL learned about fsync: after a failed sync, what the kernel
// holds is no longer known to be on the disk, and retrying the sync can
// report success for data that is lost.
//
// Flushes and compactions are Pebble's own goroutines: their errors (disk
// full, a damaged table) go to the event listener and the work is tried
// again later; the store logs them, at most once every backgroundErrorEvery.
//
// A full disk would make the write-ahead log fail, so the store keeps a
// reserve of free space on its file system (Options.MinFreeBytes, see
// space.go) and refuses writes with ErrNoSpace before it is used up,
// leaving the reserve to flushes and compactions. Reads go on, and writes
// are accepted again once space is back.
//
// Damaged files (a checksum that does not match) are never read as data:
// Pebble returns an error, which the store wraps in a *DamageError naming
// the file. Open reads every record, so a store with a damaged table or
// blob file does not open; a damaged write-ahead log does not open either
// (Pebble does not say which file, so the error names the directory).

var (
	// ErrFailed is wrapped by the errors of every method once the store
	// met an error that Pebble cannot survive (a write or sync of its
	// write-ahead log or MANIFEST failed). The store holds writes that may
	// not be on the disk, so it serves nothing more: the process should
	// exit; a restart recovers every write that was acknowledged.
	ErrFailed = errors.New("store: failed")
	// ErrNoSpace is wrapped by the errors of Put, PutMany, Remove and Purge
	// when the write would leave less free space on the store's file system
	// than Options.MinFreeBytes. Nothing was written; reads go on, and
	// writes are accepted again once space is freed.
	ErrNoSpace = fmt.Errorf("store: %w", record.ErrInsufficientStorage)
	// ErrDamaged is matched by a *DamageError: a file of the store failed
	// its checksum, or could not be decoded. It is returned by Open, and by
	// the reads (and the writes, which read first) that meet the file.
	ErrDamaged = errors.New("store: damaged")
)

// DamageError says which file of the store is damaged. errors.Is(err,
// ErrDamaged) holds for it; it wraps Pebble's error.
type DamageError struct {
	// Path is the damaged file. When Pebble did not say which file (a
	// write-ahead log or MANIFEST that failed its checksum at Open), it is
	// the store's directory.
	Path string
	// Reason is what Pebble found, on one line.
	Reason string
	err    error
}

// Error returns "store: damaged: PATH: REASON".
func (e *DamageError) Error() string {
	return "store: damaged: " + e.Path + ": " + e.Reason
}

// Is reports whether target is ErrDamaged.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

// Unwrap returns Pebble's error.
func (e *DamageError) Unwrap() error { return e.err }

// damaged returns err as a *DamageError when Pebble says it is data
// corruption, naming the file Pebble names (or dir); else err.
func damaged(err error, dir string) error {
	if err == nil || !pebble.IsCorruptionError(err) {
		return err
	}
	var de *DamageError
	if errors.As(err, &de) {
		return err
	}
	path := dir
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil && info.Path != "" {
		path = info.Path
	}
	return &DamageError{Path: path, Reason: oneLine(err.Error()), err: err}
}

// oneLine returns the first line of s: Pebble's errors can carry details,
// stack traces included, on further lines.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first)
}

// fate is whether the store failed, and what it does when it does.
type fate struct {
	logger  *slog.Logger
	onFatal func(error)
	once    sync.Once
	err     atomic.Pointer[error] // set once, by fail
}

// fail makes the store fail with cause, once: later failures are
// consequences of the first.
func (f *fate) fail(cause error) {
	f.once.Do(func() {
		err := fmt.Errorf("%w: %w", ErrFailed, cause)
		f.err.Store(&err)
		if f.onFatal != nil {
			go f.onFatal(err)
			return
		}
		f.logger.Error("store failed: it serves nothing more; restart the process, which recovers every acknowledged write", "err", err)
	})
}

// failed returns the store's failure, or nil.
func (f *fate) failed() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fatalPanic is what Fatalf panics with in a guarded call.
type fatalPanic struct{ err error }

// guard calls fn, a call into Pebble that may meet an error Pebble cannot
// survive, and returns its error; if Pebble panics, or calls
// pebbleLogger.Fatalf, in fn's goroutine, the store fails and guard
// returns its failure instead of letting the panic kill the process.
func (f *fate) guard(fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if _, ok := r.(fatalPanic); !ok {
			f.fail(fmt.Errorf("pebble panicked: %v", r))
		}
		err = f.failed()
	}()
	return callGuarded(fn)
}

// guard is fate.guard for the store's calls into Pebble.
func (s *Store) guard(fn func() error) error { return s.fate.guard(fn) }

// callGuarded calls f. Fatalf looks for its frame on the stack to tell a
// guarded call from one of Pebble's own goroutines.
//
//go:noinline
func callGuarded(f func() error) error { return f() }

// guardedName is callGuarded's name as the runtime reports it.
var guardedName = runtime.FuncForPC(reflect.ValueOf(callGuarded).Pointer()).Name()

// maxGuardDepth bounds the frames guarded looks at.
const maxGuardDepth = 256

// guarded reports whether its caller runs under guard.
func guarded() bool {
	pcs := make([]uintptr, maxGuardDepth)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		fr, more := frames.Next()
		if fr.Function == guardedName {
			return true
		}
		if !more {
			return false
		}
	}
}

// pebbleLogger passes Pebble's messages to a slog.Logger, and its fatal
// errors to the store's fate.
type pebbleLogger struct {
	l    *slog.Logger
	fate *fate
}

// Infof logs at Info.
func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(pebbleMessage(format, args...))
}

// Errorf logs at Error.
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(pebbleMessage(format, args...))
}

// Fatalf is called by Pebble when it cannot go on, and must not return:
// the store fails, and Fatalf panics into the guard of the call that met
// the error. In a goroutine of Pebble's own (a flush, a compaction), where
// a panic would kill the process with a stack trace, it parks the
// goroutine for good instead: the store serves nothing more, and
// Options.OnFatal stops the process.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	err := errors.New(pebbleMessage(format, args...))
	p.fate.fail(err)
	if guarded() {
		panic(fatalPanic{err})
	}
	select {}
}

// pebbleMessage formats a message of Pebble's on one line, prefixed with
// "pebble: " once.
func pebbleMessage(format string, args ...any) string {
	msg := oneLine(fmt.Sprintf(format, args...))
	if !strings.HasPrefix(msg, "pebble") {
		msg = "pebble: " + msg
	}
	return msg
}

// backgroundErrorEvery is how often at most the store logs Pebble's
// background errors: a flush that meets a full disk is retried at once,
// again and again.
const backgroundErrorEvery = 10 * time.Second

// eventLog logs the Pebble events an operator must hear about, without
// flooding the log: background errors at most once every
// backgroundErrorEvery (with the count), each damaged file once.
type eventLog struct {
	l   *slog.Logger
	dir string

	mu       sync.Mutex // guards the fields below
	lastBG   time.Time
	bgCount  int
	damaged  map[string]bool
	nDamaged atomic.Int64
}

func (e *eventLog) backgroundError(err error) {
	e.mu.Lock()
	e.bgCount++
	now := time.Now()
	if now.Sub(e.lastBG) < backgroundErrorEvery {
		e.mu.Unlock()
		return
	}
	count := e.bgCount
	e.bgCount, e.lastBG = 0, now
	e.mu.Unlock()
	e.l.Error("pebble: background error (a flush or compaction failed; it is tried again)", "err", oneLine(err.Error()), "errors", count, "since", backgroundErrorEvery)
}

func (e *eventLog) dataCorruption(info pebble.DataCorruptionInfo) {
	e.mu.Lock()
	seen := e.damaged[info.Path]
	if e.damaged == nil {
		e.damaged = map[string]bool{}
	}
	e.damaged[info.Path] = true
	e.mu.Unlock()
	if seen {
		return
	}
	e.nDamaged.Add(1)
	reason := ""
	if info.Details != nil {
		reason = oneLine(info.Details.Error())
	}
	e.l.Error("store: damaged file: reads of its records fail on this node (never wrong bytes), the other replicas answer for them; stop the node, move its store directory aside and start it again: with an empty store it refills all of its ranges from the other replicas",
		"file", info.Path, "reason", reason, "dir", e.dir)
}
