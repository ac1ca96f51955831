package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/wire"
)

// fakeNodes is an in-memory cluster for the unit tests of this package:
// each node a map of records, streamed in (hash, key) order, taking puts
// by the cluster's rule (newest wins). down nodes fail every call.
type fakeNodes struct {
	mu    sync.Mutex
	data  map[string]map[string]record.Record
	down  map[string]bool
	calls map[string]int // Stream calls per node
	// failAfter makes a node fail once it has answered that many streams.
	failAfter map[string]int
	// refuse makes every node refuse every call, as a node refuses a
	// token without the admin role.
	refuse bool
}

func newFakeNodes() *fakeNodes {
	return &fakeNodes{data: map[string]map[string]record.Record{}, down: map[string]bool{}, calls: map[string]int{}, failAfter: map[string]int{}}
}

func (f *fakeNodes) put(node, key string, rec record.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.data[node] == nil {
		f.data[node] = map[string]record.Record{}
	}
	if cur, ok := f.data[node][key]; !ok || record.Compare(rec, cur) > 0 {
		f.data[node][key] = rec
	}
}

func (f *fakeNodes) Stream(ctx context.Context, node config.Node, r archive.Range, after []byte, limit int) (Part, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse {
		return Part{}, fmt.Errorf("node %s: %w", node.ID, wire.ErrForbidden)
	}
	if f.down[node.ID] {
		return Part{}, fmt.Errorf("node %s is down", node.ID)
	}
	if n, ok := f.failAfter[node.ID]; ok && f.calls[node.ID] >= n {
		f.down[node.ID] = true
		return Part{}, fmt.Errorf("node %s went down", node.ID)
	}
	f.calls[node.ID]++
	var keys []string
	for k := range f.data[node.ID] {
		if r.Contains(keyhash.SumString(k)) && (after == nil || compareKeys([]byte(k), after) > 0) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int { return compareKeys([]byte(a), []byte(b)) })
	var p Part
	size := 0
	for i, k := range keys {
		if limit == 0 {
			p.RemainingKeys++
			p.RemainingBytes += uint64(len(k))
			continue
		}
		if i > 0 && size >= limit {
			p.More = true
			break
		}
		rec := f.data[node.ID][k]
		p.Entries = append(p.Entries, archive.Entry{Key: []byte(k), Record: rec.Clone()})
		size += len(k) + len(rec.Value)
	}
	return p, nil
}

func (f *fakeNodes) Put(ctx context.Context, node config.Node, entries []archive.Entry) ([]record.PutResult, []error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse { // per item, as a node decides the items of a batch
		errs := make([]error, len(entries))
		for i := range errs {
			errs[i] = fmt.Errorf("node %s: %w", node.ID, wire.ErrForbidden)
		}
		return make([]record.PutResult, len(entries)), errs, nil
	}
	if f.down[node.ID] {
		return nil, nil, fmt.Errorf("node %s is down", node.ID)
	}
	if f.data[node.ID] == nil {
		f.data[node.ID] = map[string]record.Record{}
	}
	results := make([]record.PutResult, len(entries))
	for i, e := range entries {
		cur, ok := f.data[node.ID][string(e.Key)]
		switch c := record.Compare(e.Record, cur); {
		case !ok || c > 0:
			f.data[node.ID][string(e.Key)] = e.Record.Clone()
			results[i] = record.PutResult{Outcome: record.Written, Current: e.Record}
		case c == 0:
			results[i] = record.PutResult{Outcome: record.Unchanged, Current: cur}
		default:
			results[i] = record.PutResult{Outcome: record.Stale, Current: cur}
		}
	}
	return results, make([]error, len(entries)), nil
}

// testConfig is three nodes, each key on two (write quorum 2: a backup
// streams one replica of each range), or on three with a write quorum of
// 2 (it streams two).
func testConfig(t *testing.T, perKey int, quorum string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`active_deployment: d
deployments:
  d:
    write_quorum: %s
    hash: {buckets_per_key: %d}
    buckets:
      b1: {n1: [127.0.0.1, 1, 2]}
      b2: {n2: [127.0.0.1, 3, 4]}
      b3: {n3: [127.0.0.1, 5, 6]}
`, quorum, perKey)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// write puts key's record on the given replicas of it under cfg (all
// when n is 0, else the first n).
func (f *fakeNodes) write(cfg *config.Config, key string, rec record.Record, n int) {
	replicas := cfg.Replicas(nil, []byte(key))
	if n == 0 {
		n = len(replicas)
	}
	for _, nd := range replicas[:n] {
		f.put(nd.ID, key, rec)
	}
}

