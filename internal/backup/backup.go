package backup

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// Options configure a backup.
type Options struct {
	// Config is the cluster's configuration: its active deployment's
	// ring gives the ranges, and their replicas.
	Config *config.Config
	// Nodes reaches the nodes.
	Nodes Nodes
	// Parallel is how many ranges are copied at once; 0 means 4.
	Parallel int
	// PartBytes is about how many bytes one answer of a stream carries; 0
	// means 4 MiB.
	PartBytes int
	// Attempts is how many times a range's copy goes round its replicas
	// when too few answer before the backup fails; 0 means 5, a second
	// apart and more.
	Attempts int
	// Progress, when set, is called after each part written, one call at
	// a time.
	Progress func(Progress)
	// Logger says when a replica fails and another takes over; nil
	// discards.
	Logger *slog.Logger
}

// Progress is how far a backup is.
type Progress struct {
	// Ranges and RangesDone count the archive's ranges.
	Ranges, RangesDone int
	// Records and Bytes are what the archive holds so far (the bytes of
	// keys and values).
	Records, Bytes uint64
	// Read is the bytes of keys and values read so far (an incremental
	// backup keeps only some of them), and Estimate about how many the
	// whole backup reads (what the ranges held when it started, per the
	// nodes' estimates); 0 when unknown.
	Read, Estimate uint64
	// Elapsed is the time since the backup started.
	Elapsed time.Duration
}

// NewHeader returns the header of a backup of cfg taken now: a full one,
// or, when parent is not nil, an incremental one after parent, holding
// the versions stamped after parent's point less overlap. The overlap
// covers the clocks: a write acknowledged after the parent started may be
// stamped by a node whose clock is behind the machine that took it; the
// cluster tolerates clocks apart by up to max_timestamp_ahead, the
// default overlap (DefaultOverlap).
func NewHeader(cfg *config.Config, now time.Time, parent *archive.Header, overlap time.Duration) archive.Header {
	var id [8]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	h := archive.Header{ID: hex.EncodeToString(id[:]), Created: now.UTC(), AsOf: now.UnixMicro(),
		Source: "deployment " + cfg.Active.Name, Ranges: ranges(plan(cfg))}
	if parent != nil {
		h.Since, h.Parent = max(parent.AsOf-overlap.Microseconds(), 1), parent.ID
	}
	return h
}

// DefaultOverlap is how far before its parent's point an incremental
// backup of cfg reaches: the active deployment's max_timestamp_ahead.
func DefaultOverlap(cfg *config.Config) time.Duration { return cfg.Active.MaxTimestampAhead }

// Run copies the cluster into w, whose header (NewHeader) says what to
// copy, range by range, and writes its end. w may resume an interrupted
// backup (archive.AppendWriter): ranges done are skipped, the others go on
// from their cursors. The ranges must be those of the cluster's layout
// now: a backup does not resume across a change of it.
func Run(ctx context.Context, opts Options, w *archive.Writer) (archive.Summary, error) {
	units := plan(opts.Config)
	h := w.Header()
	if !slices.Equal(ranges(units), h.Ranges) {
		return archive.Summary{}, errors.New("backup: the cluster's layout is not the one the archive was started on (its ranges differ): start a new backup")
	}
	b := &backup{opts: opts, units: units, w: w, start: time.Now(), failedNodes: map[string]int{}}
	b.opts.Parallel = cmp.Or(b.opts.Parallel, 4)
	b.opts.PartBytes = cmp.Or(b.opts.PartBytes, 4<<20)
	b.opts.Attempts = cmp.Or(b.opts.Attempts, 5)
	if b.opts.Logger == nil {
		b.opts.Logger = slog.New(slog.DiscardHandler)
	}
	b.since = h.Since
	var todo []int
	for i := range units {
		if !w.Done(i) {
			todo = append(todo, i)
		} else {
			b.rangesDone++
		}
	}
	b.estimate(ctx, todo)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, len(todo))
	var wg sync.WaitGroup
	for range min(b.opts.Parallel, max(len(todo), 1)) {
		wg.Go(func() {
			for i := range next {
				if err := b.copyUnit(ctx, i); err != nil {
					errs <- err
					cancel()
				}
			}
		})
	}
