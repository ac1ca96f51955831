package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/takodb/tako/internal/tlsconf"
)

// BenchmarkCallParallel: 16 concurrent callers of a small Get over one
// connection, on loopback TCP.
func BenchmarkCallParallel(b *testing.B) { benchCall(b, 16, nil, nil) }

// BenchmarkEncodeDecodePut encodes a Put of a 100-byte value into a frame,
// as a Call does, and decodes it, as a server does.
func BenchmarkEncodeDecodePut(b *testing.B) {
	req := &Request{Op: OpPut, Key: []byte("user:12345:profile"), Record: Record{Timestamp: 1_700_000_000_000_000, Value: bytes.Repeat([]byte("v"), 100)}}
	b.ReportAllocs()
	b.SetBytes(int64(len(encodeRequest(1, req))))
	for i := range b.N {
		f := encodeRequest(uint64(i+1), req)
		got, err := decodeRequest(Op(f[4]), f[FrameHeaderSize:])
		if err != nil || len(got.Record.Value) != 100 {
			b.Fatal(got, err)
		}
	}
}

// benchCall runs callers concurrent callers of a small Get over one
// connection, on loopback, plain or over mutual TLS.
func benchCall(b *testing.B, callers int, serverTLS, clientTLS *tls.Config) {
	value := bytes.Repeat([]byte("v"), 100)
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		return &Response{Found: true, Record: Record{Timestamp: 1, Value: value}}
	}
	ts := startServer(b, "", ServerOptions{Handler: h, Logger: slog.New(slog.DiscardHandler), TLS: serverTLS})
	c, err := Dial(context.Background(), ts.addr, DialOptions{TLS: clientTLS})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			req := &Request{Op: OpGet, Key: []byte("some-key")}
			for left.Add(-1) >= 0 {
				resp, err := c.Call(ctx, req)
				if err != nil || !resp.Found {
					b.Error(resp, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkCallPlain: 64 concurrent callers over one plain TCP connection.
func BenchmarkCallPlain(b *testing.B) { benchCall(b, 64, nil, nil) }

// BenchmarkCallTLS: the same over mutual TLS 1.3 with ECDSA P-256
// certificates made by tlsconf, as tako certs makes them.
func BenchmarkCallTLS(b *testing.B) {
	f, err := tlsconf.WriteFiles(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := tlsconf.Load(f.CA, f.Cert, f.Key)
	if err != nil {
		b.Fatal(err)
	}
	benchCall(b, 64, r.ServerConfig(), r.ClientConfig())
}
