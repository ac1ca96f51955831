package wire

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testLogger sends logs to t.Log, and keeps them for assertions.
type testLogger struct {
	t  testing.TB
	mu sync.Mutex // guards buf
	b  bytes.Buffer
}

func (l *testLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *testLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLogger) {
	tl := &testLogger{t: t}
	return slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelDebug})), tl
}

// echoHandler answers a Get of KEY with the record (len(KEY), KEY), a Put
// with Written and the record, after a random delay of up to maxDelay, so
// that answers overtake each other. A key starting with "fail" gets
// CodeUnavailable; "hang" waits for ctx.
type echoHandler struct {
	maxDelay time.Duration
	calls    atomic.Int64
}

func (h *echoHandler) Handle(ctx context.Context, req *Request) *Response {
	h.calls.Add(1)
	if h.maxDelay > 0 {
		time.Sleep(rand.N(h.maxDelay))
	}
	switch {
	case bytes.HasPrefix(req.Key, []byte("fail")):
		return &Response{Err: &Error{Code: CodeUnavailable, Message: "no replica for " + string(req.Key)}}
	case bytes.HasPrefix(req.Key, []byte("hang")):
		<-ctx.Done()
		return ResponseForError(ctx.Err())
	}
	switch req.Op {
	case OpGet, OpReplicaGet:
		return &Response{Found: true, Record: Record{Timestamp: int64(len(req.Key)), Value: req.Key}}
	case OpPut, OpReplicaPut:
		return &Response{Outcome: OutcomeWritten, Current: req.Record}
	}
	return &Response{Err: &Error{Code: CodeInternal, Message: "unexpected " + req.Op.String()}}
}

type testServer struct {
	srv     *Server
	addr    string
	served  chan error // Serve's result
	logs    *testLogger
	stopped bool
}

// startServer serves opts (with a test logger) on a free loopback port, or
// on addr when not empty, and shuts it down at the end of the test.
func startServer(t testing.TB, addr string, opts ServerOptions) *testServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), served: make(chan error, 1)}
	if opts.Logger == nil {
		opts.Logger, ts.logs = newTestLogger(t)
	}
	ts.srv = NewServer(opts)
	go func() { ts.served <- ts.srv.Serve(ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down and checks that Serve returned ErrServerClosed.
func (ts *testServer) stop(t testing.TB) {
	t.Helper()
	if ts.stopped {
		return
	}
	ts.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve returned %v, want ErrServerClosed", err)
	}
}

func dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), addr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkEcho checks that resp answers req as echoHandler does.
func checkEcho(req *Request, resp *Response) error {
	switch req.Op {
	case OpGet, OpReplicaGet:
		if resp.Op != OpRecordResponse || !resp.Found || !bytes.Equal(resp.Record.Value, req.Key) || resp.Record.Timestamp != int64(len(req.Key)) {
			return fmt.Errorf("%v %q answered %+v", req.Op, req.Key, resp)
		}
	case OpPut, OpReplicaPut:
		if resp.Op != OpPutResponse || resp.Outcome != OutcomeWritten || !bytes.Equal(resp.Current.Value, req.Record.Value) || resp.Current.Timestamp != req.Record.Timestamp {
			return fmt.Errorf("%v %q answered %+v", req.Op, req.Key, resp)
		}
	case OpPing:
		if resp.Op != OpPong {
			return fmt.Errorf("ping answered %+v", resp)
		}
	}
	return nil
}