feed:
	for _, i := range todo {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		return w.Summary(), err
	}
	if err := ctx.Err(); err != nil {
		return w.Summary(), err
	}
	return w.End(time.Now())
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		if !errors.Is(err, context.Canceled) || len(out) == 0 {
			out = append(out, err)
		}
	}
	return out
}

// backup is one run of Run.
type backup struct {
	opts  Options
	units []unit
	start time.Time
	since int64 // keep only versions stamped after it (an incremental, Header.Since); 0: all

	mu         sync.Mutex // guards w and what follows
	w          *archive.Writer
	rangesDone int
	// failedNodes counts each node's failures in this backup: the ranges
	// ask the others first.
	failedNodes map[string]int
	total       uint64 // the estimate of the bytes to read
	read        uint64 // the bytes read
}

// estimate asks one replica of each unit to do how much the units hold,
// for Progress; a replica that does not answer leaves its unit out.
func (b *backup) estimate(ctx context.Context, todo []int) {
	if b.opts.Progress == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, i := range todo {
		u := b.units[i]
		after := bytes.Clone(b.w.Cursor(i))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, nd := range u.replicas {
				p, err := b.opts.Nodes.Stream(ctx, nd, u.r, after, 0)
				if err == nil {
					mu.Lock()
					b.total += p.RemainingBytes
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
}

// slot is one of the replicas a unit is streamed from: which, its cursor,
// the entries it sent that are not merged yet, and whether it is done.
type slot struct {
	replica int // index into the unit's replicas
	after   []byte
	buf     []archive.Entry
	done    bool
}

// copyUnit streams unit i from unit.need of its replicas, merges them and
// writes the merged records to the archive, then the range's end.
func (b *backup) copyUnit(ctx context.Context, i int) error {
	u := b.units[i]
	b.mu.Lock()
	after := bytes.Clone(b.w.Cursor(i))
	b.mu.Unlock()
	if len(u.replicas) < u.need {
		return fmt.Errorf("backup: range %d-%d has %d replicas, fewer than the %d it needs", u.r.Lo, u.r.Hi, len(u.replicas), u.need)
	}
	// The replicas, starting at one that depends on the range, so that
	// the units spread over the nodes; those that failed this backup last.
	order := make([]int, len(u.replicas))
	for k := range order {
		order[k] = (k + i) % len(u.replicas)
	}
	b.mu.Lock()
	slices.SortStableFunc(order, func(x, y int) int {
		return cmp.Compare(b.failedNodes[u.replicas[x].ID], b.failedNodes[u.replicas[y].ID])
	})
	b.mu.Unlock()
	slots := make([]*slot, u.need)
	for k := range slots {
		slots[k] = &slot{replica: order[k], after: after}
	}
	failed := map[int]error{} // replicas that failed this attempt
	attempt := 1
	for {
		// Each slot that has nothing left to merge and is not done gets
		// its next part.
		for _, s := range slots {
			for !s.done && len(s.buf) == 0 {
				p, err := b.opts.Nodes.Stream(ctx, u.replicas[s.replica], u.r, s.after, b.opts.PartBytes)
				if err == nil {
					s.buf, s.done = p.Entries, !p.More
					if len(p.Entries) > 0 {
						s.after = bytes.Clone(p.Entries[len(p.Entries)-1].Key)
					}
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if refused(err) {
					return fmt.Errorf("backup: %w: a backup needs a token of the admin role (-token, $TAKO_TOKEN)", err)
				}
				failed[s.replica] = err
				if !b.replace(u, s, slots, order, failed) {
					if attempt >= b.opts.Attempts {
						return fmt.Errorf("backup: range %d-%d: %d of its replicas must answer for a copy that holds every acknowledged write, and too few did after %d attempts: %w",
							u.r.Lo, u.r.Hi, u.need, attempt, errors.Join(mapValues(failed)...))
					}
					b.opts.Logger.Warn("backup: too few replicas of a range answer; trying them again in a moment",
						"range", fmt.Sprintf("%d-%d", u.r.Lo, u.r.Hi), "attempt", attempt, "err", err)
					select {
					case <-time.After(time.Duration(attempt) * time.Second):
					case <-ctx.Done():
						return ctx.Err()
					}
					attempt++
					clear(failed)
				}
			}
		}
		merged := mergeParts(slots)
		if len(merged) == 0 && allDone(slots) {
			break
		}
		if err := b.write(i, merged); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.w.RangeDone(i); err != nil {
		return err
	}
	b.rangesDone++
	b.report()
	return nil
}

// replace moves slot s to a replica of u that no slot uses and that has
// not failed this attempt, from s's cursor; false when there is none.
func (b *backup) replace(u unit, s *slot, slots []*slot, order []int, failed map[int]error) bool {
	for _, r := range order {
		if _, bad := failed[r]; bad || slices.ContainsFunc(slots, func(o *slot) bool { return o.replica == r }) {
			continue
		}
		id := u.replicas[s.replica].ID
		b.mu.Lock()
		b.failedNodes[id]++
		first := b.failedNodes[id] == 1
		b.mu.Unlock()
		if first {
			b.opts.Logger.Warn("backup: a replica failed; another one goes on from the same key, and the other ranges ask it last",
				"range", fmt.Sprintf("%d-%d", u.r.Lo, u.r.Hi), "failed", id, "instead", u.replicas[r].ID, "err", failed[s.replica])
		}
		s.replica = r
		return true
	}
	// Every other replica is in use or failed: s stays on its replica
	// (which failed) until the next attempt clears the failures.
	return false
}

// refused reports whether err is a node's refusal of the token: no other
// replica would take it either.
func refused(err error) bool {
	return errors.Is(err, wire.ErrUnauthorized) || errors.Is(err, wire.ErrForbidden)
}

func mapValues(m map[int]error) []error {
	out := make([]error, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

func allDone(slots []*slot) bool {
	for _, s := range slots {
		if !s.done || len(s.buf) > 0 {
			return false
		}
	}
	return true
}

// compareKeys orders keys as a range's stream does: by hash, then bytes.
func compareKeys(a, b []byte) int {
	return cmp.Or(cmp.Compare(keyhash.Sum(a), keyhash.Sum(b)), bytes.Compare(a, b))
}

// mergeParts takes from the slots' buffers every entry up to the frontier
// (the smallest last key buffered by a slot that is not done: beyond it
// that slot may still send keys), merged in order, the newest version of
// each key kept.
func mergeParts(slots []*slot) []archive.Entry {
	var frontier []byte
	for _, s := range slots {
		if !s.done && len(s.buf) > 0 {
			last := s.buf[len(s.buf)-1].Key
			if frontier == nil || compareKeys(last, frontier) < 0 {
				frontier = last
			}
		}
	}
	var out []archive.Entry
	for {
		// The smallest head among the slots, within the frontier.
		var head []byte
		for _, s := range slots {
			if len(s.buf) > 0 && (frontier == nil || compareKeys(s.buf[0].Key, frontier) <= 0) {
				if head == nil || compareKeys(s.buf[0].Key, head) < 0 {
					head = s.buf[0].Key
				}
			}
		}
		if head == nil {
			return out
		}
		var e archive.Entry
		for _, s := range slots {
			if len(s.buf) > 0 && bytes.Equal(s.buf[0].Key, head) {
				if e.Key == nil || record.Compare(s.buf[0].Record, e.Record) > 0 {
					e = s.buf[0]
				}
				s.buf = s.buf[1:]
			}
		}
		out = append(out, e)
	}
}

// write puts merged entries of unit i into the archive (those stamped
// after the incremental's point only) and reports the progress.
func (b *backup) write(i int, merged []archive.Entry) error {
	var read uint64
	for _, e := range merged {
		read += uint64(len(e.Key) + len(e.Record.Value))
	}
	if b.since > 0 {
		merged = slices.DeleteFunc(merged, func(e archive.Entry) bool { return e.Record.Timestamp <= b.since })
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.read += read
	if len(merged) > 0 {
		if err := b.w.Records(i, merged); err != nil {
			return err
		}
	}
	b.report()
	return nil
}

// report calls Progress; b.mu is held.
func (b *backup) report() {
	if b.opts.Progress == nil {
		return
	}
	sum := b.w.Summary()
	b.opts.Progress(Progress{Ranges: len(b.units), RangesDone: b.rangesDone, Records: sum.Records, Bytes: sum.Bytes,
		Read: b.read, Estimate: b.total, Elapsed: time.Since(b.start)})
}
