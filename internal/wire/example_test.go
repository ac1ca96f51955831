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