// TestPipelinedCallsOneConn runs 64 goroutines × 200 calls over one
// connection, with handler delays that answer out of order: every answer
// must match its request.
func TestPipelinedCallsOneConn(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{maxDelay: 2 * time.Millisecond}})
	c := dial(t, ts.addr)
	ctx := ctxTimeout(t, 30*time.Second)

	const goroutines, calls = 64, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				key := fmt.Appendf(nil, "g%d-i%d", g, i)
				var req Request
				switch i % 3 {
				case 0:
					req = Request{Op: OpGet, Key: key}
				case 1:
					req = Request{Op: OpReplicaPut, Key: key, Record: Record{Timestamp: int64(g*calls + i), Value: bytes.Repeat(key, i%7)}}
				default:
					req = Request{Op: OpPing}
				}
				resp, err := c.Call(ctx, &req)
				if err == nil {
					err = checkEcho(&req, resp)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBatchCall(t *testing.T) {
	h := &echoHandler{maxDelay: time.Millisecond}
	ts := startServer(t, "", ServerOptions{Handler: h})
	c := dial(t, ts.addr)
	req := &Request{Op: OpBatch}
	for i := range 100 {
		key := fmt.Appendf(nil, "key-%d", i)
		switch i % 4 {
		case 0:
			req.Batch = append(req.Batch, Request{Op: OpGet, Key: key})
		case 1:
			req.Batch = append(req.Batch, Request{Op: OpPut, Key: key, Record: Record{Timestamp: int64(i), Value: key}})
		case 2:
			req.Batch = append(req.Batch, Request{Op: OpPing})
		case 3:
			req.Batch = append(req.Batch, Request{Op: OpReplicaGet, Key: fmt.Appendf(nil, "fail-%d", i)})
		}
	}
	resp, err := c.Call(ctxTimeout(t, 5*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Op != OpBatchResponse || len(resp.Batch) != len(req.Batch) {
		t.Fatalf("got a %v of %d items for a batch of %d", resp.Op, len(resp.Batch), len(req.Batch))
	}
	for i := range req.Batch {
		sub, r := &req.Batch[i], &resp.Batch[i]
		if i%4 == 3 {
			if r.Op != OpErrorResponse || !errors.Is(r.Err, ErrUnavailable) || !strings.Contains(r.Err.Message, string(sub.Key)) {
				t.Errorf("item %d: got %+v, want its unavailable error", i, r)
			}
			continue
		}
		if err := checkEcho(sub, r); err != nil {
			t.Errorf("item %d: %v", i, err)
		}
	}
	if got := h.calls.Load(); got != 75 {
		t.Errorf("handler called %d times, want 75 (pings are the server's)", got)
	}

	resp, err = c.Call(ctxTimeout(t, 5*time.Second), &Request{Op: OpBatch})
	if err != nil || resp.Op != OpBatchResponse || len(resp.Batch) != 0 {
		t.Errorf("empty batch: got %+v, %v", resp, err)
	}
}

func TestCallErrors(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c := dial(t, ts.addr)
	ctx := ctxTimeout(t, 5*time.Second)

	_, err := c.Call(ctx, &Request{Op: OpGet, Key: []byte("fail-x")})
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUnavailable || e.Message != "no replica for fail-x" {
		t.Errorf("error response: got %v", err)
	}
	// Refused before sending.
	big := &Request{Op: OpPut, Key: []byte("k"), Record: Record{Value: make([]byte, DefaultMaxFrameSize)}}
	if _, err := c.Call(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized request: got %v, want ErrTooLarge", err)
	}
	if _, err := c.Call(ctx, &Request{Op: OpGet}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("empty key: got %v, want ErrBadRequest", err)
	}
	if _, err := c.Call(ctx, &Request{Op: 0x42}); !errors.Is(err, ErrUnknownOp) {
		t.Errorf("unknown op: got %v, want ErrUnknownOp", err)
	}
	// The connection is fine after all that.
	if _, err := c.Call(ctx, &Request{Op: OpPing}); err != nil || c.Err() != nil {
		t.Errorf("ping after errors: %v, Err() = %v", err, c.Err())
	}
}

func TestCallHonoursDeadline(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c := dial(t, ts.addr)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, &Request{Op: OpGet, Key: []byte("hang")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the call returned after %v, its deadline was 50ms", d)
	}
	// The connection still works, while the hanging handler runs on.
	resp, err := c.Call(ctxTimeout(t, 5*time.Second), &Request{Op: OpGet, Key: []byte("x")})
	if err == nil {
		err = checkEcho(&Request{Op: OpGet, Key: []byte("x")}, resp)
	}
	if err != nil {
		t.Error(err)
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c, err := Dial(context.Background(), ts.addr, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Call(context.Background(), &Request{Op: OpGet, Key: []byte("hang")})
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the calls go out
	c.Close()
	for range n {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("pending call got %v, want ErrClosed", err)
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Call(context.Background(), &Request{Op: OpPing}); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: got %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", c.Err())
	}
}

// TestHostilePeers sends what a Tako server must survive; each such
// connection is closed, the log names the peer and the bytes, and a normal
// client keeps working throughout.
func TestHostilePeers(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, HandshakeTimeout: 500 * time.Millisecond})
	good := dial(t, ts.addr)
	hello := appendHello(nil, ProtocolVersion, 0)
	getFrame := encodeRequest(1, &Request{Op: OpGet, Key: []byte("key")})

	tests := []struct {
		name  string
		send  []byte
		half  bool   // close the write side after sending
		reply []byte // the start of what the server answers before it closes
		code  ErrorCode
		log   string // in the server's log
	}{
		{name: "http", send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), log: "looks like HTTP"},
		{name: "garbage", send: []byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"), log: "bytes=0001020304050607"},
		{name: "short handshake", send: []byte("TAK"), half: true, log: "handshake cut after 3"},
		{name: "silent", send: nil, log: "connection closed before its handshake"},
		{name: "version 0", send: appendHello(nil, 0, 0), reply: hello, code: CodeBadRequest, log: "protocol version 0 is not supported"},
		{name: "truncated frame", send: cat(hello, getFrame[:len(getFrame)-2]), half: true, reply: hello, code: CodeBadRequest, log: "stream ended after"},
		{name: "frame too large", send: cat(hello, u32(DefaultMaxFrameSize+1), []byte{byte(OpPut)}, u64(1)), reply: hello, code: CodeBadRequest, log: "exceeds MaxFrameSize"},
		{name: "key too long", send: cat(hello, rawFrame(OpGet, 1, cat(u16(MaxKeySize+1), maxKey, []byte("x")))), reply: hello, code: CodeBadRequest, log: "exceeds MaxKeySize"},
		{name: "request id 0", send: cat(hello, encodeRequest(0, &Request{Op: OpPing})), reply: hello, code: CodeBadRequest, log: "request id 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			peer := nc.LocalAddr().String()
			if _, err := nc.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			if tt.half {
				nc.(*net.TCPConn).CloseWrite()
			}
			nc.SetReadDeadline(time.Now().Add(3 * time.Second))
			got, err := io.ReadAll(nc)
			if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("the server did not close the connection: %v", err)
			}
			if !bytes.HasPrefix(got, tt.reply) {
				t.Errorf("answer [% x], want it to start with [% x]", got, tt.reply)
			}
			if tt.code != 0 {
				f, err := readFrame(got[len(tt.reply):], DefaultMaxFrameSize)
				if err != nil {
					t.Fatalf("no error frame before closing: %v", err)
				}
				resp, err := decodeResponse(f.op, f.body)
				if err != nil || f.id != 0 || resp.Err == nil || resp.Err.Code != tt.code {
					t.Errorf("error frame: id %d, %+v, %v; want id 0 and code %v", f.id, resp, err, tt.code)
				} else {
					t.Logf("the server said: %v", resp.Err)
				}
			}
			// The log names the peer and says what was wrong.
			waitFor(t, func() bool {
				logs := ts.logs.String()
				return strings.Contains(logs, peer) && strings.Contains(logs, tt.log)
			}, "log with peer %s and %q", peer, tt.log)

			resp, err := good.Call(ctxTimeout(t, 5*time.Second), &Request{Op: OpGet, Key: []byte("still")})
			if err == nil {
				err = checkEcho(&Request{Op: OpGet, Key: []byte("still")}, resp)
			}
			if err != nil {
				t.Errorf("the normal client failed: %v", err)
			}
		})
	}
	// http, garbage, short handshake and version 0 failed the handshake;
	// the four after broke the protocol; the silent one is not counted.
	waitFor(t, func() bool { st := ts.srv.Stats(); return st.HandshakeFailures == 4 && st.ProtocolErrors == 4 },
		"stats counting 4 handshake failures and 4 protocol errors, got %+v", ts.srv.Stats())
}

// TestWriteTimeoutClosesAStalledPeer: a peer that sends requests and never
// reads the answers loses its connection after WriteTimeout, and the
// server counts it (Stats.WriteTimeouts) and its throttling.
func TestWriteTimeoutClosesAStalledPeer(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 1<<20)
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		time.Sleep(time.Millisecond) // long enough for the reader to fill the 8 slots
		return &Response{Found: true, Record: Record{Timestamp: 1, Value: big}}
	}
	ts := startServer(t, "", ServerOptions{Handler: h, WriteTimeout: 200 * time.Millisecond, MaxInFlightPerConn: 8})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// 64 answers of 1 MiB: far more than the sockets' buffers hold.
	stream := appendHello(nil, ProtocolVersion, 0)
	for id := uint64(1); id <= 64; id++ {
		stream = append(stream, encodeRequest(id, &Request{Op: OpGet, Key: []byte("k")})...)
	}
	if _, err := nc.Write(stream); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ts.srv.Stats().WriteTimeouts == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := ts.srv.Stats()
	if st.WriteTimeouts != 1 {
		t.Errorf("stats %+v: want 1 write timeout", st)
	}
	if st.Throttled == 0 {
		t.Errorf("stats %+v: no throttling counted, though the peer had 64 requests under way", st)
	}
	if !strings.Contains(ts.logs.String(), "took none of its answers") {
		t.Errorf("the server did not log the write timeout:\n%s", ts.logs)
	}
}

