package wire

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var writeFuzzSeeds = flag.Bool("write-fuzz-seeds", false, "write the seed corpora under testdata/fuzz")

// maxSeedSize keeps large messages (a key of MaxKeySize, a full batch) out
// of the seeds: the fuzzer's minimizer spends its time on them instead of
// fuzzing. The round-trip tests cover them.
const maxSeedSize = 512

// requestBodySeeds are real encoded bodies: (op, body) of the test requests.
func requestBodySeeds() [][2][]byte {
	var seeds [][2][]byte
	for _, tt := range testRequests {
		if b := encodeRequest(1, &tt.req); len(b) <= maxSeedSize {
			seeds = append(seeds, [2][]byte{{b[4]}, b[FrameHeaderSize:]})
		}
	}
	return seeds
}

// responseBodySeeds are real encoded bodies: (op, body) of the test
// responses.
func responseBodySeeds() [][2][]byte {
	var seeds [][2][]byte
	for _, tt := range testResponses {
		if b := encodeResponse(1, &tt.resp); len(b) <= maxSeedSize {
			seeds = append(seeds, [2][]byte{{b[4]}, b[FrameHeaderSize:]})
		}
	}
	return seeds
}

func handshakeSeeds() [][]byte {
	return [][]byte{
		appendHello(nil, 1, 0),
		appendHello(nil, 0, 0),
		appendHello(nil, 2, 1),
		appendHello(nil, 0xffff, 0xffff),
		[]byte("GET / HTTP/1.1\r\n"),
		[]byte("TAK"),
		nil,
	}
}