// takeBackup runs a backup of f into a new archive and reads it back:
// every key's record.
func takeBackup(t *testing.T, cfg *config.Config, f *fakeNodes, parent *archive.Header, opts Options) ([]byte, map[string]record.Record) {
	t.Helper()
	var buf bytes.Buffer
	w, err := archive.NewWriter(&buf, NewHeader(cfg, time.Now(), parent, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	opts.Config, opts.Nodes = cfg, f
	if _, err := Run(context.Background(), opts, w); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), readArchive(t, buf.Bytes())
}

func readArchive(t *testing.T, data []byte) map[string]record.Record {
	t.Helper()
	r, err := archive.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]record.Record{}
	for {
		fr, err := r.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range fr.Entries {
			if _, dup := got[string(e.Key)]; dup {
				t.Fatalf("%q twice in the archive", e.Key)
			}
			got[string(e.Key)] = e.Record.Clone()
		}
	}
}

func TestThePlanCoversTheHashSpaceOnceWithEachRangesReplicas(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	units := plan(cfg)
	if units[0].r.Lo != 0 || units[len(units)-1].r.Hi != ^uint32(0) {
		t.Fatalf("the units do not span the hash space: %v ... %v", units[0].r, units[len(units)-1].r)
	}
	for i, u := range units {
		if i > 0 && units[i-1].r.Hi+1 != u.r.Lo {
			t.Fatalf("a gap or an overlap between %v and %v", units[i-1].r, u.r)
		}
		if i > 0 && sameNodes(units[i-1].replicas, u.replicas) {
			t.Fatalf("two neighbours with the same replicas are not merged: %v %v", units[i-1].r, u.r)
		}
		for _, h := range []uint32{u.r.Lo, u.r.Hi} {
			if !sameNodes(u.replicas, cfg.ReplicasOfHash(nil, h)) {
				t.Fatalf("hash %d of %v: replicas %v, the ring says %v", h, u.r, u.replicas, cfg.ReplicasOfHash(nil, h))
			}
		}
		if u.need != 1 {
			t.Fatalf("need %d with a write quorum of all, want 1", u.need)
		}
	}
	for _, u := range plan(testConfig(t, 3, "2")) {
		if u.need != 2 {
			t.Fatalf("need %d with 3 replicas and a write quorum of 2, want 2", u.need)
		}
	}
}

// TestABackupHoldsEveryAcknowledgedWrite: with each key on three replicas
// and a write quorum of two, a write acknowledged by any two of them is in
// the backup whichever replica lags, with its newest version, tombstones
// included.
func TestABackupHoldsEveryAcknowledgedWrite(t *testing.T) {
	cfg := testConfig(t, 3, "2")
	f := newFakeNodes()
	want := map[string]record.Record{}
	for i := range 2000 {
		key := fmt.Sprintf("k%d", i)
		rec := record.Record{Timestamp: int64(100 + i), Value: []byte(fmt.Sprintf("v%d", i))}
		if i%10 == 0 {
			rec = record.Record{Timestamp: int64(100 + i), Tombstone: true}
		}
		f.write(cfg, key, record.Record{Timestamp: 50, Value: []byte("old")}, 0)
		// Acknowledged by two replicas of three, a different pair for
		// different keys: the third still holds the old version.
		replicas := cfg.Replicas(nil, []byte(key))
		skip := i % 3
		for j, nd := range replicas {
			if j != skip {
				f.put(nd.ID, key, rec)
			}
		}
		want[key] = rec
	}
	var last Progress
	_, got := takeBackup(t, cfg, f, nil, Options{PartBytes: 500, Progress: func(p Progress) { last = p }})
	if len(got) != len(want) {
		t.Fatalf("%d keys in the backup, want %d", len(got), len(want))
	}
	for k, rec := range want {
		if g := got[k]; record.Compare(g, rec) != 0 || g.Tombstone != rec.Tombstone {
			t.Fatalf("%s: %+v in the backup, want %+v", k, g, rec)
		}
	}
	if last.RangesDone != last.Ranges || last.Records != 2000 || last.Estimate == 0 {
		t.Errorf("the last progress: %+v", last)
	}
}

// TestABackupGoesOnWhenANodeGoesDown: a replica that fails mid-way is
// replaced by another from the same key, and nothing is missing.
func TestABackupGoesOnWhenANodeGoesDown(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 3000 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: int64(i + 1), Value: []byte("v")}, 0)
	}
	f.failAfter["n2"] = 5
	_, got := takeBackup(t, cfg, f, nil, Options{PartBytes: 200, Parallel: 2})
	if len(got) != 3000 {
		t.Fatalf("%d keys in the backup, want 3000", len(got))
	}
	if !f.down["n2"] {
		t.Fatal("n2 never failed: the test tests nothing")
	}
}