func waitFor(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawConn is a hand-driven client connection after the handshake.
func rawConn(t *testing.T, addr string) (net.Conn, *frameReader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := clientHandshake(nc); err != nil {
		t.Fatal(err)
	}
	return nc, newFrameReader(nc, DefaultMaxFrameSize)
}

// TestUnknownOpAnswered shows that an op from a newer version gets
// CodeUnknownOp, alone or in a batch, and the connection goes on.
func TestUnknownOpAnswered(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	nc, fr := rawConn(t, ts.addr)
	batch := cat(u16(2), u32(3), []byte{0x42, 1, 2}, u32(1), []byte{byte(OpPing)})
	nc.Write(cat(rawFrame(0x42, 1, []byte("future body")), rawFrame(OpBatch, 2, batch), encodeRequest(3, &Request{Op: OpPing})))
	got := map[uint64]Response{}
	for range 3 {
		f, err := fr.next()
		if err != nil {
			t.Fatal(err)
		}
		if got[f.id], err = decodeResponse(f.op, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if r := got[1]; !errors.Is(r.Err, ErrUnknownOp) {
		t.Errorf("unknown op: got %+v", r)
	}
	if r := got[2]; len(r.Batch) != 2 || !errors.Is(r.Batch[0].Err, ErrUnknownOp) || r.Batch[1].Op != OpPong {
		t.Errorf("batch with an unknown op: got %+v", r)
	}
	if r := got[3]; r.Op != OpPong {
		t.Errorf("ping after: got %+v", r)
	}
}

// TestNewerClientVersion shows the negotiation: a client offering version 2
// is answered version 1, and the connection speaks version 1.
func TestNewerClientVersion(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(cat(appendHello(nil, 2, 0x8000), encodeRequest(1, &Request{Op: OpPing})))
	var h [helloSize]byte
	if _, err := io.ReadFull(nc, h[:]); err != nil {
		t.Fatal(err)
	}
	if v, flags, err := parseHello(h[:]); err != nil || v != 1 || flags != 0 {
		t.Fatalf("answered version %d flags %#x (%v), want 1 and 0", v, flags, err)
	}
	f, err := newFrameReader(nc, DefaultMaxFrameSize).next()
	if err != nil || f.op != OpPong || f.id != 1 {
		t.Fatalf("got %+v, %v, want a Pong", f, err)
	}
}

func TestHandlerMistakes(t *testing.T) {
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		switch string(req.Key) {
		case "panic":
			panic("boom")
		case "nil":
			return nil
		case "wrong op":
			return &Response{Op: OpPong}
		case "no outcome":
			return &Response{}
		case "huge":
			return &Response{Found: true, Record: Record{Value: make([]byte, MinFrameSize)}}
		}
		return &Response{Op: OpRecordResponse}
	}
	ts := startServer(t, "", ServerOptions{Handler: h, MaxFrameSize: MinFrameSize})
	c, err := Dial(context.Background(), ts.addr, DialOptions{MaxFrameSize: MinFrameSize})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tt := range []struct {
		key, op string
		want    *Error
	}{
		{"panic", "Get", ErrInternal},
		{"nil", "Get", ErrInternal},
		{"wrong op", "Get", ErrInternal},
		{"no outcome", "Put", ErrInternal},
		{"huge", "Get", ErrTooLarge},
	} {
		op := OpGet
		if tt.op == "Put" {
			op = OpPut
		}
		_, err := c.Call(ctxTimeout(t, 5*time.Second), &Request{Op: op, Key: []byte(tt.key)})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.key, err, tt.want)
		}
	}
	if !strings.Contains(ts.logs.String(), "handler panicked") {
		t.Errorf("the panic was not logged")
	}
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), &Request{Op: OpGet, Key: []byte("fine")}); err != nil {
		t.Errorf("after the mistakes: %v", err)
	}
}

