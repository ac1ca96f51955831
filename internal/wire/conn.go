package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DialOptions configure Dial and NewPool. The zero value is ready to use.
type DialOptions struct {
	// Timeout bounds dialling, the TLS handshake and the protocol
	// handshake together. Zero means 2s.
	Timeout time.Duration
	// MaxFrameSize is the largest frame this side sends or accepts, as the
	// value of the frame's length field, in bytes. Requests larger than it
	// fail with CodeTooLarge before they are sent; a larger response breaks
	// the connection. Zero means DefaultMaxFrameSize; otherwise it must be
	// within [MinFrameSize, FrameSizeLimit], and should equal the server's
	// (see FrameSizeFor).
	MaxFrameSize int
	// WriteTimeout bounds each write of queued requests: a peer that stops
	// reading for this long breaks the connection. Zero means 30s.
	WriteTimeout time.Duration
	// TLS, when not nil, runs the connection over TLS with this
	// configuration; an empty ServerName defaults to the host of the
	// address. Nil means plain TCP.
	TLS *tls.Config
	// Logger receives the protocol errors of connections, at Warn. Nil
	// means no logging: the errors are still returned by Call and Err.
	Logger *slog.Logger
	// Token, when not empty, is presented with an OpAuth right after the
	// handshake, within Timeout: a server that refuses it fails the dial
	// with its *Error (CodeUnauthorized). A server that predates OpAuth
	// (CodeUnknownOp) checks no token, and the connection is used as it
	// is. At most MaxKeySize bytes.
	Token string
	// PingInterval keeps an idle connection open: a Conn that has sent
	// nothing for between PingInterval and twice that sends an OpPing, so
	// that a server's idle timeout (ServerOptions.IdleTimeout, 5m by
	// default) does not close it. Zero means 1m; negative sends no pings.
	PingInterval time.Duration
	// Dial, when not nil, opens the connection to addr instead of TCP
	// (the simulator's network, internal/simnet); TLS and the protocol's
	// handshake then run over what it returns. Nil dials TCP, with
	// keep-alive probes and a user timeout that break a connection to a
	// vanished peer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// dialTCP opens a TCP connection to addr. A connection whose peer vanished
// (host gone, network cut) must break soon, so that the pool dials again
// when the peer is back: keep-alive probes find it on an idle connection,
// and the user timeout on one with requests in flight.
func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3},
		Control: func(_, _ string, c syscall.RawConn) error {
			return setUserTimeout(c, deadPeerTimeout)
		},
	}
	return d.DialContext(ctx, "tcp", addr)
}

// Validate reports every problem of the options, or nil.
func (o DialOptions) Validate() error {
	var errs []error
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("wire: DialOptions.Timeout %v is negative", o.Timeout))
	}
	if o.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("wire: DialOptions.WriteTimeout %v is negative", o.WriteTimeout))
	}
	if err := checkFrameSize("DialOptions", o.MaxFrameSize); err != nil {
		errs = append(errs, err)
	}
	if len(o.Token) > MaxKeySize {
		errs = append(errs, fmt.Errorf("wire: DialOptions.Token of %d bytes is longer than MaxKeySize (%d)", len(o.Token), MaxKeySize))
	}
	return errors.Join(errs...)
}

func checkFrameSize(where string, n int) error {
	if n != 0 && (n < MinFrameSize || n > FrameSizeLimit) {
		return fmt.Errorf("wire: %s.MaxFrameSize %d is outside [%d, %d]", where, n, MinFrameSize, FrameSizeLimit)
	}
	return nil
}

func (o DialOptions) withDefaults() DialOptions {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = DefaultMaxFrameSize
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PingInterval == 0 {
		o.PingInterval = time.Minute
	}
	return o
}

