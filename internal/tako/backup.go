package tako

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/backup"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/tlsconf"
	"github.com/takodb/tako/internal/wire"
)

// clusterFlags are how backup and restore find the cluster: its
// configuration from a file (-cfg), or from the coordinator that -s names.
type clusterFlags struct {
	cfgFile string
}

func (c *clusterFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&c.cfgFile, "cfg", "", "the cluster's configuration `FILE`, instead of asking the coordinator of -s for it")
}

// cluster returns the cluster's configuration and WireNodes that reach its
// nodes with the runner's token (it needs the admin role) and the
// configuration's TLS client certificate, if it has a tls section.
func (c *clusterFlags) cluster(ctx context.Context, r *runner) (*config.Config, *backup.WireNodes, error) {
	var cfg *config.Config
	if c.cfgFile != "" {
		var err error
		if cfg, err = config.Load(c.cfgFile); err != nil {
			return nil, nil, &codedError{code: exitError, err: fmt.Errorf("-cfg: %w", err)}
		}
	} else {
		var err error
		if cfg, err = r.fetchConfig(ctx); err != nil {
			return nil, nil, err
		}
	}
	opts := wire.DialOptions{MaxFrameSize: wire.FrameSizeFor(cfg.LargestMaxValueSize()), Token: r.token}
	if cfg.TLS != nil {
		cert, key := cfg.TLS.For("client")
		t, err := tlsconf.Load(cfg.TLS.CA, cert, key)
		if err != nil {
			return nil, nil, &codedError{code: exitError, err: fmt.Errorf("the configuration's tls section: %w", err)}
		}
		opts.TLS = t.ClientConfig()
	}
	return cfg, backup.NewWireNodes(opts), nil
}

// fetchConfig asks the coordinator of -s for the cluster's configuration.
func (r *runner) fetchConfig(ctx context.Context) (*config.Config, error) {
	base, err := r.baseURL()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(base) // baseURL checked it
	opts := client.Options{Token: r.token}
	if u.Scheme == "https" {
		t, err := tlsconf.CAClientConfig(r.ca)
		if err != nil {
			return nil, &codedError{code: exitError, err: fmt.Errorf("-ca: %w", err)}
		}
		opts.CoordinatorTLS = t
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c, err := client.Dial(ctx, []string{u.Host}, opts)
	if err != nil {
		return nil, fmt.Errorf("the configuration from the coordinator at %s (-s; or give the file with -cfg): %w", u.Host, err)
	}
	defer c.Close()
	return c.Config(), nil
}

// progressLine prints progress on stderr: on a terminal one line rewritten
// in place, otherwise a line every 10 seconds.
type progressLine struct {
	w        io.Writer
	terminal bool
	last     time.Time
	printed  bool
}

func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w, last: time.Now()} // the first line after 10 s, or 200 ms on a terminal
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

// show prints line, unless one was printed too recently.
func (p *progressLine) show(line string) {
	now := time.Now()
	switch {
	case p.terminal && now.Sub(p.last) >= 200*time.Millisecond:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.printed = true
	case !p.terminal && now.Sub(p.last) >= 10*time.Second:
		fmt.Fprintln(p.w, line)
	default:
		return
	}
	p.last = now
}

