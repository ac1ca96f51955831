package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/testcluster"
)

// freezer relays TCP connections to a node until frozen: then it takes
// bytes and passes none on, like a paused host.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
	wg     sync.WaitGroup
}

func newFreezer(t *testing.T, target string) *freezer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	f.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			relay := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if !f.frozen.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
				}
			}
			f.wg.Go(func() { relay(out, in) })
			f.wg.Go(func() { relay(in, out) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// TestAForwardingClientNeverProbesAFrozenNodeWithAWrite: a client that
// sends each request to a node that coordinates it (the default) meets a
// frozen node once, marks it down, and then probes it with a background
// ping, never with a write: a write sent to a frozen node has an unknown
// fate (it may be carried out late), so at most the first write answers
// "may or may not have been applied".
func TestAForwardingClientNeverProbesAFrozenNodeWithAWrite(t *testing.T) {
	cl := startCluster(t, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 3, Extra: []string{"request_timeout: 200ms"}})
	n3, _, _ := cl.Config.Node("n3")
	f := newFreezer(t, n3.BinaryAddr())
	_, port, _ := net.SplitHostPort(f.ln.Addr().String())
	var yaml strings.Builder
	raw, err := io.ReadAll(mustOpen(t, cl.ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	yaml.WriteString(strings.Replace(string(raw), fmt.Sprintf("%d]", n3.BinaryPort), port+"]", 1))
	cfg, err := config.Parse([]byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	if nd, _, _ := cfg.Node("n3"); nd.BinaryAddr() != f.ln.Addr().String() {
		t.Fatalf("n3 is at %s in the client's configuration, want the freezer's %s", nd.BinaryAddr(), f.ln.Addr())
	}
	c := client.New(cfg, client.Options{Timeout: 300 * time.Millisecond, Forward: true})
	defer c.Close()
	ctx := context.Background()
	for i := range 10 { // connections to every node, through the freezer to n3
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("warm%d", i)), []byte("v")); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}
	f.frozen.Store(true)
	unknown := 0
	deadline := time.Now().Add(3 * time.Second) // past several probe backoffs
	for i := 0; time.Now().Before(deadline); i++ {
		_, err := c.Put(ctx, []byte(fmt.Sprintf("frozen%d", i)), []byte("v"))
		switch {
		case err == nil:
		case errors.Is(err, client.ErrUnavailable) && strings.Contains(err.Error(), "may or may not have been applied"):
			unknown++
		default:
			t.Fatalf("Put with n3 frozen: %v", err)
		}
	}
	if unknown > 1 {
		t.Errorf("%d writes met the frozen node and answered that their fate is unknown; want at most the first", unknown)
	}
}

func mustOpen(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