func TestBackpressure(t *testing.T) {
	var now, peak atomic.Int64
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		return &Response{Found: false}
	}
	ts := startServer(t, "", ServerOptions{Handler: h, MaxInFlightPerConn: 3})
	c := dial(t, ts.addr)
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			req := &Request{Op: OpBatch, Batch: []Request{{Op: OpGet, Key: []byte("a")}, {Op: OpGet, Key: []byte("b")}}}
			if _, err := c.Call(ctxTimeout(t, 10*time.Second), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak of %d requests in the handler, want 2 or 3 (MaxInFlightPerConn 3)", p)
	}
	if ts.srv.Stats().Throttled == 0 {
		t.Error("Stats().Throttled = 0: the waits for a slot were not counted")
	}
}

// TestShutdownWithCallsInFlight: the calls in flight complete, new ones are
// refused, then Serve returns ErrServerClosed.
func TestShutdownWithCallsInFlight(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int64
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		entered.Add(1)
		<-release
		return &Response{Found: true, Record: Record{Timestamp: 1, Value: req.Key}}
	}
	ts := startServer(t, "", ServerOptions{Handler: h})
	c := dial(t, ts.addr)

	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			req := &Request{Op: OpGet, Key: fmt.Appendf(nil, "k%d", i)}
			resp, err := c.Call(ctxTimeout(t, 10*time.Second), req)
			if err == nil && !bytes.Equal(resp.Record.Value, req.Key) {
				err = fmt.Errorf("got %+v for %q", resp, req.Key)
			}
			errs <- err
		}()
	}
	waitFor(t, func() bool { return entered.Load() == n }, "%d calls in the handler", n)

	shutdown := make(chan error, 1)
	go func() { shutdown <- ts.srv.Shutdown(ctxTimeout(t, 10*time.Second)) }()

	// The client learns of the shutdown and takes no new calls.
	waitFor(t, func() bool { return errors.Is(c.Err(), ErrShuttingDown) }, "the client to see the shutdown")
	if _, err := c.Call(ctxTimeout(t, time.Second), &Request{Op: OpPing}); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("new call during shutdown: got %v, want ErrShuttingDown", err)
	}
	// New connections are refused.
	if _, err := Dial(context.Background(), ts.addr, DialOptions{Timeout: 500 * time.Millisecond}); err == nil {
		t.Errorf("dialled a server that is shutting down")
	}
	select {
	case err := <-ts.served:
		t.Fatalf("Serve returned %v with calls in flight", err)
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with calls in flight", err)
	case <-time.After(50 * time.Millisecond):
	}

	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("call in flight: %v", err)
		}
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-ts.served:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	ts.stopped = true
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := ts.srv.Serve(mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func mustListen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestShutdownGivesUp: with a handler that waits for its ctx, Shutdown's
// deadline cancels it, closes the connection and returns the ctx's error.
func TestShutdownGivesUp(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c := dial(t, ts.addr)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), &Request{Op: OpGet, Key: []byte("hang")})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want DeadlineExceeded", err)
	}
	ts.stopped = true
	if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("the hanging call got %v, want ErrClosed", err)
	}
}