// done ends the line in place on a terminal.
func (p *progressLine) done() {
	if p.terminal && p.printed {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// rate is bytes per second, in MiB/s.
func rate(bytes uint64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB/s", float64(bytes)/d.Seconds()/(1<<20))
}

func runBackup(ctx context.Context, r *runner, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return runBackupVerify(r, args[1:])
	}
	if len(args) > 0 && args[0] == "ls" {
		return runBackupLs(r, args[1:])
	}
	var cf clusterFlags
	var since string
	var resume bool
	var parallel int
	var overlap time.Duration
	fs := r.commandFlags("backup", "FILE", `
Copies the whole cluster, while it serves, into the archive FILE: range by
range, each range streamed from as many of its replicas as meet every write
quorum and merged, the newest version of each key kept, tombstones included,
compressed, a checksum on every part. The archive holds every write
acknowledged before the backup started. A node that goes down mid-way is
replaced by another replica of its ranges; a backup that stops (Ctrl-C, a
crash) goes on where it stopped with -resume. The cluster's configuration
comes from the coordinator of -s, or from -cfg FILE; the token needs the
admin role.

  tako backup -since PARENT FILE   an incremental backup: only what changed
                                   after the archive PARENT (or the last of
                                   its chain) was taken
  tako backup verify FILE...       checks archives without a cluster
  tako backup ls FILE...           says what archives hold

Restore with tako restore. Exits 2 on any error.

Example:
  tako -s localhost:4700 backup monday.tako
  tako -s localhost:4700 backup -since monday.tako tuesday.tako
  tako backup verify monday.tako tuesday.tako`)
	cf.register(fs)
	fs.StringVar(&since, "since", "", "take an incremental backup after the archive `PARENT`")
	fs.BoolVar(&resume, "resume", false, "go on with the interrupted backup in FILE")
	fs.IntVar(&parallel, "parallel", 4, "how many ranges to copy at once")
	fs.DurationVar(&overlap, "overlap", -1, "with -since: how far before PARENT's point to reach back, for the clocks' differences (default: the deployment's max_timestamp_ahead)")
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	file := pos[0]
	var parent *archive.Header
	if since != "" {
		st, err := scanFile(since)
		if err != nil {
			return err
		}
		if !st.Complete {
			return &codedError{code: exitError, err: fmt.Errorf("-since %s: an incomplete archive cannot be a parent: resume it first", since)}
		}
		parent = &st.Header
	}
	cfg, nodes, err := cf.cluster(ctx, r)
	if err != nil {
		return err
	}
	defer nodes.Close()

	var f *os.File
	var w *archive.Writer
	if resume {
		f, w, err = resumeArchive(file)
	} else {
		f, err = os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			return &codedError{code: exitError, err: fmt.Errorf("%s exists: give another file, or -resume to go on with an interrupted backup", file)}
		}
		if err == nil {
			if overlap < 0 {
				overlap = backup.DefaultOverlap(cfg)
			}
			w, err = archive.NewWriter(f, backup.NewHeader(cfg, time.Now(), parent, overlap))
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return &codedError{code: exitError, err: err}
	}
	defer f.Close()

	progress := newProgressLine(r.stderr)
	started := time.Now()
	logger := slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sum, err := backup.Run(ctx, backup.Options{Config: cfg, Nodes: nodes, Parallel: parallel, Logger: logger, Progress: func(p backup.Progress) {
		line := fmt.Sprintf("backup: %d of %d ranges, %s read", p.RangesDone, p.Ranges, humanBytes(int64(p.Read)))
		if p.Estimate > 0 && p.Read > 0 {
			left := time.Duration(float64(p.Elapsed) * (float64(p.Estimate)/float64(p.Read) - 1))
			line += fmt.Sprintf(" of ~%s (%.0f%%), %s, about %s left", humanBytes(int64(p.Estimate)),
				math.Min(100, 100*float64(p.Read)/float64(p.Estimate)), rate(p.Read, p.Elapsed), humanDuration(max(left, 0)))
		}
		progress.show(line + fmt.Sprintf(", %d records kept", p.Records))
	}}, w)
	progress.done()
	if err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("%w (what is copied so far stays in %s: go on with tako backup -resume %s)", err, file, file)}
	}
	if err := f.Sync(); err != nil {
		return &codedError{code: exitError, err: fmt.Errorf("%s: %w", file, err)}
	}
	h := w.Header()
	took := time.Since(started)
	kind := "full"
	if h.Parent != "" {
		kind = "incremental after " + h.Parent
	}
	fmt.Fprintf(r.stdout, "%s: archive %s (%s), as of %s: %d records (%d tombstones), %s of keys and values in %s of archive, in %s (%s)\n",
		file, h.ID, kind, formatTime(h.AsOf), sum.Records, sum.Tombstones, humanBytes(int64(sum.Bytes)), humanBytes(w.Offset()),
		took.Round(time.Millisecond), rate(sum.Bytes, took))
	return nil
}