// TestABackupFailsWhenTooFewReplicasAnswer: with every replica of a range
// down there is no complete copy: the backup says so.
func TestABackupFailsWhenTooFewReplicasAnswer(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	f.write(cfg, "k", record.Record{Timestamp: 1, Value: []byte("v")}, 0)
	f.down["n1"], f.down["n2"] = true, true
	w, err := archive.NewWriter(io.Discard, NewHeader(cfg, time.Now(), nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), Options{Config: cfg, Nodes: f, Attempts: 1}, w)
	if err == nil {
		t.Fatal("a backup with two of three nodes down succeeded")
	}
	t.Log(err)
}

// TestAnIncrementalBackupHoldsWhatChangedAfterItsParent and restores, with
// its parent, like one archive.
func TestAnIncrementalBackupHoldsWhatChangedAfterItsParent(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	now := time.Now().UnixMicro()
	hour := time.Hour.Microseconds()
	for i := range 100 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: now - 2*hour, Value: []byte("v1")}, 0)
	}
	full, _ := takeBackup(t, cfg, f, nil, Options{})
	parent, err := archive.NewReader(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	// Later: ten keys change, one is deleted, one is new.
	for i := range 10 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: now + int64(i+1), Value: []byte("v2")}, 0)
	}
	f.write(cfg, "k50", record.Record{Timestamp: now + 100, Tombstone: true}, 0)
	f.write(cfg, "new", record.Record{Timestamp: now + 200, Value: []byte("n")}, 0)
	h := parent.Header()
	h.AsOf = now // the parent's point: before the changes, long after the first writes
	inc, got := takeBackup(t, cfg, f, &h, Options{})
	if len(got) != 12 {
		t.Fatalf("the incremental holds %d keys, want the 12 that changed: %v", len(got), got)
	}
	// The chain restores into another shape like the state now.
	other := testConfig(t, 3, "2")
	g := newFakeNodes()
	stats, err := Restore(context.Background(), RestoreOptions{Config: other, Nodes: g}, []Source{source("inc", inc), source("full", full)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stats.Archives, []string{"full", "inc"}) {
		t.Errorf("restored in the order %v, want the full one first", stats.Archives)
	}
	for _, nd := range []string{"n1", "n2", "n3"} {
		if len(g.data[nd]) != 101 {
			t.Fatalf("%s holds %d keys after the restore, want 101", nd, len(g.data[nd]))
		}
		for k, rec := range g.data[nd] {
			if want := f.data[cfg.Replicas(nil, []byte(k))[0].ID][k]; record.Compare(rec, want) != 0 {
				t.Fatalf("%s: %s holds %+v, the backed-up cluster %+v", nd, k, rec, want)
			}
		}
	}
	// Without its parent the incremental is refused, and nothing written.
	if _, err := Restore(context.Background(), RestoreOptions{Config: other, Nodes: newFakeNodes()}, []Source{source("inc", inc)}); err == nil {
		t.Fatal("an incremental archive restored without its parent")
	}
}

func source(name string, data []byte) Source {
	return Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

// TestARestoreNeverOverwritesNewerAndRunsTwice, and leaves out what
// -prefix and -as-of leave out.
func TestARestoreNeverOverwritesNewerAndRunsTwice(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 50 {
		f.write(cfg, fmt.Sprintf("a/%d", i), record.Record{Timestamp: 100, Value: []byte("old")}, 0)
		f.write(cfg, fmt.Sprintf("b/%d", i), record.Record{Timestamp: 300, Value: []byte("late")}, 0)
	}
	data, _ := takeBackup(t, cfg, f, nil, Options{})
	// The receiving cluster has a newer a/0.
	g := newFakeNodes()
	g.write(cfg, "a/0", record.Record{Timestamp: 200, Value: []byte("newer")}, 0)
	opts := RestoreOptions{Config: cfg, Nodes: g, Prefix: []byte("a/"), AsOf: 250}
	stats, err := Restore(context.Background(), opts, []Source{source("x", data)})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Records != 100 || stats.Skipped != 50 || stats.Older != 2 || stats.Written != 98 {
		t.Errorf("stats %+v: want 100 read, 50 skipped, 98 written, 2 older", stats)
	}
	for _, nd := range cfg.Replicas(nil, []byte("a/0")) {
		if rec := g.data[nd.ID]["a/0"]; string(rec.Value) != "newer" {
			t.Fatalf("the restore overwrote a newer version on %s: %+v", nd.ID, rec)
		}
	}
	for _, m := range g.data {
		for k := range m {
			if k[0] != 'a' {
				t.Fatalf("%s restored despite -prefix a/ and -as-of", k)
			}
		}
	}
	again, err := Restore(context.Background(), opts, []Source{source("x", data)})
	if err != nil || again.Written != 0 || again.Unchanged != 98 {
		t.Fatalf("the second run: %+v %v: want nothing written", again, err)
	}
}

// TestARevertUndoesAMassDelete: keys deleted after AsOf come back with
// their archived version, stamped anew; keys not changed stay as they are.
func TestARevertUndoesAMassDelete(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 100 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: 100, Value: []byte(fmt.Sprintf("v%d", i))}, 0)
	}
	data, _ := takeBackup(t, cfg, f, nil, Options{})
	for i := range 60 { // the mistake, after 150
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: 200, Tombstone: true}, 0)
	}
	stats, err := Restore(context.Background(), RestoreOptions{Config: cfg, Nodes: f, AsOf: 150, Revert: true,
		Now: func() time.Time { return time.UnixMicro(150) }}, []Source{source("x", data)})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Reverted != 60 {
		t.Errorf("%d keys reverted, want 60", stats.Reverted)
	}
	for i := range 100 {
		for _, nd := range cfg.Replicas(nil, []byte(fmt.Sprintf("k%d", i))) {
			rec := f.data[nd.ID][fmt.Sprintf("k%d", i)]
			if rec.Tombstone || string(rec.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("k%d on %s after the revert: %+v", i, nd.ID, rec)
			}
			if i < 60 && rec.Timestamp <= 200 {
				t.Fatalf("k%d reverted with timestamp %d, not above the delete's", i, rec.Timestamp)
			}
		}
	}
}

