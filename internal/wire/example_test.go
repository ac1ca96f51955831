package wire_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/takodb/tako/internal/wire"
)

// A server whose handler keeps one key in memory, and a pool that calls it.
func Example() {
	var h wire.HandlerFunc = func(ctx context.Context, req *wire.Request) *wire.Response {
		switch {
		case string(req.Key) != "greeting":
			return &wire.Response{Err: &wire.Error{Code: wire.CodeUnavailable, Message: "no replica answered"}}
		case req.Op == wire.OpGet:
			return &wire.Response{Found: true, Record: wire.Record{Timestamp: 1700000000000000, Value: []byte("hello, world")}}
		default:
			return &wire.Response{Outcome: wire.OutcomeWritten, Current: req.Record}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := wire.NewServer(wire.ServerOptions{Handler: h})
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	pool := wire.NewPool(wire.DialOptions{})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addr := ln.Addr().String()

	resp, err := pool.Call(ctx, addr, &wire.Request{Op: wire.OpGet, Key: []byte("greeting")})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s at %d\n", resp.Record.Value, resp.Record.Timestamp)

	resp, err = pool.Call(ctx, addr, &wire.Request{Op: wire.OpBatch, Batch: []wire.Request{
		{Op: wire.OpPut, Key: []byte("greeting"), Record: wire.Record{Value: []byte("hi")}},
		{Op: wire.OpGet, Key: []byte("other")},
	}})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Batch[0].Outcome, errors.Is(resp.Batch[1].Err, wire.ErrUnavailable))

	_, err = pool.Call(ctx, addr, &wire.Request{Op: wire.OpGet, Key: []byte("other")})
	fmt.Println(err)
	// Output:
	// hello, world at 1700000000000000
	// written true
	// wire: unavailable: no replica answered
}

// Anti-entropy between two replicas: compare digests of ranges of the hash
// space, then list the records of a range whose digests differ. A peer that
// predates OpDigest answers ErrUnknownOp.
func Example_antiEntropy() {
	// A replica holding two records in the upper half of the hash space.
	var h wire.HandlerFunc = func(ctx context.Context, req *wire.Request) *wire.Response {
		upper := wire.HashRange{Lo: 0x80000000, Hi: 0xffffffff}
		switch req.Op {
		case wire.OpDigest:
			resp := &wire.Response{Digests: make([]wire.RangeDigest, len(req.Ranges))}
			for i, r := range req.Ranges {
				if r == upper {
					resp.Digests[i] = wire.RangeDigest{XOR: 0x0f ^ 0xf0, Count: 2}
				}
			}
			return resp
		case wire.OpRangeSummary:
			entries := []wire.SummaryEntry{
				{Key: []byte("b"), Fingerprint: 0x0f, Timestamp: 10},
				{Key: []byte("a"), Fingerprint: 0xf0, Timestamp: 20},
			}
			if req.Ranges[0] != upper {
				entries = nil
			}
			n := min(len(entries), int(req.Limit))
			return &wire.Response{Entries: entries[:n], Truncated: n < len(entries)}
		}
		return &wire.Response{Err: &wire.Error{Code: wire.CodeUnknownOp, Message: "not served here"}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := wire.NewServer(wire.ServerOptions{Handler: h})
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	pool := wire.NewPool(wire.DialOptions{})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addr := ln.Addr().String()

	halves := []wire.HashRange{{Lo: 0, Hi: 0x7fffffff}, {Lo: 0x80000000, Hi: 0xffffffff}}
	resp, err := pool.Call(ctx, addr, &wire.Request{Op: wire.OpDigest, Ranges: halves})
	if errors.Is(err, wire.ErrUnknownOp) {
		fmt.Println("the peer predates anti-entropy")
		return
	} else if err != nil {
		panic(err)
	}
	fmt.Println(resp.Digests) // ours would be {0 0} twice: the upper half differs

	resp, err = pool.Call(ctx, addr, &wire.Request{Op: wire.OpRangeSummary, Ranges: halves[1:], Limit: 1})
	if err != nil {
		panic(err)
	}
	for _, e := range resp.Entries {
		fmt.Printf("%s %#x %d\n", e.Key, e.Fingerprint, e.Timestamp)
	}
	fmt.Println("truncated:", resp.Truncated)
	// Output:
	// [{0 0} {255 2}]
	// b 0xf 10
	// truncated: true
}
