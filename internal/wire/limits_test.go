package wire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// announced is the frame that the hostile peers of these tests announce: a
// Put of 64 MiB, of which they send only the header.
const announced = 64 << 20

// announce returns a handshake followed by the header of a frame of length
// announced.
func announce() []byte {
	return cat(appendHello(nil, ProtocolVersion, 0), u32(announced), []byte{byte(OpPut)}, u64(1))
}

// watchedListener hands out connections that count the bytes the server
// read from them, and report when the server reads again after the hello
// and a frame header (21 bytes): it has then taken the header in, and
// waits for the body.
type watchedListener struct {
	net.Listener
	waiting atomic.Int64 // connections whose server waits for a body
}

func (l *watchedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: nc, l: l}, nil
}

type watchedConn struct {
	net.Conn
	l        *watchedListener
	read     int  // bytes read; by the server's reader only
	reported bool // counted in l.waiting
}

func (c *watchedConn) Read(p []byte) (int, error) {
	if c.read >= helloSize+FrameHeaderSize && !c.reported {
		c.reported = true
		c.l.waiting.Add(1)
	}
	n, err := c.Conn.Read(p)
	c.read += n
	return n, err
}

// memory is what the process holds: the Go heap in use after a collection,
// and the resident set.
type memory struct{ heap, rss uint64 }

func measure(t *testing.T) memory {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapInuse, rss: vmRSS(t)}
}

// vmRSS returns the process's resident set from /proc/self/status, or 0
// where there is none.
func vmRSS(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	return 0
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// TestAnnouncedFramesCostLittle: 1,000 connections that each announce a
// frame of 64 MiB and send none of it raise the process's memory (server
// and peers together) by less than 128 MiB, and a normal client is served
// all along. Without a token, on a server that requires one, each such
// frame is a protocol error that closes its connection; otherwise the body's
// buffer grows only as bytes arrive, so an empty body costs nothing.
func TestAnnouncedFramesCostLittle(t *testing.T) {
	const (
		conns = 1000
		bound = 128 << 20
	)
	tokens := &tokenTable{rights: map[string][]Op{"app": {OpGet, OpPut}}}
	tests := []struct {
		name      string
		authorize func(string, Op) *Error
	}{
		{"without auth", nil},
		{"with auth, no token", tokens.authorize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := &watchedListener{Listener: mustListen(t)}
			logger, logs := newTestLogger(t)
			srv := NewServer(ServerOptions{Handler: &echoHandler{}, Logger: logger, Authorize: tt.authorize})
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				<-served
			})
			addr := ln.Addr().String()
			good, err := Dial(context.Background(), addr, DialOptions{Token: "app"})
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			get := &Request{Op: OpGet, Key: []byte("still")}
			served1 := func() {
				t.Helper()
				resp, err := good.Call(ctxTimeout(t, 5*time.Second), get)
				if err == nil {
					err = checkEcho(get, resp)
				}
				if err != nil {
					t.Fatalf("the normal client failed: %v", err)
				}
			}
			served1()

			before := measure(t)
			peers := make([]net.Conn, 0, conns)
			defer func() {
				for _, nc := range peers {
					nc.Close()
				}
			}()
			msg := announce()
			var worst memory
			for len(peers) < conns {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("connection %d: %v", len(peers), err)
				}
				peers = append(peers, nc)
				if _, err := nc.Write(msg); err != nil {
					t.Fatalf("connection %d: %v", len(peers), err)
				}
				if len(peers)%100 != 0 {
					continue
				}
				// Every 100 connections: once the server has taken their
				// headers in (and refused them, with auth), check the
				// memory, so that a regression fails here rather than
				// exhausting the machine, and serve the normal client.
				n := int64(len(peers))
				if tt.authorize == nil {
					waitFor(t, func() bool { return ln.waiting.Load() >= n }, "the server to wait for %d bodies, got %d", n, ln.waiting.Load())
				} else {
					waitFor(t, func() bool { return srv.Stats().ProtocolErrors >= uint64(n) }, "%d protocol errors, got %+v", n, srv.Stats())
				}
				m := measure(t)
				worst.heap, worst.rss = max(worst.heap, m.heap), max(worst.rss, m.rss)
				if m.heap > before.heap+bound {
					t.Fatalf("after %d connections announcing %s: heap in use %s, up from %s: more than %s", n, mib(announced), mib(m.heap), mib(before.heap), mib(bound))
				}
				served1()
			}
			after := measure(t)
			t.Logf("%d connections announcing %s each: heap in use %s before, %s after (worst %s); VmRSS %s before, %s after (worst %s)",
				conns, mib(announced), mib(before.heap), mib(after.heap), mib(worst.heap), mib(before.rss), mib(after.rss), mib(worst.rss))
			if worst.heap > before.heap+bound {
				t.Errorf("heap in use rose by %s, more than %s", mib(worst.heap-before.heap), mib(bound))
			}
			if !raceEnabled && worst.rss > before.rss+bound {
				t.Errorf("VmRSS rose by %s, more than %s", mib(worst.rss-before.rss), mib(bound))
			}
			if st := srv.Stats(); tt.authorize != nil && st.ProtocolErrors != conns {
				t.Errorf("stats %+v: want %d protocol errors", st, conns)
			} else if tt.authorize == nil && st.ProtocolErrors != 0 {
				t.Errorf("stats %+v: want no protocol error", st)
			}
			if tt.authorize != nil {
				// Each peer was told why before its connection closed.
				checkClosedWith(t, peers[0], CodeBadRequest, "before the connection presented a token")
				if !strings.Contains(logs.String(), "before the connection presented a token") {
					t.Errorf("the server did not log the refused frames")
				}
			}
		})
	}
}