// Conn is a client connection to one server. Many goroutines may Call on it
// at once: their requests are pipelined on the one TCP connection, and their
// responses come back in any order. A Conn owns two goroutines, a writer that
// coalesces queued requests into few system calls and a reader that hands
// each response to its caller; Close stops them.
type Conn struct {
	addr    string
	nc      net.Conn
	opts    DialOptions
	out     chan []byte   // encoded requests, for the writer
	closing chan struct{} // closed once the connection failed or was closed
	running atomic.Int32  // the reader and writer goroutines still running
	done    chan struct{} // closed when both have returned

	mu       sync.Mutex // guards the fields below
	pending  map[uint64]*call
	lastID   uint64 // the id of the latest request; ids start at 1
	err      error  // why the connection is unusable; set once
	draining error  // set when the server announced its shutdown
}

// call is a request waiting for its response.
type call struct {
	expect
	subs []expect // what answers each request of a batch
	done chan result
}

// expect is what a response must be to answer a request: of the kind that
// answers op, with one digest per range, with at most limit entries.
type expect struct {
	op     Op
	ranges int    // OpDigest
	limit  uint32 // OpRangeSummary
}

func expectFor(req *Request) expect {
	return expect{op: req.Op, ranges: len(req.Ranges), limit: req.Limit}
}

type result struct {
	resp *Response
	err  error
}

// deadPeerTimeout is how long data sent on a connection may stay
// unacknowledged by the peer's host before the connection is broken.
const deadPeerTimeout = 5 * time.Second

// Dial connects to the server at addr (host:port) and performs the
// handshake. opts.Timeout and ctx bound both.
func Dial(ctx context.Context, addr string, opts DialOptions) (*Conn, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	dial := opts.Dial
	if dial == nil {
		dial = dialTCP
	}
	nc, err := dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("wire: dial %s: %w", addr, err)
	}
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("wire: TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	// The handshake's reads and writes stop at ctx's deadline or
	// cancellation.
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	err = clientHandshake(nc)
	if !stop() && err == nil {
		err = ctx.Err() // the deadline was cut short after the handshake
	}
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	if err != nil {
		nc.Close()
		var perr *ProtocolError
		if errors.As(err, &perr) {
			perr.Peer = addr
			return nil, perr
		}
		return nil, fmt.Errorf("wire: handshake with %s: %w", addr, err)
	}

	c := &Conn{
		addr:    addr,
		nc:      nc,
		opts:    opts,
		out:     make(chan []byte, 256),
		closing: make(chan struct{}),
		pending: make(map[uint64]*call),
		done:    make(chan struct{}),
	}
	c.running.Store(2)
	go c.readLoop()
	go c.writeLoop()
	if opts.Token != "" {
		_, err := c.Call(ctx, &Request{Op: OpAuth, Key: []byte(opts.Token)})
		if err != nil && !errors.Is(err, ErrUnknownOp) {
			c.Close()
			return nil, fmt.Errorf("wire: presenting the token to %s: %w", addr, err)
		}
	}
	return c, nil
}

// Addr returns the address the connection was dialled to.
func (c *Conn) Addr() string { return c.addr }

// Call sends req and waits for its response, until ctx is done. Calls with
// no deadline wait as long as the connection lives: give ctx a deadline.
//
// A successful response comes back as (resp, nil): for OpBatch, its Batch
// holds a response per request, some of which may carry an Err. An error
// response comes back as (nil, err) with err an *Error; so does a request
// refused before sending (CodeBadRequest for an empty or long key, a nested
// batch, ranges or a Limit out of bounds; CodeTooLarge beyond MaxFrameSize;
// CodeUnknownOp). A response that does not answer its request (of the wrong
// kind, with a digest count other than the request's range count, with more
// entries than its Limit) is a protocol error that closes the connection.
// Other errors wrap ErrClosed (the connection broke or was closed, the
// *ProtocolError of such a response among them), ErrShuttingDown (the server
// announced its shutdown) or ctx's error; a response that arrives after its
// call gave up is dropped.
//
// A server of protocol version 1 that predates OpDigest and OpRangeSummary
// answers them with CodeUnknownOp: errors.Is(err, ErrUnknownOp) tells a
// caller that the peer cannot take part in anti-entropy.
func (c *Conn) Call(ctx context.Context, req *Request) (*Response, error) {
	if req == nil {
		return nil, &Error{Code: CodeBadRequest, Message: "nil request"}
	}
	if e := checkRequest(req, false); e != nil {
		return nil, e
	}
	if n := requestBodySize(req) + frameLengthCounted; n > c.opts.MaxFrameSize {
		return nil, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("%v request of %d bytes exceeds MaxFrameSize (%d)", req.Op, n, c.opts.MaxFrameSize)}
	}
	cl := &call{expect: expectFor(req), done: make(chan result, 1)}
	if req.Op == OpBatch {
		cl.subs = make([]expect, len(req.Batch))
		for i := range req.Batch {
			cl.subs[i] = expectFor(&req.Batch[i])
		}
	}

	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.lastID++
	id := c.lastID
	c.pending[id] = cl
	c.mu.Unlock()

	f := encodeRequest(id, req)
	select {
	case c.out <- f:
	case <-c.closing: // fail has handed cl its error
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("wire: %v to %s: %w", req.Op, c.addr, ctx.Err())
	}
	select {
	case r := <-cl.done:
		return r.resp, r.err
	case <-ctx.Done():
		c.forget(id)
		return nil, fmt.Errorf("wire: %v to %s: %w", req.Op, c.addr, ctx.Err())
	}
}

