package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/takodb/tako/internal/httpapi"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/testcluster"
	"github.com/takodb/tako/internal/testcoordinator"
)

func startCluster(t *testing.T, spec testcluster.Spec) *testcluster.Cluster {
	t.Helper()
	c, err := testcluster.Start(t.TempDir(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientRetriesAnotherReplicaWhenOneIsDown(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 3, Extra: []string{"request_timeout: 500ms"}})
	c := client.New(cl.Config, client.Options{})
	defer c.Close()
	ctx := context.Background()
	for i := range 30 {
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatalf("Put k%d: %v", i, err)
		}
	}
	if err := cl.StopNode("n2"); err != nil {
		t.Fatal(err)
	}
	// Every key has n2 as a replica, and the client starts at each replica
	// in turn: a third of the requests go to n2 first and must be retried.
	start := time.Now()
	for i := range 30 {
		v, err := c.Get(ctx, []byte(fmt.Sprintf("k%d", i)))
		if err != nil || string(v.Value) != "v" {
			t.Fatalf("Get k%d with n2 down: %+v %v", i, v, err)
		}
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("w")); err != nil {
			t.Fatalf("Put k%d with n2 down: %v", i, err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("60 requests with one replica down took %v", d)
	}
}

func TestClientErrors(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2, Extra: []string{"max_value_size: 1KiB", "max_timestamp_ahead: 1m"}})
	c := client.New(cl.Config, client.Options{})
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"missing key", func() error { _, err := c.Get(ctx, []byte("nope")); return err }, client.ErrNotFound},
		{"empty key", func() error { _, err := c.Put(ctx, nil, []byte("v")); return err }, client.ErrBadRequest},
		{"key too long", func() error { _, err := c.Get(ctx, bytes.Repeat([]byte("k"), 4097)); return err }, client.ErrBadRequest},
		{"value too large", func() error { _, err := c.Put(ctx, []byte("big"), make([]byte, 2048)); return err }, client.ErrTooLarge},
		{"timestamp far ahead", func() error {
			_, err := c.PutAt(ctx, []byte("f"), []byte("v"), time.Now().Add(time.Hour).UnixMicro())
			return err
		}, client.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// A deleted key: ErrNotFound with the tombstone's version.
	c.Put(ctx, []byte("d"), []byte("v"))
	del, _ := c.Delete(ctx, []byte("d"))
	v, err := c.Get(ctx, []byte("d"))
	if !errors.Is(err, client.ErrNotFound) || !v.Deleted || v.Timestamp != del.Timestamp {
		t.Fatalf("Get deleted: %+v %v (delete at %d)", v, err, del.Timestamp)
	}
	c.Close()
	if _, err := c.Get(ctx, []byte("d")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestClientUnavailableWhenTooManyReplicasAreDown(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 3, Extra: []string{"request_timeout: 300ms"}})
	cl.StopNode("n2")
	cl.StopNode("n3")
	for _, coordinate := range []bool{false, true} {
		t.Run(fmt.Sprintf("coordinate=%v", coordinate), func(t *testing.T) {
			c := client.New(cl.Config, client.Options{Forward: !coordinate})
			defer c.Close()
			start := time.Now()
			_, err := c.Put(context.Background(), []byte("k"), []byte("v"))
			if !errors.Is(err, client.ErrUnavailable) {
				t.Fatalf("Put with 2 of 3 down: %v, want ErrUnavailable", err)
			}
			// Through a node, the error says what n1 (which coordinated)
			// answered; coordinating itself, the client names the replicas
			// that did not take the write.
			want := []string{"n1"}
			if coordinate {
				want = []string{"replica n2", "replica n3"}
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %s: %v", w, err)
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("failing Put took %v", d)
			}
		})
	}
}