func TestPoolRedialsAfterRestart(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	addr := ts.addr
	p := NewPool(DialOptions{Timeout: time.Second})
	defer p.Close()
	ctx := ctxTimeout(t, 20*time.Second)
	ping := &Request{Op: OpPing}

	var wg sync.WaitGroup
	for range 20 { // concurrent first calls share one dial
		wg.Go(func() {
			if _, err := p.Call(ctx, addr, ping); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := p.dials.Load(); d != 1 {
		t.Errorf("%d dials for 20 concurrent calls, want 1", d)
	}

	ts.stop(t)
	// The old connection is gone; the next call dials, fails, and puts the
	// address in backoff.
	var err error
	for i := 0; i < 3 && !errors.Is(err, ErrUnreachable); i++ {
		_, err = p.Call(ctx, addr, ping)
	}
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("calls to a stopped server: got %v, want ErrUnreachable", err)
	}
	dials := p.dials.Load()
	start := time.Now()
	_, err = p.Call(ctx, addr, ping)
	if d := time.Since(start); !errors.Is(err, ErrUnreachable) || d > 10*time.Millisecond {
		t.Errorf("call in backoff: %v after %v, want ErrUnreachable in < 10ms", err, d)
	}
	if p.dials.Load() != dials {
		t.Errorf("a call in backoff dialled")
	}
	t.Logf("in backoff: %v", err)
	// CallNow dials once, in backoff or not, and does not loop.
	if _, err := p.CallNow(ctx, addr, ping); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("CallNow to a stopped server: %v, want the dial's error", err)
	}
	if d := p.dials.Load() - dials; d != 1 {
		t.Errorf("CallNow dialled %d times, want 1", d)
	}

	startServer(t, addr, ServerOptions{Handler: &echoHandler{}})
	// The restarted server is reached at once by CallNow, though the
	// address is in backoff after the failed dial.
	if _, err := p.CallNow(ctx, addr, ping); err != nil {
		t.Fatalf("CallNow to the restarted server: %v", err)
	}
	if _, err := p.Call(ctx, addr, ping); err != nil {
		t.Fatalf("Call after CallNow reconnected: %v", err)
	}
}

func TestCallPatientlyWaitsForAServerThatIsStarting(t *testing.T) {
	// An address nothing listens on yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := NewPool(DialOptions{Timeout: time.Second})
	defer p.Close()
	ping := &Request{Op: OpPing}

	// Not patient: one dial, its error.
	if _, err := p.CallPatiently(ctxTimeout(t, 5*time.Second), addr, ping, time.Millisecond, func() bool { return false }); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("impatient call to nothing: %v, want ErrUnreachable", err)
	}
	// Patient until ctx ends: the last dial's error, after ctx's time.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	_, err = p.CallPatiently(ctx, addr, ping, 10*time.Millisecond, func() bool { return true })
	cancel()
	if d := time.Since(start); !errors.Is(err, ErrUnreachable) || d < 90*time.Millisecond {
		t.Fatalf("patient call to nothing: %v after %v, want ErrUnreachable after ctx's 100ms", err, d)
	}
	// The server starts while calls wait: they all get through.
	before := p.dials.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := p.CallPatiently(ctxTimeout(t, 5*time.Second), addr, ping, 10*time.Millisecond, func() bool { return true })
			errs <- err
		})
	}
	time.Sleep(150 * time.Millisecond)
	startServer(t, addr, ServerOptions{Handler: &echoHandler{}})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a call waiting for the server to start: %v", err)
		}
	}
	// The ten share the dials: about one per retry while refused, where
	// each dialling on its own would make ten.
	d := p.dials.Load() - before
	t.Logf("%d dials for 10 calls waiting 150ms with a 10ms retry", d)
	if d > 30 {
		t.Errorf("%d dials for 10 calls waiting 150ms with a 10ms retry: the calls do not share them", d)
	}
}