// forget drops the pending call id: its response, if it comes, is dropped.
func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Err returns nil while the connection takes calls, and why it does not once
// it broke, was closed, or its server announced its shutdown.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errLocked()
}

func (c *Conn) errLocked() error {
	if c.err != nil {
		return c.err
	}
	return c.draining
}

// Close closes the connection and fails the pending calls with ErrClosed. It
// returns once the connection's goroutines have stopped. It is idempotent and
// always returns nil.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	<-c.done
	return nil
}

// fail is the one exit path of the connection: it records why the
// connection is unusable, logs a protocol error with the peer and the
// offending bytes, closes the socket, stops the goroutines and fails every
// pending call. Only the first call counts.
func (c *Conn) fail(cause error) {
	err := cause
	if cause != ErrClosed {
		var perr *ProtocolError
		if errors.As(cause, &perr) && perr.Peer == "" {
			perr.Peer = c.addr // not yet shared with any caller
		}
		err = fmt.Errorf("%w: %w", ErrClosed, cause)
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()

	var perr *ProtocolError
	if errors.As(cause, &perr) {
		c.opts.Logger.Warn("wire: protocol error, closing the connection", "peer", c.addr, "reason", perr.Reason, "offset", perr.Offset, "bytes", fmt.Sprintf("%x", perr.Bytes))
	}
	close(c.closing)
	c.nc.Close()
	for _, cl := range pending {
		cl.done <- result{err: err}
	}
}

// exit records that one of the connection's goroutines returned.
func (c *Conn) exit() {
	if c.running.Add(-1) == 0 {
		close(c.done)
	}
}

// writeLoop writes queued requests until the connection closes, and a ping
// when it has written nothing for a PingInterval.
func (c *Conn) writeLoop() {
	defer c.exit()
	bw := bufio.NewWriterSize(c.nc, bufferSize)
	var tick <-chan time.Time
	if c.opts.PingInterval > 0 {
		t := time.NewTicker(c.opts.PingInterval)
		defer t.Stop()
		tick = t.C
	}
	wrote := false // since the last tick
	for {
		var f []byte
		select {
		case f = <-c.out:
		case <-tick:
			if wrote {
				wrote = false
				continue
			}
			f = c.ping()
		case <-c.closing:
			return
		}
		if err := writeFrames(c.nc, bw, c.out, f, c.opts.WriteTimeout); err != nil {
			c.fail(fmt.Errorf("writing to %s: %w", c.addr, err))
			return
		}
		wrote = true
	}
}

// ping returns an OpPing frame whose answer nobody waits for: its id is
// taken but not pending, so the OpPong is dropped as a late answer.
func (c *Conn) ping() []byte {
	c.mu.Lock()
	c.lastID++
	id := c.lastID
	c.mu.Unlock()
	return encodeRequest(id, &Request{Op: OpPing})
}

// readLoop hands each response to its call until the connection closes.
func (c *Conn) readLoop() {
	defer c.exit()
	fr := frameReader{r: bufio.NewReaderSize(c.nc, bufferSize), max: c.opts.MaxFrameSize}
	for {
		f, err := fr.next()
		if err == nil {
			err = c.dispatch(f)
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			err = fmt.Errorf("%s closed the connection: %w", c.addr, err)
		case errors.Is(err, net.ErrClosed):
			// Closed by fail; the cause is recorded already.
		}
		c.fail(err)
		return
	}
}

// dispatch decodes one response frame and hands it to its call. It returns a
// *ProtocolError when the frame is malformed or does not answer its request,
// and the server's error when it closes the connection.
func (c *Conn) dispatch(f frame) error {
	resp, err := decodeResponse(f.op, f.body)
	if err != nil {
		return err
	}
	if f.id == 0 {
		// A message about the whole connection.
		if resp.Err == nil {
			return &ProtocolError{Reason: fmt.Sprintf("a %v with request id 0; only an error response may have it", f.op), Offset: 4, Bytes: []byte{byte(f.op)}}
		}
		if resp.Err.Code == CodeShuttingDown {
			c.mu.Lock()
			c.draining = fmt.Errorf("wire: %s is shutting down: %w", c.addr, resp.Err)
			c.mu.Unlock()
			return nil
		}
		return fmt.Errorf("%s closed the connection: %w", c.addr, resp.Err)
	}

	c.mu.Lock()
	cl := c.pending[f.id]
	delete(c.pending, f.id)
	lastID := c.lastID
	c.mu.Unlock()
	if cl == nil {
		if f.id > lastID {
			return &ProtocolError{Reason: fmt.Sprintf("response to request id %d, which was never sent", f.id), Offset: 5, Bytes: idBytes(f.id)}
		}
		return nil // the call gave up: drop the late response
	}
	if reason := mismatch(cl, &resp); reason != "" {
		err := &ProtocolError{Peer: c.addr, Reason: reason, Offset: 4, Bytes: []byte{byte(f.op)}}
		c.fail(err) // first, so that Err reports it by the time the caller returns
		cl.done <- result{err: c.Err()}
		return err
	}
	if resp.Op == OpErrorResponse {
		cl.done <- result{err: resp.Err}
	} else {
		cl.done <- result{resp: &resp}
	}
	return nil
}

func idBytes(id uint64) []byte {
	return []byte{byte(id >> 56), byte(id >> 48), byte(id >> 40), byte(id >> 32), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
}

// mismatch returns why resp does not answer cl's request, or "".
func mismatch(cl *call, resp *Response) string {
	if reason := cl.mismatch(resp); reason != "" || cl.op != OpBatch || resp.Op == OpErrorResponse {
		return reason
	}
	if len(resp.Batch) != len(cl.subs) {
		return fmt.Sprintf("a batch response of %d items answers a batch of %d requests", len(resp.Batch), len(cl.subs))
	}
	for i := range resp.Batch {
		if reason := cl.subs[i].mismatch(&resp.Batch[i]); reason != "" {
			return fmt.Sprintf("batch item %d: %s", i, reason)
		}
	}
	return ""
}

// mismatch returns why resp, not a batch's items, does not answer the
// request that e describes, or "".
func (e expect) mismatch(resp *Response) string {
	switch want := e.op.responseOp(); {
	case resp.Op == OpErrorResponse:
		return ""
	case resp.Op != want:
		return fmt.Sprintf("a %v answers a %v request, want %v", resp.Op, e.op, want)
	case want == OpDigestResponse && len(resp.Digests) != e.ranges:
		return fmt.Sprintf("a %v of %d digests answers a %v of %d ranges", resp.Op, len(resp.Digests), e.op, e.ranges)
	case want == OpRangeSummaryResponse && uint64(len(resp.Entries)) > uint64(e.limit):
		return fmt.Sprintf("a %v of %d entries answers a %v with limit %d", resp.Op, len(resp.Entries), e.op, e.limit)
	}
	return ""
}