// TestADamagedArchiveRestoresNothing.
func TestADamagedArchiveRestoresNothing(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 500 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: 1, Value: bytes.Repeat([]byte("x"), 100)}, 0)
	}
	data, _ := takeBackup(t, cfg, f, nil, Options{PartBytes: 1000})
	for _, bad := range [][]byte{data[:len(data)/2], flip(data, len(data)*3/4)} {
		g := newFakeNodes()
		_, err := Restore(context.Background(), RestoreOptions{Config: cfg, Nodes: g}, []Source{source("bad", bad)})
		var ce *archive.CorruptError
		if err == nil || !(errors.As(err, &ce) || errors.Is(err, archive.ErrIncomplete)) {
			t.Fatalf("a damaged archive: %v", err)
		}
		if len(g.data) != 0 {
			t.Fatalf("a damaged archive wrote %d nodes' records", len(g.data))
		}
		t.Log(err)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// TestAResumedBackupHoldsEveryKeyOnce: a backup stopped half-way (its
// file cut inside a frame) and resumed from its Scan.
func TestAResumedBackupHoldsEveryKeyOnce(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 3000 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: int64(i + 1), Value: []byte("v")}, 0)
	}
	full, _ := takeBackup(t, cfg, f, nil, Options{PartBytes: 300})
	part := bytes.Clone(full[:len(full)/2+3])
	st, err := archive.Scan(bytes.NewReader(part))
	if err == nil {
		t.Fatal("half an archive scans as complete")
	}
	buf := bytes.NewBuffer(part[:st.Good])
	w, err := archive.AppendWriter(buf, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Options{Config: cfg, Nodes: f, PartBytes: 300}, w); err != nil {
		t.Fatal(err)
	}
	if got := readArchive(t, buf.Bytes()); len(got) != 3000 {
		t.Fatalf("the resumed archive holds %d keys, want 3000", len(got))
	}
}

// TestWithoutTheAdminRoleNothingHappens: nodes that refuse the token make
// a backup and a restore fail at once, saying that they need the admin
// role, and a restore writes nothing.
func TestWithoutTheAdminRoleNothingHappens(t *testing.T) {
	cfg := testConfig(t, 2, "all")
	f := newFakeNodes()
	for i := range 100 {
		f.write(cfg, fmt.Sprintf("k%d", i), record.Record{Timestamp: 1, Value: []byte("v")}, 0)
	}
	data, _ := takeBackup(t, cfg, f, nil, Options{})
	g := newFakeNodes()
	g.refuse = true
	w, err := archive.NewWriter(io.Discard, NewHeader(cfg, time.Now(), nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Run(context.Background(), Options{Config: cfg, Nodes: g}, w); err == nil || !strings.Contains(err.Error(), "admin role") {
		t.Fatalf("a backup refused by the nodes: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a refused backup took %v: it should not retry a refusal", took)
	}
	_, err = Restore(context.Background(), RestoreOptions{Config: cfg, Nodes: g}, []Source{source("x", data)})
	if err == nil || !strings.Contains(err.Error(), "admin role") {
		t.Fatalf("a restore refused by the nodes: %v", err)
	}
	if len(g.data) != 0 {
		t.Fatal("a refused restore wrote records")
	}
}