// streamSeeds are whole client streams: handshake and frames.
func streamSeeds() [][2][]byte {
	hello := appendHello(nil, ProtocolVersion, 0)
	var valid []byte
	valid = append(valid, hello...)
	for i, tt := range testRequests {
		if b := encodeRequest(uint64(i+1), &tt.req); len(b) <= maxSeedSize/4 {
			valid = append(valid, b...)
		}
	}
	get := encodeRequest(9, &Request{Op: OpGet, Key: []byte("key")})
	return [][2][]byte{
		{valid, nil},
		{valid, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{valid, []byte{7, 3, 200, 1, 13, 0, 40}},
		{cat(hello, get, get[:7]), []byte{3}},
		{cat(hello, rawFrame(0x42, 1, []byte("x")), get), nil},
		{cat(hello, encodeRequest(0, &Request{Op: OpPing})), nil},
		{cat(hello, u32(0xffffffff), []byte{4}, u64(1)), nil},
		{appendHello(nil, 0, 0), nil},
		{[]byte("GET / HTTP/1.1\r\nHost: tako\r\n\r\n"), []byte{1}},
		// Anti-entropy requests that break the limits: CodeBadRequest,
		// alone and in a batch, and the connection goes on.
		{cat(hello,
			rawFrame(OpDigest, 1, u32(0)),
			rawFrame(OpRangeSummary, 2, cat(u32(0), u32(0xffffffff), u32(0))),
			rawFrame(OpBatch, 3, cat(u16(2), u32(5), []byte{byte(OpDigest)}, u32(0), u32(13), []byte{byte(OpRangeSummary)}, u32(1), u32(0), u32(MaxSummaryEntries+1))),
			encodeRequest(4, &Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: 3}),
		), []byte{0, 12, 20}},
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestBodySeeds() {
		f.Add(s[0][0], s[1])
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		req, err := decodeRequest(Op(op), body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if !knownRequest(&req) {
			return // decoded without its body
		}
		// A request that decodes re-encodes to the same bytes: the
		// encoding is canonical, and the decoder read all of it.
		if got := appendRequestBody(nil, &req); !bytes.Equal(got, body) {
			t.Fatalf("decoded %+v re-encodes to [% x], not [% x]", req, got, body)
		}
		if len(req.Key) > MaxKeySize || len(req.Batch) > MaxBatch || len(req.Ranges) > MaxRanges {
			t.Fatalf("decoded a request beyond the limits: key %d, batch %d, ranges %d", len(req.Key), len(req.Batch), len(req.Ranges))
		}
		if req.Op == OpRangeSummary && len(req.Ranges) != 1 {
			t.Fatalf("decoded a RangeSummary of %d ranges", len(req.Ranges))
		}
	})
}

func knownRequest(req *Request) bool {
	if !req.Op.isRequest() {
		return false
	}
	for i := range req.Batch {
		if !knownRequest(&req.Batch[i]) {
			return false
		}
	}
	return true
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range responseBodySeeds() {
		f.Add(s[0][0], s[1])
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		resp, err := decodeResponse(Op(op), body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if got := appendResponseBody(nil, &resp); !bytes.Equal(got, body) {
			t.Fatalf("decoded %+v re-encodes to [% x], not [% x]", resp, got, body)
		}
		if len(resp.Digests) > MaxRanges || len(resp.Entries) > MaxSummaryEntries {
			t.Fatalf("decoded a response beyond the limits: %d digests, %d entries", len(resp.Digests), len(resp.Entries))
		}
		for i := range resp.Entries {
			if len(resp.Entries[i].Key) > MaxKeySize {
				t.Fatalf("decoded entry %d with a key of %d bytes", i, len(resp.Entries[i].Key))
			}
		}
		if len(resp.Stream) > MaxStreamEntries {
			t.Fatalf("decoded a stream of %d records", len(resp.Stream))
		}
		for i := range resp.Stream {
			if n := len(resp.Stream[i].Key); n == 0 || n > MaxKeySize {
				t.Fatalf("decoded stream record %d with a key of %d bytes", i, n)
			}
		}
	})
}

func FuzzHandshake(f *testing.F) {
	for _, s := range handshakeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		v, err := serverHandshake(bytes.NewReader(data), &out)
		wellFormed := len(data) >= helloSize && string(data[:4]) == magic
		switch {
		case !wellFormed:
			if err == nil || out.Len() != 0 {
				t.Fatalf("accepted or answered a bad handshake: %v, [% x]", err, out.Bytes())
			}
		case data[4] == 0 && data[5] == 0: // version 0
			if err == nil || !bytes.HasPrefix(out.Bytes(), appendHello(nil, ProtocolVersion, 0)) {
				t.Fatalf("version 0: %v, answered [% x]", err, out.Bytes())
			}
			f, ferr := readFrame(out.Bytes()[helloSize:], MinFrameSize)
			if ferr != nil || f.id != 0 || f.op != OpErrorResponse {
				t.Fatalf("version 0: no error frame after the answer: %v", ferr)
			}
		default:
			if err != nil || v != ProtocolVersion || !bytes.Equal(out.Bytes(), appendHello(nil, ProtocolVersion, 0)) {
				t.Fatalf("version >= 1: got version %d, %v, answered [% x]", v, err, out.Bytes())
			}
		}

		// The client side accepts exactly the one good answer.
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard}
		cerr := clientHandshake(rw)
		if good := bytes.HasPrefix(data, appendHello(nil, ProtocolVersion, 0)); good != (cerr == nil) {
			t.Fatalf("client handshake on [% x]: %v", data, cerr)
		}
	})
}

// FuzzConnStream feeds a byte stream, cut into reads at the points that cuts
// gives, into the server's connection code (handshake, frame reader,
// dispatch, writer) over an in-memory connection. It checks that the server
// never panics, ends the connection when the stream ends, writes only
// well-formed responses, and writes the same responses however the stream is
// cut (the nats-server parser property).
func FuzzConnStream(f *testing.F) {
	for _, s := range streamSeeds() {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		whole := serveStream(t, [][]byte{stream})
		split := serveStream(t, cutStream(stream, cuts))
		if !slices.Equal(whole, split) {
			t.Fatalf("the responses depend on how the stream is cut:\nwhole: %x\nsplit: %x", whole, split)
		}
	})
}

// cutStream cuts stream into chunks of the sizes given by the bytes of cuts
// (each 1 + its value), the rest in one chunk.
func cutStream(stream, cuts []byte) [][]byte {
	var chunks [][]byte
	for _, c := range cuts {
		if len(stream) == 0 {
			break
		}
		n := min(int(c)+1, len(stream))
		chunks = append(chunks, stream[:n])
		stream = stream[n:]
	}
	return append(chunks, stream)
}