func TestPoolClose(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	p := NewPool(DialOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Call(context.Background(), ts.addr, &Request{Op: OpGet, Key: []byte("hang")})
		errc <- err
	}()
	waitFor(t, func() bool { return p.dials.Load() == 1 }, "a dial")
	time.Sleep(20 * time.Millisecond)
	p.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("pending call: got %v, want ErrClosed", err)
	}
	if _, err := p.Call(context.Background(), ts.addr, &Request{Op: OpPing}); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: got %v", err)
	}
	p.Close()
}

func TestBackoff(t *testing.T) {
	for f := 1; f < 100; f++ {
		d := backoff(f)
		if d < minBackoff || d > maxBackoff {
			t.Errorf("backoff(%d) = %v, outside [%v, %v]", f, d, minBackoff, maxBackoff)
		}
	}
	if d := backoff(1); d > 60*time.Millisecond {
		t.Errorf("first backoff %v, want about 50ms", d)
	}
	if d := backoff(10); d < 1600*time.Millisecond {
		t.Errorf("tenth backoff %v, want about 2s", d)
	}
}

func TestOptionsValidate(t *testing.T) {
	err := ServerOptions{MaxFrameSize: 10, MaxInFlightPerConn: -1, HandshakeTimeout: -1, WriteTimeout: -1, ReadTimeout: -1, IdleTimeout: -1}.Validate()
	for _, want := range []string{"Handler is nil", "MaxFrameSize 10", "MaxInFlightPerConn -1", "HandshakeTimeout", "WriteTimeout", "ReadTimeout", "IdleTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ServerOptions.Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := NewServer(ServerOptions{}).Serve(mustListen(t)); err == nil {
		t.Errorf("Serve with no handler succeeded")
	}
	err = DialOptions{Timeout: -1, MaxFrameSize: FrameSizeLimit + 1}.Validate()
	for _, want := range []string{"Timeout -1", "MaxFrameSize 1073741825"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DialOptions.Validate() = %v, want it to mention %q", err, want)
		}
	}
	if _, err := NewPool(DialOptions{MaxFrameSize: 1}).Call(context.Background(), "x:1", &Request{Op: OpPing}); err == nil {
		t.Errorf("a pool with bad options called")
	}
}

