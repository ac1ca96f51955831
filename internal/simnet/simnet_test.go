package simnet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/node"
	"github.com/takodb/tako/internal/simnet"
)

// TestCutBreaksConnectionsAndRefusesNewOnesUntilHealed: bytes flow over a
// connection; cutting the link breaks it in both directions and refuses a
// new dial; healing lets one through again; other links are untouched.
func TestCutBreaksConnectionsAndRefusesNewOnesUntilHealed(t *testing.T) {
	n := simnet.New()
	ln, err := n.Host("server").Listen("server:1")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := n.Host("other").Listen("server:1"); err == nil {
		t.Fatal("a second listener on the same address")
	}
	go func() { // echo every connection
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(c, c)
		}
	}()
	ctx := context.Background()
	a, err := n.Host("a").Dial(ctx, "server:1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.Host("b").Dial(ctx, "server:1")
	if err != nil {
		t.Fatal(err)
	}
	echo := func(c io.ReadWriter) error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := echo(a); err != nil {
		t.Fatalf("echo over a: %v", err)
	}
	n.Cut("server", "a")
	if err := echo(a); err == nil {
		t.Fatal("a's connection still works after its link was cut")
	}
	if _, err := n.Host("a").Dial(ctx, "server:1"); !errors.Is(err, simnet.ErrUnreachable) {
		t.Fatalf("dial across a cut link: %v, want ErrUnreachable", err)
	}
	if err := echo(b); err != nil {
		t.Fatalf("b's connection broke with a's link: %v", err)
	}
	n.Heal("a", "server")
	a2, err := n.Host("a").Dial(ctx, "server:1")
	if err != nil {
		t.Fatalf("dial after Heal: %v", err)
	}
	if err := echo(a2); err != nil {
		t.Fatalf("echo after Heal: %v", err)
	}
	if _, err := n.Host("a").Dial(ctx, "nobody:1"); !errors.Is(err, simnet.ErrUnreachable) {
		t.Fatalf("dial to no listener: %v, want ErrUnreachable", err)
	}
}

// TestAClusterInOneProcess: three real nodes (Pebble on disk, the wire
// protocol, coordination, read repair) and the coordinating Go client,
// in one process over a simnet: writes and reads go on with a node cut off
// (quorum 2 of 3), and once the link heals, reading repairs the node that
// missed the writes.
func TestAClusterInOneProcess(t *testing.T) {
	cfg, err := config.Parse([]byte(`
active_deployment: sim
deployments:
  sim:
    request_timeout: 300ms
    hash: {buckets_per_key: 3}
    buckets:
      b1: {n1: [n1, 1]}
      b2: {n2: [n2, 1]}
      b3: {n3: [n3, 1]}
`))
	if err != nil {
		t.Fatal(err)
	}
	network := simnet.New()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	nodes := map[string]*node.Node{}
	for _, id := range []string{"n1", "n2", "n3"} {
		nd, err := node.New(node.Options{ID: id, Config: cfg, DataDir: t.TempDir(), NoSync: true,
			Logger: slog.New(slog.DiscardHandler), Network: network.Host(id)})
		if err != nil {
			t.Fatal(err)
		}
		nodes[id] = nd
		wg.Go(func() {
			if err := nd.Run(ctx); err != nil {
				t.Errorf("node %s: %v", id, err)
			}
		})
	}
	// Every node starts on a new store and asks the others whether the
	// cluster holds data; none does, so none recovers. (A node that asked
	// only after the first write would recover like a lost disk, and with
	// n3 cut off below could not answer for the keys it shares with it.)
	for deadline := time.Now().Add(10 * time.Second); nodes["n1"].Recovering() || nodes["n2"].Recovering() || nodes["n3"].Recovering(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the nodes of the new cluster still recover after 10 s")
		}
	}
	c := client.New(cfg, client.Options{Dial: network.Host("client").Dial})
	defer c.Close()
	call := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			err := f(cctx)
			ccancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	call("first put (the nodes are starting)", func(ctx context.Context) error {
		_, err := c.Put(ctx, []byte("k0"), []byte("v0"))
		return err
	})

	for _, peer := range []string{"n1", "n2", "client"} {
		network.Cut("n3", peer)
	}
	for i := 1; i <= 5; i++ {
		key, value := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if _, err := c.Put(ctx, []byte(key), []byte(value)); err != nil {
			t.Fatalf("put %s with n3 cut off: %v", key, err)
		}
		v, err := c.Get(ctx, []byte(key))
		if err != nil || string(v.Value) != value {
			t.Fatalf("get %s with n3 cut off: %q %v", key, v.Value, err)
		}
	}
	where, err := c.Where(ctx, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if r := where.Deployments[0].Buckets; len(r) != 3 {
		t.Fatalf("where k1: %+v", where)
	}
	for _, b := range where.Deployments[0].Buckets {
		r := b.Replicas[0]
		if (r.NodeID == "n3") != (r.Err != nil) {
			t.Errorf("where k1, %s with n3 cut off: %+v", r.NodeID, r)
		}
	}

	for _, peer := range []string{"n1", "n2", "client"} {
		network.Heal("n3", peer)
	}
	// A read asks n3 too; read repair writes k1 back to it.
	call("n3 holds k1 after a read repaired it", func(ctx context.Context) error {
		if _, err := c.Get(ctx, []byte("k1")); err != nil {
			return err
		}
		w, err := c.Where(ctx, []byte("k1"))
		if err != nil {
			return err
		}
		for _, b := range w.Deployments[0].Buckets {
			if r := b.Replicas[0]; !r.Found {
				return fmt.Errorf("%s does not hold k1 (err %v)", r.NodeID, r.Err)
			}
		}
		return nil
	})
}

// TestAOneWayCutHoldsOneDirectionAndASlowLinkDelays: with the link from
// client to server cut one way, the client's writes are held until their
// deadline while the server's still arrive, and no new connection opens;
// healed, both flow. A slow link delays each write by its delay.
func TestAOneWayCutHoldsOneDirectionAndASlowLinkDelays(t *testing.T) {
	n := simnet.New()
	ln, err := n.Host("server").Listen("server:1")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx := context.Background()
	cc, err := n.Host("client").Dial(ctx, "server:1")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc := <-accepted
	defer sc.Close()

	n.CutOneWay("client", "server")
	cc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := cc.Write([]byte("ping")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write across the one-way cut: %v, want the deadline exceeded", err)
	}
	go sc.Write([]byte("pong"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("the other direction: %q, %v", buf, err)
	}
	if _, err := n.Host("client").Dial(ctx, "server:1"); !errors.Is(err, simnet.ErrUnreachable) {
		t.Fatalf("a new connection across a one-way cut: %v, want refused", err)
	}

	n.Heal("server", "client")
	cc.SetWriteDeadline(time.Time{})
	go cc.Write([]byte("ping"))
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("healed: %q, %v", buf, err)
	}

	n.SetDelay("server", "client", 30*time.Millisecond)
	start := time.Now()
	go cc.Write([]byte("slow"))
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "slow" {
		t.Fatalf("a slow link: %q, %v", buf, err)
	}
	if took := time.Since(start); took < 30*time.Millisecond {
		t.Fatalf("a write over a link slowed by 30 ms took %v", took)
	}
}