// TestWriteAfterAClockAheadWins: a node whose clock runs 5 s ahead stamps a
// write 5 s in the future; a write that starts after it was acknowledged,
// through the Go client or another node's HTTP API, must still win.
func TestWriteAfterAClockAheadWins(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{
		Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2,
		ClockOffsets: map[string]time.Duration{"n1": 5 * time.Second},
	})
	c := client.New(cl.Config, client.Options{})
	defer c.Close()
	ctx := context.Background()
	for i := range 20 {
		key := []byte(fmt.Sprintf("k%d", i))
		ahead, err := cl.Node("n1").Put(ctx, key, []byte("from n1"), 0, httpapi.Expiry{})
		if err != nil || ahead.Timestamp < time.Now().Add(4*time.Second).UnixMicro() {
			t.Fatalf("write through n1 (clock 5 s ahead): %+v %v", ahead, err)
		}
		res, err := c.Put(ctx, key, []byte("later"))
		if err != nil || res.Superseded || res.Timestamp <= ahead.Timestamp {
			t.Fatalf("%s: a later write through the client: %+v %v, the clock-ahead write is at %d", key, res, err, ahead.Timestamp)
		}
		if v, err := c.Get(ctx, key); err != nil || string(v.Value) != "later" {
			t.Fatalf("%s: read %q %v, want the later write", key, v.Value, err)
		}
		// A node coordinates a write stamped by its own clock the same way.
		if _, err := cl.Node("n1").Put(ctx, key, []byte("from n1 again"), 0, httpapi.Expiry{}); err != nil {
			t.Fatal(err)
		}
		other := "n2"
		if i%2 == 0 {
			other = "n3"
		}
		nres, err := cl.Node(other).Put(ctx, key, []byte("later through "+other), 0, httpapi.Expiry{})
		if err != nil || nres.Superseded {
			t.Fatalf("%s: a later write through %s: %+v %v", key, other, nres, err)
		}
		if v, err := c.Get(ctx, key); err != nil || string(v.Value) != "later through "+other {
			t.Fatalf("%s: read %q %v, want the write through %s", key, v.Value, err, other)
		}
	}
	// A caller's own timestamp is kept: an older one still loses.
	res, err := c.PutAt(ctx, []byte("k0"), []byte("old"), time.Now().UnixMicro())
	if err != nil || !res.Superseded {
		t.Fatalf("PutAt with an older timestamp: %+v %v, want superseded", res, err)
	}
}

// TestTheClientStampsByItsWall: the writes a client stamps follow its
// Options.Wall, not the process's clock (a simulated cluster jumps each
// client's clock with it).
func TestTheClientStampsByItsWall(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2})
	c := client.New(cl.Config, client.Options{Wall: func() time.Time { return time.Now().Add(5 * time.Second) }})
	defer c.Close()
	res, err := c.Put(context.Background(), []byte("k"), []byte("v"))
	if err != nil || res.Timestamp < time.Now().Add(4*time.Second).UnixMicro() {
		t.Fatalf("a write stamped by a client whose clock runs 5 s ahead: %+v %v, want a timestamp 5 s ahead", res, err)
	}
}

// TestDialFollowsTheCoordinator: a client made by Dial starts from the
// coordinator's configuration and adopts a new one that the coordinator
// serves, as nodes do; with no coordinator answering, Dial gives up when
// its context ends, saying why.
func TestDialFollowsTheCoordinator(t *testing.T) {
	cluster, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2, Coordinator: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	coord, err := testcoordinator.Start(cluster, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{coord.Addr}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := c.Config().Active.RequestTimeout; got != 2*time.Second {
		t.Fatalf("request_timeout %v before the change, want the default 2s", got)
	}
	b, err := os.ReadFile(cluster.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "  test:\n", "  test:\n    request_timeout: 1234ms\n", 1)
	if err := coord.Reload(changed); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); c.Config().Active.RequestTimeout != 1234*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the client still follows request_timeout %v 10 s after the coordinator served 1234ms", c.Config().Active.RequestTimeout)
		}
	}
	if v, err := c.Get(ctx, []byte("k")); err != nil || string(v.Value) != "v" {
		t.Fatalf("Get after the change: %q %v", v.Value, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	if _, err := client.Dial(short, []string{"127.0.0.1:1"}, client.Options{}); err == nil || !strings.Contains(err.Error(), "no configuration from the coordinators") {
		t.Errorf("Dial with no coordinator answering: %v, want an error saying so", err)
	}
}

// TestDialStartsFromItsCache: a client made by Dial with a CacheDir starts
// from the configuration cached there when no coordinator answers (as
// nodes do), and serves with it; without a CacheDir it needs a
// coordinator.
func TestDialStartsFromItsCache(t *testing.T) {
	cluster, err := testcluster.Start(t.TempDir(), testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2, Coordinator: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	coord, err := testcoordinator.Start(cluster, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cache := t.TempDir()
	c, err := client.Dial(ctx, []string{coord.Addr}, client.Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("cached")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	coord.Close()

	c, err = client.Dial(ctx, []string{coord.Addr}, client.Options{CacheDir: cache})
	if err != nil {
		t.Fatalf("Dial with the coordinator down and a cache: %v", err)
	}
	defer c.Close()
	if v, err := c.Get(ctx, []byte("k")); err != nil || string(v.Value) != "cached" {
		t.Fatalf("Get through a client started from its cache: %q %v", v.Value, err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	if _, err := client.Dial(short, []string{coord.Addr}, client.Options{}); err == nil {
		t.Error("Dial with the coordinator down and no cache succeeded")
	}
}
