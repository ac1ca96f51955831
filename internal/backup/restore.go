package backup

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// Source is one archive to restore: a name for messages, and how to open
// it (a restore reads each archive twice: once whole to check it, then to
// write it).
type Source struct {
	Name string
	Open func() (io.ReadCloser, error)
}

// RestoreOptions configure a restore.
type RestoreOptions struct {
	// Config is the receiving cluster's configuration: each record goes to
	// the replicas of its key under it, whatever the shape of the cluster
	// the archive came from.
	Config *config.Config
	// Nodes reaches the nodes.
	Nodes Nodes
	// Prefix, when not empty, restores only the keys that start with it.
	Prefix []byte
	// AsOf, when not 0, leaves out the versions stamped after it
	// (microseconds): the archives' state as of that time.
	AsOf int64
	// Revert, with AsOf, also brings back the archived version of each key
	// that the cluster changed after AsOf (a mistake to undo), written
	// again with a timestamp newer than the cluster's; without it such a
	// key keeps the cluster's newer version, as every restore does.
	Revert bool
	// Parallel is how many batches are in flight; 0 means 8.
	Parallel int
	// BatchBytes bounds a batch's keys and values; 0 means 1 MiB (a
	// record larger than that goes alone).
	BatchBytes int
	// Progress, when set, is called after each batch, one call at a time.
	Progress func(RestoreProgress)
	// Now is the clock that stamps reverted versions; nil: time.Now.
	Now func() time.Time
}

// RestoreProgress is how far a restore is.
type RestoreProgress struct {
	// Records and Bytes are what was read of the archives so far, of
	// TotalRecords and TotalBytes in all.
	Records, Bytes, TotalRecords, TotalBytes uint64
	Elapsed                                  time.Duration
}

// RestoreStats is what a restore did.
type RestoreStats struct {
	// Archives were restored, in this order (oldest first).
	Archives []string
	// Records were read from the archives; Skipped of them were left out
	// (another prefix, or stamped after AsOf).
	Records, Skipped uint64
	// Written, Unchanged and Older count the replicas' answers: the
	// record was stored, it was there already, or the replica holds a
	// newer version (kept).
	Written, Unchanged, Older uint64
	// Reverted counts the keys brought back to their version as of AsOf
	// (Revert).
	Reverted uint64
	// Failed counts the records a replica did not take (down, refused);
	// Errors holds the first few reasons.
	Failed uint64
	Errors []error
}

// Chain checks that the archives, as Scan found them, can be restored
// together: each complete and sound, each incremental one's parent among
// them. It returns their order, oldest first.
func Chain(names []string, states []*archive.State) ([]int, error) {
	ids := map[string]int{}
	for i, s := range states {
		if !s.Complete {
			return nil, fmt.Errorf("%s is incomplete (an interrupted backup): resume it, or restore without it", names[i])
		}
		if j, dup := ids[s.Header.ID]; dup {
			return nil, fmt.Errorf("%s and %s are the same archive (%s)", names[j], names[i], s.Header.ID)
		}
		ids[s.Header.ID] = i
	}
	for i, s := range states {
		if s.Header.Parent != "" {
			if _, ok := ids[s.Header.Parent]; !ok {
				return nil, fmt.Errorf("%s is an incremental backup after archive %s, which is not given: restore it together with the archives it follows", names[i], s.Header.Parent)
			}
		}
	}
	order := make([]int, len(states))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(states[a].Header.AsOf, states[b].Header.AsOf) })
	return order, nil
}