// TestTLS runs a call over TLS, with a certificate made for the test.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tako test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}

	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, TLS: serverTLS})
	c, err := Dial(ctxTimeout(t, 5*time.Second), ts.addr, DialOptions{TLS: &tls.Config{RootCAs: roots}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := &Request{Op: OpGet, Key: []byte("secret")}
	resp, err := c.Call(ctxTimeout(t, 5*time.Second), req)
	if err == nil {
		err = checkEcho(req, resp)
	}
	if err != nil {
		t.Fatal(err)
	}
	// A plain client is turned away.
	if _, err := Dial(ctxTimeout(t, 5*time.Second), ts.addr, DialOptions{}); err == nil {
		t.Errorf("a plain TCP client completed the handshake with a TLS server")
	}
}

// fakeServer accepts one connection, does the handshake, and runs script
// on it.
func fakeServer(t *testing.T, script func(nc net.Conn, fr *frameReader)) string {
	t.Helper()
	ln := mustListen(t)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := serverHandshake(nc, nc); err != nil {
			return
		}
		script(nc, newFrameReader(nc, DefaultMaxFrameSize))
	}()
	return ln.Addr().String()
}

// TestClientProtocolErrors: a server that answers wrongly breaks the
// connection, and every pending call learns why.
func TestClientProtocolErrors(t *testing.T) {
	tests := []struct {
		name   string
		req    *Request
		answer func(f frame) []byte
		want   string
	}{
		{"wrong kind", &Request{Op: OpGet, Key: []byte("k")}, func(f frame) []byte {
			return encodeResponse(f.id, &Response{Op: OpPong})
		}, "a Pong answers a Get request"},
		{"never sent id", &Request{Op: OpPing}, func(f frame) []byte {
			return encodeResponse(f.id+100, &Response{Op: OpPong})
		}, "which was never sent"},
		{"batch too short", &Request{Op: OpBatch, Batch: []Request{{Op: OpPing}, {Op: OpPing}}}, func(f frame) []byte {
			return encodeResponse(f.id, &Response{Op: OpBatchResponse, Batch: []Response{{Op: OpPong}}})
		}, "batch response of 1 items answers a batch of 2"},
		{"batch item kind", &Request{Op: OpBatch, Batch: []Request{{Op: OpGet, Key: []byte("k")}}}, func(f frame) []byte {
			return encodeResponse(f.id, &Response{Op: OpBatchResponse, Batch: []Response{{Op: OpPong}}})
		}, "batch item 0: a Pong answers a Get"},
		{"garbage", &Request{Op: OpPing}, func(f frame) []byte {
			return []byte("\x00\x00\x00\x09\x99\x00\x00\x00\x00\x00\x00\x00\x01")
		}, "unknown response op 0x99"},
		{"oversized frame", &Request{Op: OpPing}, func(f frame) []byte {
			return cat(u32(0x7fffffff), []byte{byte(OpPong)}, u64(int64(f.id)))
		}, "exceeds MaxFrameSize"},
		{"connection error", &Request{Op: OpPing}, func(f frame) []byte {
			return encodeResponse(0, errorResponse(CodeBadRequest, "you broke it"))
		}, "you broke it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeServer(t, func(nc net.Conn, fr *frameReader) {
				f, err := fr.next()
				if err != nil {
					return
				}
				nc.Write(tt.answer(f))
				io.Copy(io.Discard, nc) // until the client closes
			})
			c := dial(t, addr)
			_, err := c.Call(ctxTimeout(t, 5*time.Second), tt.req)
			if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrClosed and %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), addr) {
				t.Errorf("error %q does not name the server %s", err, addr)
			}
			if c.Err() == nil {
				t.Errorf("the connection still takes calls")
			}
		})
	}
}