// checkClosedWith reads what the server sent on nc after its hello: an
// error frame with request id 0, code and a message containing want, then
// the end of the connection.
func checkClosedWith(t *testing.T, nc net.Conn, code ErrorCode, want string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the server did not close the connection: %v", err)
	}
	if len(got) < helloSize {
		t.Fatalf("the server sent [% x], not even a hello", got)
	}
	f, err := readFrame(got[helloSize:], DefaultMaxFrameSize)
	if err != nil {
		t.Fatalf("no error frame before closing: %v", err)
	}
	resp, err := decodeResponse(f.op, f.body)
	if err != nil || f.id != 0 || resp.Err == nil || resp.Err.Code != code || !strings.Contains(resp.Err.Message, want) {
		t.Fatalf("error frame: id %d, %+v, %v; want id 0, code %v and %q", f.id, resp, err, code, want)
	}
}

// TestFramesBeforeAuth: on a server whose Authorize requires a token, a
// connection without one may send frames of up to MaxFrameBeforeAuth (and
// gets its answers, refusals included); a longer one closes it. With a
// token, or on a server without Authorize, large frames are served.
func TestFramesBeforeAuth(t *testing.T) {
	tokens := &tokenTable{rights: map[string][]Op{"app": {OpGet, OpPut}}}
	put := func(valueSize int) []byte {
		return encodeRequest(2, &Request{Op: OpPut, Key: []byte("k"), Record: Record{Timestamp: 1, Value: bytes.Repeat([]byte("v"), valueSize)}})
	}
	// The largest Put that fits in MaxFrameBeforeAuth: key length, key,
	// record header.
	fits := MaxFrameBeforeAuth - frameLengthCounted - (keyHeaderSize + 1) - recordHeaderSize
	if n := len(put(fits)) - 4; n != MaxFrameBeforeAuth {
		t.Fatalf("the fitting Put has length %d, want %d", n, MaxFrameBeforeAuth)
	}
	tests := []struct {
		name      string
		authorize func(string, Op) *Error
		token     string
		frame     []byte
		want      string // the error the Put is answered with; "closed" when the connection is closed
	}{
		{"no Authorize, large", nil, "", put(1 << 20), ""},
		{"no token, MaxFrameBeforeAuth", tokens.authorize, "", put(fits), "a token is required"},
		{"no token, one byte more", tokens.authorize, "", put(fits + 1), "closed"},
		{"no token, an Auth that long", tokens.authorize, "", rawFrame(OpAuth, 2, make([]byte, MaxFrameBeforeAuth)), "closed"},
		{"unknown token, large", tokens.authorize, "nobody", put(1 << 20), "closed"},
		{"token, large", tokens.authorize, "app", put(1 << 20), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, Authorize: tt.authorize})
			nc, fr := rawConn(t, ts.addr)
			if tt.token != "" {
				if _, err := nc.Write(encodeRequest(1, &Request{Op: OpAuth, Key: []byte(tt.token)})); err != nil {
					t.Fatal(err)
				}
				f, err := fr.next()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := decodeResponse(f.op, f.body); err != nil {
					t.Fatal(err)
				}
			}
			_, werr := nc.Write(tt.frame)
			if werr != nil && tt.want != "closed" {
				t.Fatal(werr)
			}
			f, err := fr.next()
			if err != nil && tt.want == "closed" && werr != nil {
				// The server closed the connection while the frame's
				// body was still being written: the reset can take the
				// error frame with it. The server still counted it.
				waitFor(t, func() bool { return ts.srv.Stats().ProtocolErrors == 1 }, "1 protocol error, got %+v", ts.srv.Stats())
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp, err := decodeResponse(f.op, f.body)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == "closed":
				if f.id != 0 || resp.Err == nil || !strings.Contains(resp.Err.Message, "before the connection presented a token") {
					t.Fatalf("answer id %d %+v, want the connection closed for a frame before the token", f.id, resp)
				}
				// The end of the connection, or a reset: the server
				// closed it with the frame's body unread.
				if _, err := fr.next(); err != io.EOF && (err == nil || !strings.Contains(err.Error(), "reset")) {
					t.Errorf("after the error frame: %v, want the end of the connection", err)
				}
				waitFor(t, func() bool { return ts.srv.Stats().ProtocolErrors == 1 }, "1 protocol error, got %+v", ts.srv.Stats())
				return
			case tt.want != "":
				if f.id != 2 || resp.Err == nil || !strings.Contains(resp.Err.Message, tt.want) {
					t.Fatalf("answer id %d %+v, want %q", f.id, resp, tt.want)
				}
			default:
				if f.id != 2 || resp.Op != OpPutResponse {
					t.Fatalf("answer id %d %+v, want the Put served", f.id, resp)
				}
			}
			// The connection is still open.
			if _, err := nc.Write(encodeRequest(3, &Request{Op: OpPing})); err != nil {
				t.Fatal(err)
			}
			if f, err := fr.next(); err != nil || f.id != 3 || f.op != OpPong {
				t.Errorf("a Ping after: %v %v, want a Pong", f, err)
			}
			if st := ts.srv.Stats(); st.ProtocolErrors != 0 {
				t.Errorf("stats %+v: want no protocol error", st)
			}
		})
	}
}

