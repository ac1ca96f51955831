package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/archive"
	"github.com/takodb/tako/internal/record"
)

// takoCmd runs the tako command with args in dir and returns its exit code
// and its output (stdout and stderr).
func takoCmd(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	return takoCmdIn(t, dir, "", args...)
}

// readArchiveFile returns every record of the archive file.
func readArchiveFile(t *testing.T, file string) map[string]record.Record {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := archive.NewReader(f)
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
			t.Fatalf("%s: %v", file, err)
		}
		for _, e := range fr.Entries {
			got[string(e.Key)] = e.Record.Clone()
		}
	}
}

// ackedWrite is a write or delete the cluster acknowledged.
type ackedWrite struct {
	value   []byte
	deleted bool
	ts      int64
	at      time.Time // when the acknowledgement came back
}

// writeLoad writes and deletes keys/0..keys-1 through c from writers
// goroutines until stop is closed, and returns every acknowledged write,
// per key.
func writeLoad(c *client.Client, keys, writers int, stop <-chan struct{}) map[string][]ackedWrite {
	var mu sync.Mutex
	acked := map[string][]ackedWrite{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("keys/%d", rng.IntN(keys))
				var res client.WriteResult
				var err error
				value := []byte(fmt.Sprintf("w%d-%d-%s", w, i, strings.Repeat("x", rng.IntN(2000))))
				deleted := rng.IntN(6) == 0
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if deleted {
					res, err = c.Delete(ctx, []byte(key))
				} else {
					res, err = c.Put(ctx, []byte(key), value)
				}
				cancel()
				if err != nil {
					continue
				}
				if deleted {
					value = nil
				}
				mu.Lock()
				acked[key] = append(acked[key], ackedWrite{value: value, deleted: deleted, ts: res.Timestamp, at: time.Now()})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return acked
}

// sameRecord reports whether the cluster, read through c, holds rec for key
// (a tombstone: a delete with rec's timestamp).
func sameRecord(ctx context.Context, c *client.Client, key string, rec record.Record) error {
	v, err := c.Get(ctx, []byte(key))
	switch {
	case errors.Is(err, client.ErrNotFound) && rec.Tombstone && v.Timestamp == rec.Timestamp:
		return nil
	case err != nil && !errors.Is(err, client.ErrNotFound):
		return fmt.Errorf("%s: %w", key, err)
	case v.Timestamp != rec.Timestamp || v.Deleted != rec.Tombstone || !bytes.Equal(v.Value, rec.Value):
		return fmt.Errorf("%s: the cluster holds %d deleted=%v %d bytes, want %d deleted=%v %d bytes", key, v.Timestamp, v.Deleted, len(v.Value), rec.Timestamp, rec.Tombstone, len(rec.Value))
	}
	return nil
}

// TestBackupAndRestoreOnRealProcesses: a backup taken under a read/write
// load holds every write acknowledged before it started; restored into an
// empty cluster of another shape, every key reads as in the archive; an
// incremental chain restores like the state it was taken at; a
// point-in-time restore with -revert undoes a mass delete; a damaged
// archive is refused by verify and by restore, which writes nothing.
func TestBackupAndRestoreOnRealProcesses(t *testing.T) {
	const keys = 400
	a := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "")
	ca, err := client.Open(a.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	ctx := context.Background()
	dir := t.TempDir()

	// A load goes on before, during and after the backup.
	stop := make(chan struct{})
	var acked map[string][]ackedWrite
	loaded := make(chan struct{})
	go func() {
		acked = writeLoad(ca, keys, 8, stop)
		close(loaded)
	}()
	time.Sleep(2 * time.Second)
	full := filepath.Join(dir, "full.tako")
	started := time.Now()
	code, out := takoCmd(t, dir, "backup", "-cfg", a.cfg, full)
	if code != 0 {
		t.Fatalf("tako backup: exit %d: %s", code, out)
	}
	took := time.Since(started)
	close(stop)
	<-loaded
	t.Logf("tako backup under load (%v): %s", took.Round(time.Millisecond), strings.TrimSpace(out))

	// Every write acknowledged before the backup started is in it, or a
	// newer version of its key.
	archived := readArchiveFile(t, full)
	before, total := 0, 0
	for key, writes := range acked {
		var newest *ackedWrite
		for i, w := range writes {
			total++
			if w.at.Before(started) && (newest == nil || w.ts > newest.ts) {
				newest = &writes[i]
			}
		}
		if newest == nil {
			continue
		}
		before++
		rec, ok := archived[key]
		switch {
		case !ok:
			t.Fatalf("%s: acknowledged at %d before the backup started, not in the archive", key, newest.ts)
		case rec.Timestamp < newest.ts:
			t.Fatalf("%s: the archive holds %d, older than %d, acknowledged before the backup started", key, rec.Timestamp, newest.ts)
		case rec.Timestamp == newest.ts && (rec.Tombstone != newest.deleted || !bytes.Equal(rec.Value, newest.value)):
			t.Fatalf("%s: the archive's version %d is not the write acknowledged with it", key, rec.Timestamp)
		}
	}
	if before < keys/2 {
		t.Fatalf("only %d keys had a write acknowledged before the backup: the load did not run", before)
	}
	t.Logf("%d writes acknowledged; the archive holds %d keys, every one of the %d acknowledged before the backup with its version or a newer one", total, len(archived), before)

	if code, out := takoCmd(t, dir, "backup", "verify", full); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("tako backup verify: exit %d: %s", code, out)
	}

	// A damaged copy: verify says where, restore writes nothing.
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.tako")
	damaged := bytes.Clone(data)
	damaged[len(damaged)*2/3] ^= 0x40
	if err := os.WriteFile(bad, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := takoCmd(t, dir, "backup", "verify", bad); code != 1 || !strings.Contains(out, "damaged at byte") {
		t.Fatalf("tako backup verify of a damaged archive: exit %d: %s", code, out)
	}
	b := startCluster(t, [][]string{{"m1"}, {"m2"}, {"m3"}, {"m4"}}, 3, "")
	cb, err := client.Open(b.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if code, out := takoCmd(t, dir, "restore", "-cfg", b.cfg, bad); code != 2 || !strings.Contains(out, "damaged at byte") {
		t.Fatalf("tako restore of a damaged archive: exit %d: %s", code, out)
	}
	for key := range archived {
		if _, err := cb.Get(ctx, []byte(key)); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("%s is in the cluster after the restore of a damaged archive: %v", key, err)
		}
	}

	// Restored into an empty cluster of another shape (4 buckets, each key
	// on 3), every key reads as the archive holds it.
	if code, out := takoCmd(t, dir, "restore", "-cfg", b.cfg, full); code != 0 {
		t.Fatalf("tako restore: exit %d: %s", code, out)
	} else {
		t.Logf("tako restore: %s", strings.TrimSpace(out))
	}
	for key, rec := range archived {
		if err := sameRecord(ctx, cb, key, rec); err != nil {
			t.Fatalf("after the restore into another shape: %v", err)
		}
	}
	// Twice is harmless.
	if code, out := takoCmd(t, dir, "restore", "-cfg", b.cfg, full); code != 0 || !strings.Contains(out, " 0 written") {
		t.Fatalf("tako restore again: exit %d: %s", code, out)
	}

	// An incremental backup after changes; full + incremental restore
	// into a third, empty cluster like the state it was taken at.
	changed := map[string]bool{}
	for i := range 60 {
		key := fmt.Sprintf("keys/%d", i*5)
		var err error
		if i%3 == 0 {
			_, err = ca.Delete(ctx, []byte(key))
		} else {
			_, err = ca.Put(ctx, []byte(key), []byte(fmt.Sprintf("changed-%d", i)))
		}
		if err != nil {
			t.Fatal(err)
		}
		changed[key] = true
	}
	for i := range 20 {
		key := fmt.Sprintf("new/%d", i)
		if _, err := ca.Put(ctx, []byte(key), []byte("new")); err != nil {
			t.Fatal(err)
		}
		changed[key] = true
	}
	inc := filepath.Join(dir, "inc.tako")
	if code, out := takoCmd(t, dir, "backup", "-cfg", a.cfg, "-since", full, "-overlap", "0s", inc); code != 0 {
		t.Fatalf("tako backup -since: exit %d: %s", code, out)
	}
	// The cluster's state now, key by key; the incremental archive holds
	// exactly the keys whose version is newer than its Since (the full
	// backup's point: -overlap 0s, the clocks here are one).
	state := map[string]record.Record{}
	for key := range archived {
		state[key] = record.Record{}
	}
	for key := range changed {
		state[key] = record.Record{}
	}
	for key := range state {
		v, err := ca.Get(ctx, []byte(key))
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatal(err)
		}
		state[key] = record.Record{Timestamp: v.Timestamp, Tombstone: v.Deleted, Value: v.Value}
	}
	incRecords := readArchiveFile(t, inc)
	incFile, err := os.Open(inc)
	if err != nil {
		t.Fatal(err)
	}
	incState, err := archive.Scan(incFile)
	incFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	since := incState.Header.Since
	for key, rec := range state {
		_, in := incRecords[key]
		if in != (rec.Timestamp > since) {
			t.Fatalf("%s (version %d) in the incremental archive after %d: %v", key, rec.Timestamp, since, in)
		}
	}
	for key := range changed {
		if _, ok := incRecords[key]; !ok {
			t.Fatalf("%s changed after the full backup and is not in the incremental one", key)
		}
	}
	t.Logf("the incremental archive holds the %d of %d keys changed since the full backup", len(incRecords), len(state))
	if code, out := takoCmd(t, dir, "backup", "ls", full, inc); code != 0 || !strings.Contains(out, "incremental after") {
		t.Fatalf("tako backup ls: exit %d: %s", code, out)
	}
	if code, out := takoCmd(t, dir, "restore", "-cfg", b.cfg, inc); code != 2 || !strings.Contains(out, "not given") {
		t.Fatalf("tako restore of an incremental archive without its parent: exit %d: %s", code, out)
	}
	c := startCluster(t, [][]string{{"p1", "p2"}, {"p3"}}, 1, "")
	cc, err := client.Open(c.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if code, out := takoCmd(t, dir, "restore", "-cfg", c.cfg, inc, full); code != 0 {
		t.Fatalf("tako restore of the chain: exit %d: %s", code, out)
	}
	for key, rec := range state {
		if err := sameRecord(ctx, cc, key, rec); err != nil {
			t.Fatalf("after the restore of the chain: %v", err)
		}
	}

	// A mistake: every key of keys/1* deleted. A restore as of before it,
	// with -revert, brings them back as they were.
	time.Sleep(10 * time.Millisecond)
	mistake := time.Now()
	time.Sleep(10 * time.Millisecond)
	deleted := 0
	for key, rec := range state {
		if strings.HasPrefix(key, "keys/1") && !rec.Tombstone && rec.Timestamp != 0 {
			if _, err := ca.Delete(ctx, []byte(key)); err != nil {
				t.Fatal(err)
			}
			deleted++
		}
	}
	asOf := mistake.UTC().Format(time.RFC3339Nano)
	if code, out := takoCmd(t, dir, "restore", "-cfg", a.cfg, "-as-of", asOf, full, inc); code != 0 || !strings.Contains(out, "-revert") {
		t.Fatalf("tako restore -as-of without -revert: exit %d: %s (want a hint at -revert)", code, out)
	}
	if code, out := takoCmd(t, dir, "restore", "-cfg", a.cfg, "-as-of", asOf, "-revert", full, inc); code != 0 {
		t.Fatalf("tako restore -as-of -revert: exit %d: %s", code, out)
	} else {
		t.Logf("undoing the delete of %d keys: %s", deleted, strings.TrimSpace(out))
	}
	for key, rec := range state {
		if !strings.HasPrefix(key, "keys/1") || rec.Tombstone || rec.Timestamp == 0 {
			continue
		}
		v, err := ca.Get(ctx, []byte(key))
		if err != nil || !bytes.Equal(v.Value, rec.Value) {
			t.Fatalf("%s after the point-in-time restore: %q %v, want its value before the mistake", key, v.Value, err)
		}
	}
}

// TestABackupSurvivesANodeKilledMidway: a node killed while a backup
// streams its ranges; the backup reads them from the other replicas and
// holds every key.
func TestABackupSurvivesANodeKilledMidway(t *testing.T) {
	a := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "")
	ca, err := client.Open(a.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	ctx := context.Background()
	value := bytes.Repeat([]byte("v"), 16<<10)
	const keys = 3000 // 48 MiB on each of two replicas
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < keys; i += 8 {
				if _, err := ca.Put(ctx, []byte(fmt.Sprintf("big/%d", i)), value); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.tako")
	cmd := exec.Command(bin("tako"), "backup", "-cfg", a.cfg, "-parallel", "1", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(150 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the backup ended before the node was killed (%v): %s; the test needs more data", err, out.String())
	default:
	}
	a.nodes["n2"].kill()
	if err := <-done; err != nil {
		t.Fatalf("tako backup with n2 killed midway: %v: %s", err, out.String())
	}
	if !strings.Contains(out.String(), "another one goes on") {
		t.Errorf("the backup did not say that another replica took over from n2: %s", out.String())
	}
	got := readArchiveFile(t, file)
	for i := range keys {
		if rec, ok := got[fmt.Sprintf("big/%d", i)]; !ok || !bytes.Equal(rec.Value, value) {
			t.Fatalf("big/%d is not in the archive whole", i)
		}
	}
	t.Logf("n2 killed 150 ms into the backup; every one of %d keys in it: %s", keys, strings.TrimSpace(out.String()))

	// A backup interrupted (its process killed) goes on with -resume and
	// ends with every key once.
	file2 := filepath.Join(dir, "b.tako")
	cmd = exec.Command(bin("tako"), "backup", "-cfg", a.cfg, "-parallel", "1", file2)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	cmd.Process.Kill()
	if err := cmd.Wait(); err == nil {
		t.Fatal("the backup ended before it was killed; the test needs more data")
	}
	if code, out := takoCmd(t, dir, "backup", "verify", file2); code != 1 || !strings.Contains(out, "BAD") {
		t.Fatalf("tako backup verify of an interrupted backup: exit %d: %s", code, out)
	}
	if code, out := takoCmd(t, dir, "backup", "-cfg", a.cfg, file2); code != 2 || !strings.Contains(out, "-resume") {
		t.Fatalf("tako backup into an existing file: exit %d: %s, want a refusal naming -resume", code, out)
	}
	if code, out := takoCmd(t, dir, "backup", "-cfg", a.cfg, "-resume", file2); code != 0 {
		t.Fatalf("tako backup -resume: exit %d: %s", code, out)
	} else {
		t.Logf("resumed: %s", strings.TrimSpace(out))
	}
	got = readArchiveFile(t, file2)
	if len(got) != keys {
		t.Fatalf("the resumed archive holds %d keys, want %d", len(got), keys)
	}
}

// TestASnapshotBroughtBackRecovers: a node's snapshot (tako snapshot),
// brought back as docs/operations.md says (the node stopped, the copy put
// in place of its data directory, the node started once with -recover),
// ends with the node holding what its peer holds: the writes made after
// the snapshot, and none of the values deleted since.
func TestASnapshotBroughtBackRecovers(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "    background_repair_interval: 1s\n    tombstone_grace: 1s\n")
	cl, err := client.Open(c.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	held := func(key string) map[string]client.ReplicaRecord {
		p, err := cl.Where(ctx, []byte(key))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]client.ReplicaRecord{}
		for _, d := range p.Deployments {
			for _, b := range d.Buckets {
				for _, r := range b.Replicas {
					out[r.NodeID] = r
				}
			}
		}
		return out
	}
	for i := range 200 {
		if _, err := cl.Put(ctx, []byte(fmt.Sprintf("s/%d", i)), []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(t.TempDir(), "n2-snapshot")
	if code, out := takoCmd(t, c.dir, "-s", c.http["n2"], "snapshot", snap); code != 0 || !strings.Contains(out, "snapshot of 200 keys") {
		t.Fatalf("tako snapshot: exit %d: %s", code, out)
	}
	// After the snapshot: 50 keys deleted, 50 rewritten, 50 new.
	for i := range 50 {
		if _, err := cl.Delete(ctx, []byte(fmt.Sprintf("s/%d", i))); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Put(ctx, []byte(fmt.Sprintf("s/%d", 50+i)), []byte("after")); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Put(ctx, []byte(fmt.Sprintf("s/%d", 200+i)), []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	// The deletes' tombstones collected everywhere: only the snapshot
	// still holds those keys' values, and nothing tells n2 they were
	// deleted but -recover.
	waitFor(t, "the tombstones collected from both nodes", func() bool {
		for i := range 50 {
			for _, r := range held(fmt.Sprintf("s/%d", i)) {
				if r.Err != nil || r.Found {
					return false
				}
			}
		}
		return true
	})
	if err := c.nodes["n2"].stop(t); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(c.dataDir("n2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(snap, c.dataDir("n2")); err != nil {
		t.Fatal(err)
	}
	c.nodes["n2"] = start(t, c.dir, "tako-node", "-id", "n2", "-cfg", c.cfg, "-v", c.dir, "-recover")
	waitFor(t, "n2 recovered from its snapshot", func() bool {
		code, _, body, err := httpDo(ctx, "GET", c.http["n2"]+"/health", nil, nil)
		return err == nil && code == 200 && strings.TrimSpace(string(body)) == "ok"
	})
	time.Sleep(2 * time.Second) // two more repair passes: nothing comes back
	for i := range 250 {
		key := fmt.Sprintf("s/%d", i)
		h := held(key)
		n1, n2 := h["n1"], h["n2"]
		switch {
		case n2.Err != nil:
			t.Fatalf("%s: n2 did not answer: %v", key, n2.Err)
		case i < 50 && (n2.Found && !n2.Deleted || n1.Found && !n1.Deleted):
			t.Fatalf("%s, deleted after the snapshot, is back as a value: n1 %+v, n2 %+v", key, n1, n2)
		case i >= 50 && (!n2.Found || n2.Timestamp != n1.Timestamp || n2.Deleted):
			t.Fatalf("%s: n2 holds %+v, n1 %+v", key, n2, n1)
		}
	}
}