// TestLateResponseDropped: an answer that comes after its call gave up is
// dropped, and the connection goes on.
func TestLateResponseDropped(t *testing.T) {
	addr := fakeServer(t, func(nc net.Conn, fr *frameReader) {
		first, err := fr.next()
		if err != nil {
			return
		}
		second, err := fr.next() // sent once the first call gave up
		if err != nil {
			return
		}
		nc.Write(encodeResponse(first.id, &Response{Op: OpPong}))
		nc.Write(encodeResponse(second.id, &Response{Op: OpRecordResponse}))
		io.Copy(io.Discard, nc)
	})
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, &Request{Op: OpPing}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first call: %v", err)
	}
	resp, err := c.Call(ctxTimeout(t, 5*time.Second), &Request{Op: OpGet, Key: []byte("k")})
	if err != nil || resp.Op != OpRecordResponse || resp.Found {
		t.Fatalf("second call: %+v, %v", resp, err)
	}
	if c.Err() != nil {
		t.Errorf("the late answer broke the connection: %v", c.Err())
	}
}

func TestDialNotTako(t *testing.T) {
	ln := mustListen(t)
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		io.Copy(io.Discard, nc)
	}()
	_, err := Dial(context.Background(), ln.Addr().String(), DialOptions{Timeout: time.Second})
	var perr *ProtocolError
	if !errors.As(err, &perr) || perr.Peer != ln.Addr().String() {
		t.Fatalf("got %v, want a *ProtocolError naming the peer", err)
	}
}

func TestDialTimeout(t *testing.T) {
	ln := mustListen(t) // accepts (in the kernel) but never answers the handshake
	defer ln.Close()
	start := time.Now()
	_, err := Dial(context.Background(), ln.Addr().String(), DialOptions{Timeout: 100 * time.Millisecond})
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("got %v after %v, want a timeout after 100ms", err, time.Since(start))
	}
}