// TestFrameBufferGrowsAsBytesArrive: a frame that announces 64 MiB costs
// nothing while none of its body has come, at most 64 KiB or twice what
// has come after that, and the whole frame once it has all arrived.
func TestFrameBufferGrowsAsBytesArrive(t *testing.T) {
	header := cat(u32(announced), []byte{byte(OpPut)}, u64(1))
	for _, sent := range []int{0, 1, 100 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("%d bytes of the body", sent), func(t *testing.T) {
			stream := cat(header, make([]byte, sent))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := newFrameReader(bufio.NewReaderSize(bytes.NewReader(stream), bufferSize), DefaultMaxFrameSize).next()
			runtime.ReadMemStats(&after)
			var perr *ProtocolError
			if !errors.As(err, &perr) || !strings.Contains(perr.Reason, fmt.Sprintf("stream ended after %d of the", sent)) {
				t.Fatalf("got %v, want a protocol error for the cut body", err)
			}
			// The frame reader's buffer (bufferSize), then the body's
			// buffers: 64 KiB, doubled while bytes come, each copied
			// into the next: less than 4 × what came, or 64 KiB.
			limit := uint64(bufferSize + 4*max(sent, frameChunk) + 16<<10)
			if sent == 0 {
				limit = bufferSize + 16<<10
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > limit {
				t.Errorf("reading %d bytes of a frame announcing %s allocated %s, more than %s", sent, mib(announced), mib(got), mib(limit))
			}
		})
	}
	// A whole frame arrives whole, in pieces of any size.
	body := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+1)
	stream := cat(u32(len(body)+frameLengthCounted), []byte{byte(OpPut)}, u64(7), body)
	r := newFrameReader(&trickle{b: stream, step: 100_000}, DefaultMaxFrameSize)
	f, err := r.next()
	if err != nil || f.id != 7 || !bytes.Equal(f.body, body) {
		t.Fatalf("a %d-byte body in pieces: id %d, %d bytes, %v", len(body), f.id, len(f.body), err)
	}
}

// trickle is a reader that gives at most step bytes per Read.
type trickle struct {
	b    []byte
	step int
}

func (r *trickle) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[n:]
	return n, nil
}