// resumeArchive opens the interrupted archive file for appending, cut
// after its last whole frame.
func resumeArchive(file string) (*os.File, *archive.Writer, error) {
	st, err := scanFile(file)
	var ce *archive.CorruptError
	switch {
	case err == nil && st.Complete:
		return nil, nil, fmt.Errorf("%s is complete: nothing to resume", file)
	case err != nil && !errors.Is(err, archive.ErrIncomplete) && !(errors.As(err, &ce) && ce.Truncated):
		return nil, nil, fmt.Errorf("%s cannot be resumed: %w", file, err)
	case st == nil:
		return nil, nil, err
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := f.Truncate(st.Good); err != nil {
		f.Close()
		return nil, nil, err
	}
	if _, err := f.Seek(st.Good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	w, err := archive.AppendWriter(f, st)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, w, nil
}

// scanFile scans the archive file whole.
func scanFile(file string) (*archive.State, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, &codedError{code: exitError, err: err}
	}
	defer f.Close()
	st, err := archive.Scan(f)
	if err != nil {
		return st, fmt.Errorf("%s: %w", file, err)
	}
	return st, nil
}

func runBackupVerify(r *runner, args []string) error {
	fs := r.commandFlags("backup verify", "FILE...", `
Reads each archive whole, without a cluster, and checks it: every part's
checksum, that its records decode and are in order, that it is complete.
Prints one line per archive; exits 1 when one is damaged or incomplete,
saying where (the byte offset) and why.

Example:
  tako backup verify monday.tako tuesday.tako`)
	files, err := r.parseCommand(fs, args, 1, math.MaxInt)
	if err != nil {
		return err
	}
	bad := 0
	for _, file := range files {
		st, err := scanFile(file)
		if err != nil {
			fmt.Fprintf(r.stdout, "%s: BAD: %v\n", file, err)
			bad++
			continue
		}
		fmt.Fprintf(r.stdout, "%s: ok: archive %s, %d records, %d frames\n", file, st.Header.ID, st.Summary.Records, st.Frames)
	}
	if bad > 0 {
		return answerNo("%d of %d archives damaged or incomplete", bad, len(files))
	}
	return nil
}

func runBackupLs(r *runner, args []string) error {
	fs := r.commandFlags("backup ls", "FILE...", `
Says what each archive holds: its id, whether it is full or incremental
(and after which archive), its point in time, when it was taken, its
records, tombstones and bytes, and whether it is complete. Reads each
archive whole.

Example:
  tako backup ls *.tako`)
	files, err := r.parseCommand(fs, args, 1, math.MaxInt)
	if err != nil {
		return err
	}
	bad := 0
	for _, file := range files {
		st, err := scanFile(file)
		if st == nil {
			fmt.Fprintf(r.stdout, "%s: %v\n", file, err)
			bad++
			continue
		}
		h := st.Header
		kind := "full"
		if h.Parent != "" {
			kind = "incremental after " + h.Parent + ", since " + formatTime(h.Since)
		}
		state := "complete"
		if err != nil {
			state = "INCOMPLETE or damaged: " + err.Error()
			bad++
		}
		fmt.Fprintf(r.stdout, "%s: archive %s, %s, as of %s, taken %s from %s: %d records (%d tombstones), %s of keys and values, %d ranges; %s\n",
			file, h.ID, kind, formatTime(h.AsOf), h.Created.Format(time.RFC3339), h.Source, st.Summary.Records, st.Summary.Tombstones,
			humanBytes(int64(st.Summary.Bytes)), len(h.Ranges), state)
	}
	if bad > 0 {
		return answerNo("%d of %d archives damaged or incomplete", bad, len(files))
	}
	return nil
}

func runRestore(ctx context.Context, r *runner, args []string) error {
	var cf clusterFlags
	var prefix, asOf string
	var revert bool
	var parallel int
	fs := r.commandFlags("restore", "FILE...", `
Writes the archives FILE... (a full backup and the incremental ones after
it, in any order) into the running cluster, whatever its shape: each record
goes to every replica of its key with its own timestamp and is kept only
where it is newer than what the replica holds, so a restore never
overwrites anything newer and is safe to run again. Every archive is read
and checked whole first: a damaged or incomplete one, or an incremental one
without the archive it follows, is refused and nothing is written. The
cluster's configuration comes from the coordinator of -s, or from -cfg
FILE; the token needs the admin role.

-as-of TIME restores the archives' state as of TIME, leaving out versions
stamped after it. The cluster keeps its own newer versions of those keys,
unless -revert: then the keys it changed after TIME (a mass delete to undo)
get their version of TIME back, written anew.

Exits 2 on any error, among them records that a replica did not take (a
node down): run the restore again once it is back.

Example:
  tako -s localhost:4700 restore monday.tako tuesday.tako
  tako -s localhost:4700 restore -prefix users/ monday.tako
  tako -s localhost:4700 restore -as-of 2026-12-03T09:00:00Z -revert monday.tako`)
	cf.register(fs)
	fs.StringVar(&prefix, "prefix", "", "restore only the keys that start with `PREFIX`")
	fs.StringVar(&asOf, "as-of", "", "restore the state as of `TIME` (RFC 3339, or microseconds since the Unix epoch)")
	fs.BoolVar(&revert, "revert", false, "with -as-of: bring back the version of TIME of the keys the cluster changed after it")
	fs.IntVar(&parallel, "parallel", 8, "how many batches to write at once")
	files, err := r.parseCommand(fs, args, 1, math.MaxInt)
	if err != nil {
		return err
	}
	opts := backup.RestoreOptions{Prefix: []byte(prefix), Revert: revert, Parallel: parallel}
	if asOf != "" {
		if opts.AsOf, err = parseTime(asOf); err != nil {
			return usageError("tako restore", fmt.Sprintf("-as-of %q: %v", asOf, err))
		}
	}
	if revert && asOf == "" {
		return usageError("tako restore", "-revert needs -as-of: the time whose versions to bring back")
	}
	sources := make([]backup.Source, len(files))
	for i, file := range files {
		sources[i] = backup.Source{Name: file, Open: func() (io.ReadCloser, error) { return os.Open(file) }}
	}
	cfg, nodes, err := cf.cluster(ctx, r)
	if err != nil {
		return err
	}
	defer nodes.Close()
	opts.Config, opts.Nodes = cfg, nodes
	progress := newProgressLine(r.stderr)
	opts.Progress = func(p backup.RestoreProgress) {
		line := fmt.Sprintf("restore: %d of %d records, %s of %s", p.Records, p.TotalRecords, humanBytes(int64(p.Bytes)), humanBytes(int64(p.TotalBytes)))
		if p.Bytes > 0 && p.TotalBytes > 0 {
			left := time.Duration(float64(p.Elapsed) * (float64(p.TotalBytes)/float64(p.Bytes) - 1))
			line += fmt.Sprintf(", %s, about %s left", rate(p.Bytes, p.Elapsed), humanDuration(max(left, 0)))
		}
		progress.show(line)
	}
	started := time.Now()
	stats, err := backup.Restore(ctx, opts, sources)
	progress.done()
	took := time.Since(started)
	if len(stats.Archives) > 0 {
		fmt.Fprintf(r.stdout, "restored %s: %d records read, %d left out (prefix, -as-of); replicas: %d written, %d already there, %d kept a newer version; %d keys reverted; in %s\n",
			strings.Join(stats.Archives, ", "), stats.Records, stats.Skipped, stats.Written, stats.Unchanged, stats.Older, stats.Reverted, took.Round(time.Millisecond))
	}
	if err != nil {
		return &codedError{code: exitError, err: err}
	}
	if stats.Older > 0 && opts.AsOf != 0 && !revert {
		fmt.Fprintf(r.stderr, "tako restore: %d records were older than what the cluster holds and were not written; to bring back the versions of -as-of over later changes, add -revert\n", stats.Older)
	}
	return nil
}

// parseTime reads a time as RFC 3339, or as microseconds since the Unix
// epoch.
func parseTime(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0, errors.New("want a time after the Unix epoch")
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, errors.New("want RFC 3339 (2026-12-03T09:00:00Z) or microseconds since the Unix epoch")
	}
	return t.UnixMicro(), nil
}