// Restore checks every archive of sources whole (a damaged or incomplete
// one, or a chain with a missing link, fails before anything is written),
// then offers each record to every replica of its key, oldest archive
// first. Each replica keeps a record only if it wins over what it holds,
// so a restore never overwrites anything newer (but see Revert) and is
// safe to run again: after a failure (a node down), run it again.
func Restore(ctx context.Context, opts RestoreOptions, sources []Source) (RestoreStats, error) {
	var stats RestoreStats
	if len(sources) == 0 {
		return stats, errors.New("restore: no archive given")
	}
	if opts.Revert && opts.AsOf == 0 {
		return stats, errors.New("restore: Revert needs AsOf: the time whose versions to bring back")
	}
	names := make([]string, len(sources))
	states := make([]*archive.State, len(sources))
	var total RestoreProgress
	for i, src := range sources {
		names[i] = src.Name
		st, err := scanSource(src)
		if err != nil {
			return stats, err
		}
		states[i] = st
		total.TotalRecords += st.Summary.Records
		total.TotalBytes += st.Summary.Bytes
	}
	order, err := Chain(names, states)
	if err != nil {
		return stats, fmt.Errorf("restore: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &restorer{opts: opts, stats: &stats, progress: total, start: time.Now(), revert: map[string]archive.Entry{}, cancel: cancel}
	r.opts.Parallel = cmp.Or(r.opts.Parallel, 8)
	r.opts.BatchBytes = cmp.Or(r.opts.BatchBytes, 1<<20)
	if r.opts.Now == nil {
		r.opts.Now = time.Now
	}
	r.work = make(chan batch)
	var wg sync.WaitGroup
	for range r.opts.Parallel {
		wg.Go(func() {
			for b := range r.work {
				r.send(ctx, b)
			}
		})
	}
	for _, i := range order {
		stats.Archives = append(stats.Archives, names[i])
		if err := r.restoreOne(ctx, sources[i]); err != nil {
			close(r.work)
			wg.Wait()
			return stats, cmp.Or(r.fatal, err)
		}
	}
	close(r.work)
	wg.Wait()
	if r.fatal != nil {
		return stats, r.fatal
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if len(r.revert) > 0 {
		r.revertAll(ctx)
	}
	if stats.Failed > 0 {
		return stats, fmt.Errorf("restore: %d records were not taken by a replica (the first: %w); run the restore again once the nodes are back: it is safe to run twice",
			stats.Failed, errors.Join(stats.Errors...))
	}
	return stats, nil
}

// scanSource reads a source whole and returns its state; any damage is
// an error that names it.
func scanSource(src Source) (*archive.State, error) {
	f, err := src.Open()
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	st, err := archive.Scan(f)
	if err != nil {
		return nil, fmt.Errorf("restore: %s: %w (nothing was restored)", src.Name, err)
	}
	return st, nil
}

// batch is records bound for one node.
type batch struct {
	node    config.Node
	entries []archive.Entry
	bytes   int
}

// batches gathers records per node into batches of at most wire.MaxBatch
// records and about maxBytes of keys and values (a larger record goes
// alone).
type batches struct {
	pending  map[string]*batch
	maxBytes int
}

func newBatches(maxBytes int) *batches {
	return &batches{pending: map[string]*batch{}, maxBytes: maxBytes}
}

// add appends e to node nd's batch, and returns that batch once it is
// full (the next add starts another).
func (bs *batches) add(nd config.Node, e archive.Entry) *batch {
	b := bs.pending[nd.ID]
	if b == nil {
		b = &batch{node: nd}
		bs.pending[nd.ID] = b
	}
	b.entries = append(b.entries, e)
	b.bytes += len(e.Key) + len(e.Record.Value)
	if len(b.entries) >= wire.MaxBatch || b.bytes >= bs.maxBytes {
		delete(bs.pending, nd.ID)
		return b
	}
	return nil
}

// rest returns the batches that are not full, and forgets them.
func (bs *batches) rest() []*batch {
	out := make([]*batch, 0, len(bs.pending))
	for _, b := range bs.pending {
		out = append(out, b)
	}
	clear(bs.pending)
	return out
}

// restorer is one run of Restore.
type restorer struct {
	opts  RestoreOptions
	work  chan batch
	start time.Time

	cancel context.CancelFunc // stops the restore (fatal)

	mu    sync.Mutex // guards what follows
	stats *RestoreStats
	// fatal is set when a node refused the token: no batch will pass.
	fatal    error
	progress RestoreProgress
	// revert holds, per key, the newest archived version (as of AsOf)
	// that a replica found older than one it holds stamped after AsOf.
	revert map[string]archive.Entry
	// newest is, per key of revert, the newest timestamp a replica holds.
	newest map[string]int64
}

// restoreOne writes the records of one archive, in batches per node.
func (r *restorer) restoreOne(ctx context.Context, src Source) error {
	f, err := src.Open()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	ar, err := archive.NewReader(f)
	if err != nil {
		return fmt.Errorf("restore: %s: %w", src.Name, err)
	}
	bs := newBatches(r.opts.BatchBytes)
	send := func(b *batch) error {
		select {
		case r.work <- *b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var replicas []config.Node
	for {
		fr, err := ar.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// Scan read it whole before: the file changed since.
			return fmt.Errorf("restore: %s: %w", src.Name, err)
		}
		var read, skipped, readBytes uint64
		for _, e := range fr.Entries {
			read++
			readBytes += uint64(len(e.Key) + len(e.Record.Value))
			if !bytes.HasPrefix(e.Key, r.opts.Prefix) || r.opts.AsOf != 0 && e.Record.Timestamp > r.opts.AsOf {
				skipped++
				continue
			}
			e = archive.Entry{Key: bytes.Clone(e.Key), Record: e.Record.Clone()}
			replicas = r.opts.Config.Replicas(replicas[:0], e.Key)
			for _, nd := range replicas {
				if full := bs.add(nd, e); full != nil {
					if err := send(full); err != nil {
						return err
					}
				}
			}
		}
		r.mu.Lock()
		r.stats.Records += read
		r.stats.Skipped += skipped
		r.progress.Records += read
		r.progress.Bytes += readBytes
		r.mu.Unlock()
	}
	for _, b := range bs.rest() {
		if err := send(b); err != nil {
			return err
		}
	}
	return nil
}

// send writes a batch to its node and counts the answers.
func (r *restorer) send(ctx context.Context, b batch) {
	results, errs, err := r.opts.Nodes.Put(ctx, b.node, b.entries)
	r.mu.Lock()
	defer r.mu.Unlock()
	fail := func(n int, err error) {
		r.stats.Failed += uint64(n)
		if len(r.stats.Errors) < 3 {
			r.stats.Errors = append(r.stats.Errors, err)
		}
	}
	// A refused token fails the whole restore at once: no batch will pass
	// (a node decides each item of a batch on its own, so the refusal may
	// come per record).
	refuse := func(err error) {
		if refused(err) && r.fatal == nil {
			r.fatal = fmt.Errorf("restore: %w: a restore needs a token of the admin role (-token, $TAKO_TOKEN)", err)
			r.cancel()
		}
	}
	if err != nil {
		fail(len(b.entries), err)
		refuse(err)
	} else {
		for k, res := range results {
			switch {
			case errs[k] != nil:
				fail(1, errs[k])
				refuse(errs[k])
			case res.Outcome == record.Written:
				r.stats.Written++
			case res.Outcome == record.Unchanged:
				r.stats.Unchanged++
			default:
				r.stats.Older++
				e := b.entries[k]
				if r.opts.Revert && res.Current.Timestamp > r.opts.AsOf {
					key := string(e.Key)
					if cur, ok := r.revert[key]; !ok || record.Compare(e.Record, cur.Record) > 0 {
						r.revert[key] = e
					}
					if r.newest == nil {
						r.newest = map[string]int64{}
					}
					r.newest[key] = max(r.newest[key], res.Current.Timestamp)
				}
			}
		}
	}
	if r.opts.Progress != nil {
		p := r.progress
		p.Elapsed = time.Since(r.start)
		r.opts.Progress(p)
	}
}

// revertAll writes each key of r.revert again, its archived version
// stamped after every version its replicas hold, to every replica.
func (r *restorer) revertAll(ctx context.Context) {
	keys := make([]string, 0, len(r.revert))
	for k := range r.revert {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	now := r.opts.Now().UnixMicro()
	bs := newBatches(r.opts.BatchBytes)
	var ready []*batch
	var replicas []config.Node
	for _, k := range keys {
		e := r.revert[k]
		e.Record.Timestamp = max(now, r.newest[k]+1)
		replicas = r.opts.Config.Replicas(replicas[:0], e.Key)
		for _, nd := range replicas {
			if full := bs.add(nd, e); full != nil {
				ready = append(ready, full)
			}
		}
	}
	ready = append(ready, bs.rest()...)
	r.stats.Reverted = uint64(len(keys))
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.opts.Parallel)
	for _, b := range ready {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r.send(ctx, *b)
		})
	}
	wg.Wait()
}