// serveStream serves chunks as one connection's input, and returns what the
// server wrote: the handshake answer, then the response frames in a sorted
// order (they may come in any order).
func serveStream(t *testing.T, chunks [][]byte) []string {
	nc := &streamConn{chunks: chunks}
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		switch req.Op {
		case OpGet, OpReplicaGet:
			return &Response{Found: len(req.Key)%2 == 0, Record: Record{Timestamp: int64(len(req.Key)), Value: req.Key}}
		case OpDigest:
			return &Response{Digests: fakeDigests(req.Ranges)}
		case OpRangeSummary:
			return fakeSummary(req.Ranges[0], req.Limit)
		default:
			return &Response{Outcome: OutcomeUnchanged, Current: req.Record}
		}
	}
	// Tokens, deterministically: none serves everything (so that streams
	// without OpAuth reach the handler), one that starts with "tako_" may
	// only read, any other is unknown.
	authorize := func(token string, op Op) *Error {
		switch {
		case token == "":
			return nil
		case !strings.HasPrefix(token, "tako_"):
			return &Error{Code: CodeUnauthorized, Message: "unknown token"}
		case op == OpAuth || op == OpGet || op == OpReplicaGet:
			return nil
		}
		return &Error{Code: CodeForbidden, Message: "read only"}
	}
	s := NewServer(ServerOptions{Handler: h, MaxFrameSize: MinFrameSize, MaxInFlightPerConn: 4, Authorize: authorize})
	defer s.cancel()
	if !s.startConn(nc) {
		t.Fatal("the server refused the connection")
	}
	s.wg.Wait()
	if !nc.isClosed() {
		t.Fatal("the connection's goroutine returned without closing it")
	}

	out := nc.written()
	if len(out) == 0 {
		return nil
	}
	if len(out) < helloSize {
		t.Fatalf("the server wrote %d bytes, less than a handshake", len(out))
	}
	if _, _, err := parseHello(out); err != nil {
		t.Fatalf("the server's handshake answer: %v", err)
	}
	var frames []string
	fr := newFrameReader(bytes.NewReader(out[helloSize:]), MinFrameSize)
	for {
		f, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the server wrote a bad frame: %v", err)
		}
		if _, err := decodeResponse(f.op, f.body); err != nil {
			t.Fatalf("the server wrote a bad response: %v", err)
		}
		frames = append(frames, fmt.Sprintf("%d %v %x", f.id, f.op, f.body))
	}
	slices.Sort(frames)
	return frames
}

// streamConn is an in-memory net.Conn that reads the given chunks, one per
// Read, then io.EOF, and keeps what is written.
type streamConn struct {
	mu     sync.Mutex // guards the fields below
	chunks [][]byte
	out    bytes.Buffer
	closed bool
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.chunks) > 0 && len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case len(c.chunks) == 0:
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *streamConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *streamConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *streamConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

type fakeAddr string

func (a fakeAddr) Network() string { return "fake" }
func (a fakeAddr) String() string  { return string(a) }

func (c *streamConn) LocalAddr() net.Addr              { return fakeAddr("server") }
func (c *streamConn) RemoteAddr() net.Addr             { return fakeAddr("fuzzer") }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz, with
// -write-fuzz-seeds. The fuzz targets also add the same seeds with f.Add.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeFuzzSeeds {
		t.Skip("run with -write-fuzz-seeds to write testdata/fuzz")
	}
	write := func(target string, i int, values ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := "go test fuzz v1\n"
		for _, v := range values {
			content += v + "\n"
		}
		name := filepath.Join(dir, fmt.Sprintf("seed-%02d", i))
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range requestBodySeeds() {
		write("FuzzDecodeRequest", i, fmt.Sprintf("byte(%q)", s[0][0]), fmt.Sprintf("[]byte(%q)", s[1]))
	}
	for i, s := range responseBodySeeds() {
		write("FuzzDecodeResponse", i, fmt.Sprintf("byte(%q)", s[0][0]), fmt.Sprintf("[]byte(%q)", s[1]))
	}
	for i, s := range handshakeSeeds() {
		write("FuzzHandshake", i, fmt.Sprintf("[]byte(%q)", s))
	}
	for i, s := range streamSeeds() {
		write("FuzzConnStream", i, fmt.Sprintf("[]byte(%q)", s[0]), fmt.Sprintf("[]byte(%q)", s[1]))
	}
}
