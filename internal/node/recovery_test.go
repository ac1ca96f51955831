package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// writeKeys writes count keys through node id, values of varied sizes,
// and returns them.
func writeKeys(t *testing.T, c *testCluster, id string, count int) map[string][]byte {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	values := make(map[string][]byte, count)
	for i := range count {
		v := make([]byte, 1+r.IntN(2000))
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		k := fmt.Sprintf("key/%05d", i)
		values[k] = v
		if _, err := c.nodes[id].Put(context.Background(), []byte(k), v, 0, httpapi.Expiry{}); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	return values
}

// wipe stops node id, deletes its store and starts it again, empty.
func (c *testCluster) wipe(t testing.TB, id string) {
	t.Helper()
	c.stop(t, id)
	if err := os.RemoveAll(c.dirs[id]); err != nil {
		t.Fatal(err)
	}
	c.start(t, id)
}

// TestARecoveringReplicaAnswersOnlyWithEnoughOthers: three replicas, the
// default quorums (2 of 3); a write acknowledged by n1 and n2 only; n1
// loses its disk and n2 is down. n1, reading the key through, hears only
// n3, which holds the version before: answering with it would make a read
// of n1 and n3 return what the acknowledged write replaced (the simulator,
// internal/sim, found the read that went back in time). It answers
// "recovering" instead, so that the read fails until n2 is back.
func TestARecoveringReplicaAnswersOnlyWithEnoughOthers(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	ctx := context.Background()
	if _, err := c.nodes["n1"].Put(ctx, []byte("k"), []byte("before"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	c.waitOnEveryNode(t, "k")
	after := store.Record{Timestamp: time.Now().UnixMicro(), Value: []byte("after")}
	for _, id := range []string{"n1", "n2"} { // acknowledged by a write quorum
		if _, err := c.nodes[id].store.Put(ctx, []byte("k"), after); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(t, "n2")
	c.wipe(t, "n1")
	if !c.nodes["n1"].Recovering() {
		t.Fatal("n1 does not recover after losing its disk")
	}
	for _, via := range []string{"n1", "n3"} {
		v, err := c.nodes[via].Get(ctx, []byte("k"))
		if err == nil {
			t.Fatalf("a read through %s with n2 down and n1 recovering returned %q: the acknowledged %q was on n2 and n1's lost disk only", via, v.Value, after.Value)
		}
	}
	c.start(t, "n2")
	waitFor(t, "the acknowledged version read once n2 is back", func() bool {
		v, err := c.nodes["n3"].Get(ctx, []byte("k"))
		return err == nil && string(v.Value) == "after"
	})
}

// TestWipedReplicasReadThroughAtOnce: every key on four nodes, three of
// which lost their disks and restart empty; read at once, with the default
// quorum (3 of 4), every key comes back, through any node: the recovering
// replicas read each key through from the one that has it, so their answers
// count. Before read-through, every read answered "too few replicas".
func TestWipedReplicasReadThroughAtOnce(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}, {"n4"}}, 4, "")
	values := writeKeys(t, c, "n4", 200)
	for _, id := range []string{"n1", "n2", "n3"} {
		c.wipe(t, id)
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		for k, v := range values {
			got, err := c.nodes[id].Get(context.Background(), []byte(k))
			if err != nil || !bytes.Equal(got.Value, v) {
				t.Fatalf("read %s through %s right after the restart: %v, %d bytes; want %d", k, id, err, len(got.Value), len(v))
			}
		}
	}
	throughs := 0.0
	for _, id := range []string{"n1", "n2", "n3"} {
		throughs += testutil.ToFloat64(c.nodes[id].metrics.refill.readThroughs.WithLabelValues("found"))
	}
	if throughs == 0 {
		t.Error("no read went through a recovering replica: the test read after the recovery")
	}
	t.Logf("%d reads of %d keys, %v of them read through by a recovering replica", 4*len(values), len(values), throughs)
}

// TestRefillStreamsLostRangesFromPeers: a node that lost its disk gets
// every record back by streaming, exactly as its peer holds it, and the
// repair pass that follows finds nothing left to pull.
func TestRefillStreamsLostRangesFromPeers(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	values := writeKeys(t, c, "n1", 3000)
	ctx := context.Background()
	if _, err := c.nodes["n1"].Delete(ctx, []byte("key/00007"), 0); err != nil {
		t.Fatal(err)
	}
	c.wipe(t, "n2")
	n2 := c.nodes["n2"]
	waitFor(t, "n2 to recover", func() bool { return !n2.Recovering() })
	for k := range values {
		want, err := c.nodes["n1"].store.Get(ctx, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		got, err := n2.store.Get(ctx, []byte(k))
		if err != nil || store.Compare(got, want) != 0 {
			t.Fatalf("%s on n2 after the refill: %v %v, want %v", k, got, err, want)
		}
	}
	streamed := testutil.ToFloat64(n2.metrics.refill.totalKeys)
	pulled := testutil.ToFloat64(n2.metrics.repairKeys.WithLabelValues("received"))
	if streamed != float64(len(values)) || pulled != 0 {
		t.Errorf("n2 streamed %v records and the repair pass pulled %v; want %d and 0", streamed, pulled, len(values))
	}
	if _, err := os.Stat(filepath.Join(c.dirs["n2"], recoveryFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the recovery state is still there after the recovery: %v", err)
	}
}

// TestRecoverRefillsAPartlyLostStore: a store that lost some records looks
// whole; the node serves its "not found" for them as answers until it is
// started with Recover, which refills every range.
func TestRecoverRefillsAPartlyLostStore(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	values := writeKeys(t, c, "n1", 500)
	c.stop(t, "n2")
	// Lose every fifth record of n2's store.
	st, err := store.Open(c.dirs["n2"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lost := 0
	for k := range values {
		if k[len(k)-1]%5 != 0 {
			continue
		}
		rec, err := st.Get(ctx, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := st.Remove(ctx, []byte(k), rec); !ok || err != nil {
			t.Fatalf("removing %s: %v %v", k, ok, err)
		}
		lost++
	}
	st.Close()

	n, err := New(Options{ID: "n2", Config: c.cfg, DataDir: c.dirs["n2"], Logger: testLogger(t), Recover: true})
	if err != nil {
		t.Fatal(err)
	}
	if !n.Recovering() {
		t.Fatal("a node started with Recover is not recovering")
	}
	n.Close()
	c.start(t, "n2") // the recovery was saved: it resumes without the flag
	n2 := c.nodes["n2"]
	if !n2.Recovering() {
		t.Fatal("the recovery did not survive the restart")
	}
	waitFor(t, "n2 to recover", func() bool { return !n2.Recovering() })
	for k, v := range values {
		got, err := n2.store.Get(ctx, []byte(k))
		if err != nil || !bytes.Equal(got.Value, v) {
			t.Fatalf("%s on n2 after the recovery: %v", k, err)
		}
	}
	t.Logf("%d of %d records lost and refilled", lost, len(values))
}

// TestRecoveringNodeDoesNotStreamWhatItLacks: a source that recovers a
// range refuses to stream it, so that the receiver asks another.
func TestRecoveringNodeDoesNotStreamWhatItLacks(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	n := c.nodes["n1"]
	req := &wire.Request{Op: wire.OpRangeStream, Ranges: []wire.HashRange{{Lo: 0, Hi: ^uint32(0)}}, Limit: 1 << 20}
	if resp := n.serveRangeStream(context.Background(), req); resp.Err != nil {
		t.Fatalf("a whole node streams: %v", resp.Err)
	}
	n.startRecovering("a test says so", []hashRange{{0, 1 << 20}}, false)
	resp := n.serveRangeStream(context.Background(), req)
	if resp.Err == nil || resp.Err.Code != wire.CodeUnavailable {
		t.Fatalf("a recovering node streams the range it recovers: %+v", resp)
	}
	req.Ranges[0] = wire.HashRange{Lo: 2 << 20, Hi: 3 << 20}
	if resp := n.serveRangeStream(context.Background(), req); resp.Err != nil {
		t.Fatalf("a recovering node refuses a range it does not recover: %v", resp.Err)
	}
}

// TestRecoveryStateRoundTrip: what is saved is what is loaded, and the
// range arithmetic the recovery uses holds.
func TestRecoveryStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := newRecovery(vfs.Default, dir, "why", []hashRange{{10, 20}, {15, 30}, {40, 50}}, []refillUnit{{Lo: 10, Hi: 30}, {Lo: 40, Hi: 50}})
	if err := r.advance(0, []byte("cursor"), false, false); err != nil {
		t.Fatal(err)
	}
	if err := r.advance(1, nil, true, false); err != nil {
		t.Fatal(err)
	}
	got, err := loadRecovery(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.state.Units, []refillUnit{{Lo: 10, Hi: 30, After: []byte("cursor")}, {Lo: 40, Hi: 50, Done: true}}) {
		t.Errorf("units %+v", got.state.Units)
	}
	if want := (rangeSet{{10, 30}, {40, 50}}); !reflect.DeepEqual(got.lostRanges(), want) {
		t.Errorf("lost %v, want %v", got.lostRanges(), want)
	}
	if p := got.pending(); !reflect.DeepEqual(p, []int{0}) {
		t.Errorf("pending %v", p)
	}
	for h, want := range map[uint32]bool{9: false, 10: true, 30: true, 31: false, 45: true, 51: false} {
		if got.lostRanges().contains(h) != want {
			t.Errorf("contains(%d) = %v", h, !want)
		}
	}
	if s := subtract([]hashRange{{0, 100}}, []hashRange{{10, 20}, {50, 60}}); !reflect.DeepEqual(s, []hashRange{{0, 9}, {21, 49}, {61, 100}}) {
		t.Errorf("subtract = %v", s)
	}
	if err := os.WriteFile(filepath.Join(dir, recoveryFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadRecovery(vfs.Default, dir); err == nil {
		t.Error("a damaged state file loads")
	}
}

// BenchmarkRefill measures how fast a node that lost its disk refills
// 64 KiB values from its one peer, in one process, on the real disk:
// b.N values of 64 KiB, MB/s reported by the benchmark.
//
//	go test -run '^$' -bench Refill -benchtime 4096x ./internal/node
func BenchmarkRefill(b *testing.B) {
	c := startCluster(b, [][]string{{"n1"}, {"n2"}}, 2, "    repair_bandwidth: 100GiB/s\n")
	ctx := context.Background()
	value := make([]byte, 64<<10)
	for i := range value {
		value[i] = byte(i * 7)
	}
	var entries []store.Entry
	for i := range b.N {
		entries = append(entries, store.Entry{Key: fmt.Appendf(nil, "bench/%08d", i), Record: store.Record{Timestamp: int64(i + 1), Value: value}})
	}
	slices.SortFunc(entries, func(x, y store.Entry) int { return keyHashOrder(x.Key, y.Key) })
	for start := 0; start < len(entries); start += 64 {
		if _, err := c.nodes["n1"].store.PutMany(ctx, entries[start:min(start+64, len(entries))]); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	c.wipe(b, "n2")
	n2 := c.nodes["n2"]
	for n2.Recovering() {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	if got := n2.store.Stats().Keys; got != int64(b.N) {
		b.Fatalf("n2 holds %d records after the refill, want %d", got, b.N)
	}
}

// TestOldCopyDoesNotBringDeletedKeysBack: n2's store is an old copy that
// still holds keys deleted since, whose tombstones the other replica has
// collected. Started with Recover, n2 never answers with those records,
// never pushes them to n1, and its refill deletes them; its own records
// that n1 still holds stay. While n2 recovers, a read of a deleted key
// through n2 answers "not found".
func TestOldCopyDoesNotBringDeletedKeysBack(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	values := writeKeys(t, c, "n1", 400)
	ctx := context.Background()
	c.stop(t, "n2")
	// While n2 is away, every tenth key is deleted on n1 and its
	// tombstone collected (Remove, as garbage collection does).
	n1 := c.nodes["n1"]
	deleted := map[string]bool{}
	for k := range values {
		if k[len(k)-1] != '3' {
			continue
		}
		rec, err := n1.store.Get(ctx, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := n1.store.Remove(ctx, []byte(k), rec); !ok || err != nil {
			t.Fatalf("removing %s on n1: %v %v", k, ok, err)
		}
		deleted[k] = true
	}
	n2, err := New(Options{ID: "n2", Config: c.cfg, DataDir: c.dirs["n2"], Logger: testLogger(t), Recover: true})
	if err != nil {
		t.Fatal(err)
	}
	// Before n2 serves: its records of the deleted keys are suspect.
	for k := range deleted {
		if _, _, err := n2.local.getLocal(ctx, []byte(k)); !errors.Is(err, errRecovering) {
			t.Fatalf("n2's own answer for %s, deleted while it was away: %v, want errRecovering", k, err)
		}
		break
	}
	n2.Close()
	c.start(t, "n2")
	n2 = c.nodes["n2"]
	for k := range deleted {
		if v, err := n2.Get(ctx, []byte(k)); err == nil && !v.Deleted {
			t.Fatalf("a read of %s through the recovering n2 found it", k)
		}
	}
	waitFor(t, "n2 to recover", func() bool { return !n2.Recovering() })
	for k, v := range values {
		for _, id := range []string{"n1", "n2"} {
			got, err := c.nodes[id].store.Get(ctx, []byte(k))
			switch {
			case deleted[k] && !errors.Is(err, store.ErrNotFound):
				t.Errorf("%s, deleted while n2 was away, is on %s after the recovery: %v %v", k, id, got, err)
			case !deleted[k] && (err != nil || !bytes.Equal(got.Value, v)):
				t.Errorf("%s on %s after the recovery: %v", k, id, err)
			}
		}
	}
	if got := testutil.ToFloat64(n2.metrics.refill.suspectsDropped); got != float64(len(deleted)) {
		t.Errorf("n2 dropped %v suspect records, want %d", got, len(deleted))
	}
}

// TestRepairProbesAPeerMarkedDown: a peer marked down (a call timed out
// while it started) is probed by the repair pass once its probe is due,
// instead of being skipped for ever: a recovering node, which needs a
// clean pass with every peer and may get no client request to probe it,
// finishes its recovery.
func TestRepairProbesAPeerMarkedDown(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	n1 := c.nodes["n1"]
	waitFor(t, "n1 to recover", func() bool { return !n1.Recovering() })
	n1.peers.Peer("n2").Failure()
	n1.startRecovering("a test says so", replicatedRanges(n1.Config(), "n1"), false)
	waitFor(t, "n1 to recover with n2 marked down", func() bool { return !n1.Recovering() })
	if up, _ := n1.peers.Peer("n2").Up(); !up {
		t.Error("n2 is still marked down after a repair pass with it")
	}
}

// TestAMergeDuringAReadDoesNotLetASuspectOut: a read of a suspect record
// that the refill merges (deleting the record) between the read and its
// judgement still treats the record as suspect. In the container suite,
// readers waiting on the recovery's lock while the refill saved its state
// read a deleted key's old value before the merge, judged it after, and
// answered it: repair then spread it to every replica.
func TestAMergeDuringAReadDoesNotLetASuspectOut(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	ctx := context.Background()
	key := []byte("deleted-while-away")
	if _, err := c.nodes["n1"].Put(ctx, key, []byte("old"), 0, httpapi.Expiry{}); err != nil {
		t.Fatal(err)
	}
	c.stop(t, "n2")
	// n2 comes back as an old copy (-recover): its record is suspect. It
	// is not run, so that only this test merges its units.
	n2, err := New(Options{ID: "n2", Config: c.cfg, DataDir: c.dirs["n2"], Logger: testLogger(t), Recover: true})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if _, err := n2.store.Get(ctx, key); err != nil {
		t.Fatalf("n2's store before the merge: %v", err)
	}
	merge := func() {
		rec := n2.recovery.Load()
		for _, i := range rec.pending() {
			// The source lacks every record: the key was deleted and its
			// tombstone collected while n2 was away.
			if err := n2.dropSuspects(ctx, rec.unit(i), nil, nil); err != nil {
				t.Error(err)
			}
			if err := rec.advance(i, nil, true, true); err != nil {
				t.Error(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		read func() (found bool, err error)
	}{
		{"its own answer", func() (bool, error) {
			_, found, err := n2.local.getLocal(ctx, key)
			return found, err
		}},
		{"what repair would push", func() (bool, error) {
			_, found, suspect, err := n2.readOwn(ctx, key, keyhash.Sum(key))
			return found && !suspect, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := tc.read()
			if found || !errors.Is(err, errRecovering) && err != nil {
				t.Fatalf("before the merge: found %v, %v", found, err)
			}
		})
	}
	var merged atomic.Bool
	hook := func() {
		if !merged.Swap(true) {
			merge()
		}
	}
	testHookOwnRead.Store(&hook)
	defer testHookOwnRead.Store(nil)
	_, found, err := n2.local.getLocal(ctx, key)
	if !merged.Load() {
		t.Fatal("the hook did not run")
	}
	if found {
		t.Fatalf("a read of the suspect record that the refill merged meanwhile answered it (err %v): the deleted key is back", err)
	}
	if !errors.Is(err, errRecovering) {
		t.Errorf("the read that straddled the merge: %v, want errRecovering", err)
	}
	// The merge deleted the record.
	if _, err := n2.store.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("n2's store after the merge: %v, want not found", err)
	}
}

// TestANewClusterWithANodeDownServesAtOnce: every node of a new cluster
// starts on an empty store, as after a lost disk. With one node down, the
// others must not wait for it to judge their empty stores (a recovering
// replica's answer needs every other replica here): they find that no
// node holds any record, so they lost nothing, and serve at once.
func TestANewClusterWithANodeDownServesAtOnce(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 3, "")
	ctx := context.Background()
	c.stop(t, "n3")
	c.wipe(t, "n1")
	c.wipe(t, "n2")
	waitFor(t, "n1 and n2 to judge their empty stores new", func() bool {
		return !c.nodes["n1"].Recovering() && !c.nodes["n2"].Recovering()
	})
	if _, err := c.nodes["n1"].Get(ctx, []byte("absent")); !errors.Is(err, httpapi.ErrNotFound) {
		t.Fatalf("a read of an absent key with n3 down: %v, want not found", err)
	}
	if _, err := c.nodes["n2"].Put(ctx, []byte("k"), []byte("v"), 0, httpapi.Expiry{}); err != nil {
		t.Fatalf("a write with n3 down: %v", err)
	}
	v, err := c.nodes["n1"].Get(ctx, []byte("k"))
	if err != nil || string(v.Value) != "v" {
		t.Fatalf("read back with n3 down: %q, %v", v.Value, err)
	}
	// Now the cluster holds data: a node that loses its disk recovers.
	c.start(t, "n3")
	c.wipe(t, "n2")
	if !c.nodes["n2"].Recovering() {
		t.Fatal("n2 does not recover after losing its disk in a cluster that holds data")
	}
	waitFor(t, "n2 to judge its empty store", func() bool {
		rec := c.nodes["n2"].recovery.Load()
		return rec == nil || !rec.mayBeNew()
	})
	// Judged new, its recovery would have ended before any refill or
	// repair pass (those wait for the judgement), without k.
	if _, found := c.localRecord(t, "n2", "k"); !c.nodes["n2"].Recovering() && !found {
		t.Fatal("n2 judged its lost disk new: it stopped recovering without the cluster's data")
	}
}