func runSnapshot(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("snapshot", "DIR", `
Asks the node of -s (its HTTP address) to make a consistent copy of its
store in DIR, an absolute path on the node's own machine that must not
exist: a Pebble checkpoint (hard links to the store's immutable files, near
instant, little space at first), with every write the node acknowledged
before, and the node's record of the ranges it holds. For operators who
back up volumes: copy DIR away, then remove it. To bring a snapshot back,
stop the node, put the copy in place of its data directory, and start the
node once with -recover (docs/operations.md). A node that is recovering
refuses (exit 1). Needs a token of the admin role when the cluster has
tokens.

Example:
  tako -s localhost:5701 snapshot /var/backups/tako/n1-2026-12-03`)
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	dir := pos[0]
	return r.exchange(ctx, request{method: http.MethodPost, path: "/snapshot?dir=" + url.QueryEscape(dir)}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			var res httpapi.SnapshotResult
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
				return fmt.Errorf("%s answered /snapshot with something else than a snapshot: %w", r.server, err)
			}
			fmt.Fprintf(r.stdout, "node %s: snapshot of %d keys in %s, in %.0f ms\n", res.Node, res.Keys, res.Dir, res.TookMs)
			return nil
		case http.StatusServiceUnavailable:
			return answerNo("snapshot: %s", reason(resp))
		case http.StatusBadRequest:
			return &codedError{code: exitError, err: fmt.Errorf("snapshot: %s", reason(resp))}
		case http.StatusNotFound:
			return fmt.Errorf("%s does not serve /snapshot (%s): use -s with a node's HTTP address", r.server, reason(resp))
		}
		return r.unexpected(resp)
	})
}
