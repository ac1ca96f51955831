package wire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/takodb/tako/internal/gopool"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	// Handler serves the requests; required.
	Handler Handler
	// Logger receives protocol errors (Warn), handler panics (Error) and
	// connection events (Debug). Nil means no logging.
	Logger *slog.Logger
	// MaxFrameSize is the largest frame this side sends or accepts, as the
	// value of the frame's length field, in bytes. A larger request frame
	// is a protocol error; a larger response is replaced by a CodeTooLarge
	// error. Zero means DefaultMaxFrameSize; otherwise it must be within
	// [MinFrameSize, FrameSizeLimit] (see FrameSizeFor).
	MaxFrameSize int
	// MaxInFlightPerConn is how many requests of one connection (counting
	// each request of a batch) may be in the Handler at once; beyond it the
	// server stops reading the connection until one finishes. Zero means
	// 256.
	MaxInFlightPerConn int
	// HandshakeTimeout is how long a new connection has to complete the
	// handshake. Zero means 5s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write of responses: a peer that stops
	// reading for this long loses its connection. Zero means 30s.
	WriteTimeout time.Duration
	// ReadTimeout bounds each wait for more of a frame once its first byte
	// has arrived: a peer that sends part of a frame and then nothing for
	// this long loses its connection (Stats.ReadTimeouts). Zero means 30s.
	ReadTimeout time.Duration
	// IdleTimeout is how long a connection may wait for its next frame:
	// one that sends nothing for this long, with none of its requests
	// under way, is closed (Stats.IdleTimeouts). A Conn pings well within
	// the default (DialOptions.PingInterval), so pooled connections stay
	// open. Zero means 5m.
	IdleTimeout time.Duration
	// TLS, when not nil, makes the server speak TLS with this
	// configuration on every connection it accepts. Nil means plain TCP.
	TLS *tls.Config
	// Authorize, when not nil, decides every request (each request of a
	// batch by itself; OpPing is always served): token is what the
	// connection presented with OpAuth, "" for none. It returns nil to
	// serve the request, or the error that answers it (CodeUnauthorized,
	// CodeForbidden). An OpAuth is answered with what Authorize says of
	// OpAuth with its token, and the connection keeps the token only when
	// that is nil. Authorize is called for every request, so that a
	// token revoked meanwhile stops working at once: it must be fast and
	// safe for concurrent use. Nil serves every request, and accepts any
	// OpAuth.
	//
	// Authorize is also asked, with token "", about the op of a frame
	// longer than MaxFrameBeforeAuth that arrives before the connection
	// presented a token: when it refuses, the frame is a protocol error
	// and its body is not read, so that a peer without a token cannot make
	// the server hold a large frame.
	Authorize func(token string, op Op) *Error
	// Budget, when not nil, bounds the bytes of request frames that the
	// server holds at once, with the process's other ports: once the
	// first byte of a frame's body arrives, the server reserves the
	// body's length before reading it, and releases it once the request
	// is answered. A body that does not fit within the Budget's wait is
	// read and dropped, and its request answered with CodeOverloaded
	// (Stats.OverBudget); the connection goes on. Nil bounds frames by
	// MaxFrameSize only.
	Budget Budget
}

// Budget is what a Server reserves the bytes of request frames from, a
// budget it shares with the process's other ports (package budget
// implements it). Acquire reserves n bytes, waiting a bounded time while
// they do not fit, and returns what it reserved (at most n), or an error
// when they did not fit in time or ctx ended; Release gives back what
// Acquire reserved. Both are called concurrently.
type Budget interface {
	Acquire(ctx context.Context, n int64) (int64, error)
	Release(n int64)
}

// Validate reports every problem of the options, or nil.
func (o ServerOptions) Validate() error {
	var errs []error
	if o.Handler == nil {
		errs = append(errs, errors.New("wire: ServerOptions.Handler is nil"))
	}
	if err := checkFrameSize("ServerOptions", o.MaxFrameSize); err != nil {
		errs = append(errs, err)
	}
	if o.MaxInFlightPerConn < 0 {
		errs = append(errs, fmt.Errorf("wire: ServerOptions.MaxInFlightPerConn %d is negative", o.MaxInFlightPerConn))
	}
	if o.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("wire: ServerOptions.HandshakeTimeout %v is negative", o.HandshakeTimeout))
	}
	if o.WriteTimeout < 0 {
		errs = append(errs, fmt.Errorf("wire: ServerOptions.WriteTimeout %v is negative", o.WriteTimeout))
	}
	if o.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("wire: ServerOptions.ReadTimeout %v is negative", o.ReadTimeout))
	}
	if o.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("wire: ServerOptions.IdleTimeout %v is negative", o.IdleTimeout))
	}
	return errors.Join(errs...)
}

func (o ServerOptions) withDefaults() ServerOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = DefaultMaxFrameSize
	}
	if o.MaxInFlightPerConn == 0 {
		o.MaxInFlightPerConn = 256
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 5 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 30 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	return o
}

// Server serves the protocol on the connections of its listeners, calling its
// Handler for each request. Every goroutine it starts (one per connection,
// which owns a writer and one per request in the Handler) stops by the time
// Shutdown returns.
type Server struct {
	opts     ServerOptions
	optsErr  error
	log      *slog.Logger
	ctx      context.Context // the base of handler contexts
	cancel   context.CancelFunc
	stopping chan struct{}  // closed when Shutdown begins
	done     chan struct{}  // closed when Shutdown has finished
	wg       sync.WaitGroup // connection goroutines
	once     sync.Once      // begins the shutdown
	// handlers run the requests on reused goroutines, whose stacks have
	// already grown to what a handler needs.
	handlers gopool.Pool
	// writers lends connections their buffered writer for one burst of
	// responses, so that an idle connection holds none.
	writers sync.Pool

	// counters of Stats
	throttled, writeTimeouts, readTimeouts, idleTimeouts, handshakeFailures, protocolErrors, refused, overBudget atomic.Uint64
	// reserved is what request frames hold reserved in the Budget now.
	reserved atomic.Int64

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	shutdown  bool
}

// Stats counts what a Server refused, cut or held back since it was
// created: what an operator watches to see clients hit its limits.
type Stats struct {
	// Throttled counts the times the server stopped reading a connection
	// because MaxInFlightPerConn of its requests were under way, until one
	// finished.
	Throttled uint64
	// WriteTimeouts counts connections closed because the peer did not take
	// its answers within WriteTimeout.
	WriteTimeouts uint64
	// ReadTimeouts counts connections closed because the peer sent part
	// of a frame and then nothing for ReadTimeout.
	ReadTimeouts uint64
	// IdleTimeouts counts connections closed because the peer sent
	// nothing for IdleTimeout while none of its requests was under way.
	IdleTimeouts uint64
	// HandshakeFailures counts connections closed because their TLS or
	// protocol handshake failed (a bad certificate, not "TAKO", too slow);
	// a connection closed before sending anything is not counted.
	HandshakeFailures uint64
	// ProtocolErrors counts connections closed for breaking the protocol
	// after the handshake, a frame longer than MaxFrameBeforeAuth before
	// a token among them (see ServerOptions.Authorize).
	ProtocolErrors uint64
	// Refused counts requests that Authorize refused (CodeUnauthorized,
	// CodeForbidden), OpAuth included.
	Refused uint64
	// OverBudget counts request frames answered CodeOverloaded because
	// their body did not fit in the Budget within its wait.
	OverBudget uint64
	// BytesReserved is not a count but the bytes of request frames that
	// the server holds reserved in the Budget now.
	BytesReserved int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Throttled:         s.throttled.Load(),
		WriteTimeouts:     s.writeTimeouts.Load(),
		ReadTimeouts:      s.readTimeouts.Load(),
		IdleTimeouts:      s.idleTimeouts.Load(),
		HandshakeFailures: s.handshakeFailures.Load(),
		ProtocolErrors:    s.protocolErrors.Load(),
		Refused:           s.refused.Load(),
		OverBudget:        s.overBudget.Load(),
		BytesReserved:     s.reserved.Load(),
	}
}

// NewServer returns a server with opts. Invalid options make Serve fail with
// the problem.
func NewServer(opts ServerOptions) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	o := opts.withDefaults()
	return &Server{
		writers:   sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufferSize) }},
		opts:      o,
		optsErr:   opts.Validate(),
		log:       o.Logger,
		ctx:       ctx,
		cancel:    cancel,
		stopping:  make(chan struct{}),
		done:      make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
	}
}

// Serve accepts connections on ln and serves them until Shutdown; it closes
// ln when it returns. After Shutdown it returns ErrServerClosed, once the
// requests in flight are answered and every connection is closed. It returns
// other errors when the options are invalid or ln fails for good.
func (s *Server) Serve(ln net.Listener) error {
	if s.optsErr != nil {
		ln.Close()
		return s.optsErr
	}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var delay time.Duration // after a failed Accept
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.stopping:
				<-s.done
				return ErrServerClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("wire: accept on %v: %w", ln.Addr(), err)
			}
			// Out of file descriptors or the like: wait and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("wire: accept failed, retrying", "addr", ln.Addr(), "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.stopping:
				t.Stop()
			}
			continue
		}
		delay = 0
		if s.opts.TLS != nil {
			nc = tls.Server(nc, s.opts.TLS)
		}
		if !s.startConn(nc) {
			nc.Close()
		}
	}
}

// startConn serves nc on a goroutine of its own, unless Shutdown has begun.
func (s *Server) startConn(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	sc := s.newConn(nc)
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sc.serve()
	}()
	return true
}

// Shutdown stops the server gracefully: it closes the listeners, tells every
// connection's client that the server is going (a CodeShuttingDown message
// with request id 0), answers new requests with CodeShuttingDown, lets the
// requests in flight finish and closes each connection once they are
// answered. When ctx is done first, it cancels the handlers' contexts, closes
// every connection, waits for the handlers to return and returns ctx's error.
// It is idempotent: every call waits for the same shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.shutdown = true
		var lns []net.Listener
		for ln := range s.listeners {
			lns = append(lns, ln)
		}
		var conns []*serverConn
		for sc := range s.conns {
			conns = append(conns, sc)
		}
		s.mu.Unlock()

		close(s.stopping)
		for _, ln := range lns {
			ln.Close()
		}
		for _, sc := range conns {
			sc.drain()
		}
		// No goroutine starts after shutdown began, so this one ends
		// once the connection goroutines have.
		go func() {
			s.wg.Wait()
			s.handlers.Close()
			s.cancel()
			close(s.done)
		}()
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	// Close the connections before the handlers' contexts end: a handler
	// that answers its cancellation must not reach a client that is owed
	// ErrClosed.
	s.mu.Lock()
	for sc := range s.conns {
		sc.nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return ctx.Err()
}

// serverConn is one connection of a server. Its goroutine (serve) reads the
// requests and owns the writer and the handler goroutines.
type serverConn struct {
	s          *Server
	nc         net.Conn
	peer       string
	br         *bufio.Reader
	ctx        context.Context // the handlers' context
	cancel     context.CancelFunc
	out        chan []byte   // encoded responses, for the writer
	stop       chan struct{} // closed to make the writer flush the queue and return
	writerDone chan struct{} // closed when the writer has returned
	sem        chan struct{} // in-flight slots
	handlers   sync.WaitGroup
	inflight   atomic.Int64 // requests read but not yet answered (a batch counts once)
	draining   atomic.Bool  // Shutdown began: answer new requests with CodeShuttingDown
	token      string       // presented with OpAuth; read and written by the reader (serve) only
	// The read deadline that wait set last, for the reader only: idle
	// (IdleTimeout, between frames) or not (ReadTimeout), and when.
	idle        bool
	deadlineSet time.Time
}

func (s *Server) newConn(nc net.Conn) *serverConn {
	ctx, cancel := context.WithCancel(s.ctx)
	peer := "unknown"
	if a := nc.RemoteAddr(); a != nil {
		peer = a.String()
	}
	return &serverConn{
		s:          s,
		nc:         nc,
		peer:       peer,
		br:         bufio.NewReaderSize(nc, bufferSize),
		ctx:        ctx,
		cancel:     cancel,
		out:        make(chan []byte, 256),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		sem:        make(chan struct{}, s.opts.MaxInFlightPerConn),
	}
}

// goaway returns the frame that tells a client the server is shutting down.
func goaway() []byte {
	return encodeResponse(0, errorResponse(CodeShuttingDown, "the server is shutting down: send new requests elsewhere"))
}

// serve runs the connection: the handshake, then requests until the peer
// closes the connection, breaks the protocol, or Shutdown ends it. Every way
// out goes through the end of this function, which answers what it can and
// closes the connection.
func (sc *serverConn) serve() {
	s := sc.s
	defer func() {
		sc.cancel()
		sc.nc.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()

	_ = sc.nc.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	if tc, ok := sc.nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(sc.ctx); err != nil {
			s.handshakeFailures.Add(1)
			s.log.Warn("wire: TLS handshake failed, closing the connection", "peer", sc.peer, "err", err)
			return
		}
	}
	if _, err := serverHandshake(sc.br, sc.nc); err != nil {
		var perr *ProtocolError
		if errors.As(err, &perr) {
			perr.Peer = sc.peer
			s.handshakeFailures.Add(1)
			s.log.Warn("wire: bad handshake, closing the connection", "peer", sc.peer, "reason", perr.Reason, "bytes", fmt.Sprintf("%x", perr.Bytes))
		} else {
			s.log.Debug("wire: connection closed before its handshake", "peer", sc.peer, "err", err)
		}
		return
	}
	_ = sc.nc.SetDeadline(time.Time{})
	if sc.draining.Load() {
		sc.wake() // Shutdown began during the handshake
	}

	go sc.writeLoop()
	err := sc.readLoop()
	var perr *ProtocolError
	switch {
	case errors.Is(err, io.EOF):
		// The peer closed its side: cancel its requests in flight, as
		// it most likely will not read their answers. Those that come
		// are still sent, for a peer that only half-closed.
		s.log.Debug("wire: connection closed by the peer", "peer", sc.peer)
		sc.cancel()
	case errors.As(err, &perr):
		perr.Peer = sc.peer
		s.protocolErrors.Add(1)
		s.log.Warn("wire: protocol error, closing the connection", "peer", sc.peer, "reason", perr.Reason, "offset", perr.Offset, "bytes", fmt.Sprintf("%x", perr.Bytes))
	case sc.draining.Load() && errors.Is(err, os.ErrDeadlineExceeded):
		// Woken by the shutdown.
	case errors.Is(err, os.ErrDeadlineExceeded) && sc.idle:
		s.idleTimeouts.Add(1)
		s.log.Debug("wire: connection idle for the idle timeout, closing it", "peer", sc.peer, "timeout", s.opts.IdleTimeout)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.readTimeouts.Add(1)
		s.log.Warn("wire: the peer sent part of a frame and then nothing for the read timeout, closing the connection", "peer", sc.peer, "timeout", s.opts.ReadTimeout)
		sc.cancel()
	default:
		// The peer is gone, or Shutdown gave up: nobody will read the
		// answers of the requests in flight.
		s.log.Debug("wire: connection lost", "peer", sc.peer, "err", err)
		sc.cancel()
	}
	sc.handlers.Wait()
	if perr != nil {
		sc.send(encodeResponse(0, errorResponse(CodeBadRequest, "protocol error: %s (at byte %d: [% x])", perr.Reason, perr.Offset, perr.Bytes)))
	}
	close(sc.stop)
	<-sc.writerDone
}

// readLoop reads requests and dispatches them until an error.
func (sc *serverConn) readLoop() error {
	fr := frameReader{r: sc.br, max: sc.s.opts.MaxFrameSize, admit: sc.admit, wait: sc.wait}
	if sc.s.opts.Budget != nil {
		fr.reserve, fr.release = sc.reserve, sc.release
	}
	for {
		f, err := fr.next()
		if err != nil {
			if sc.idle && errors.Is(err, os.ErrDeadlineExceeded) && !sc.draining.Load() && sc.inflight.Load() > 0 {
				continue // not idle: the peer waits for answers
			}
			return err
		}
		if f.id == 0 {
			sc.release(f.held)
			return &ProtocolError{Reason: fmt.Sprintf("a %v with request id 0, which is reserved for messages about the connection", f.op), Offset: 5, Bytes: idBytes(0)}
		}
		if f.refused {
			sc.s.overBudget.Add(1)
			sc.reply(f.id, errorResponse(CodeOverloaded, "overloaded: the requests under way hold the server's byte budget (limits.max_bytes_in_flight); retry shortly"))
			continue
		}
		req, err := decodeRequest(f.op, f.body)
		if err != nil {
			sc.release(f.held)
			return err
		}
		if err := sc.dispatch(f.id, &req, f.held); err != nil {
			return err
		}
	}
}

// reserve is the frame reader's reserve: it reserves n bytes of the
// Budget for a frame's body, and returns errRefused when they do not fit
// within the Budget's wait.
func (sc *serverConn) reserve(n int) (int64, error) {
	held, err := sc.s.opts.Budget.Acquire(sc.ctx, int64(n))
	switch {
	case err == nil:
		sc.s.reserved.Add(held)
		return held, nil
	case sc.ctx.Err() != nil:
		return 0, fmt.Errorf("wire: waiting for room for a frame of %d bytes: %w", n, sc.ctx.Err())
	}
	return 0, errRefused
}

// release gives back what reserve reserved for a request.
func (sc *serverConn) release(held int64) {
	if held > 0 {
		sc.s.reserved.Add(-held)
		sc.s.opts.Budget.Release(held)
	}
}

// wait sets the read deadline before the reader blocks: IdleTimeout while it
// waits for a frame, ReadTimeout inside one. Setting a deadline costs more
// than reading the clock, so a deadline of the same kind set less than 1/64
// of its timeout ago is kept: a peer gets at least 63/64 of the timeout.
func (sc *serverConn) wait(inFrame bool) error {
	d := sc.s.opts.ReadTimeout
	if !inFrame {
		d = sc.s.opts.IdleTimeout
	}
	now := time.Now()
	if sc.idle == !inFrame && now.Sub(sc.deadlineSet) < d/64 {
		return nil
	}
	sc.idle, sc.deadlineSet = !inFrame, now
	if err := sc.nc.SetReadDeadline(now.Add(d)); err != nil {
		return fmt.Errorf("wire: setting the read deadline: %w", err)
	}
	if sc.draining.Load() && sc.inflight.Load() == 0 {
		sc.wake() // a shutdown's wake-up must not be undone
	}
	return nil
}

// admit refuses a frame longer than MaxFrameBeforeAuth from a connection
// without a token when Authorize refuses its op without one: such a
// connection may only send OpAuth and OpPing, which are far smaller.
func (sc *serverConn) admit(op Op, length uint32, hdr []byte) error {
	authorize := sc.s.opts.Authorize
	if authorize == nil || sc.token != "" || authorize("", op) == nil {
		return nil
	}
	return &ProtocolError{
		Reason: fmt.Sprintf("a %v frame of length %d before the connection presented a token (OpAuth): at most %d bytes are accepted until then", op, length, MaxFrameBeforeAuth),
		Bytes:  bytes.Clone(hdr),
	}
}

// dispatch answers req, in a handler goroutine unless the server answers it
// itself, and releases held, what its frame reserved, once it is answered.
// It fails only when the connection is cancelled while it waits for an
// in-flight slot.
func (sc *serverConn) dispatch(id uint64, req *Request, held int64) error {
	if resp := sc.answerItself(req, false); resp != nil {
		sc.reply(id, resp)
		sc.release(held)
		return nil
	}
	if req.Op != OpBatch {
		if err := sc.acquire(); err != nil {
			sc.release(held)
			return err
		}
		sc.inflight.Add(1)
		sc.handlers.Add(1)
		sc.s.handlers.Go(func() {
			defer sc.handlers.Done()
			sc.reply(id, sc.handle(req))
			sc.release(held)
			<-sc.sem
			sc.finished()
		})
		return nil
	}

	if len(req.Batch) == 0 {
		sc.reply(id, &Response{Op: OpBatchResponse})
		sc.release(held)
		return nil
	}
	b := &batch{id: id, resps: make([]Response, len(req.Batch)), held: held}
	b.left.Store(int64(len(req.Batch)))
	sc.inflight.Add(1)
	for i := range req.Batch {
		sub := &req.Batch[i]
		if resp := sc.answerItself(sub, true); resp != nil {
			sc.batchDone(b, i, resp)
			continue
		}
		if err := sc.acquire(); err != nil {
			// The connection ends: the requests not started will not
			// be answered, but what the batch holds must be released
			// once those that started are.
			if b.left.Add(-int64(len(req.Batch)-i)) == 0 {
				sc.release(b.held)
				sc.finished()
			}
			return err
		}
		sc.handlers.Add(1)
		sc.s.handlers.Go(func() {
			defer sc.handlers.Done()
			sc.batchDone(b, i, sc.handle(sub))
			<-sc.sem
		})
	}
	return nil
}

// batch collects the responses of a batch's requests.
type batch struct {
	id    uint64
	resps []Response
	left  atomic.Int64 // responses still to come
	held  int64        // what the batch's frame reserved
}

// batchDone records the response of request i of b, and sends the batch
// response when it was the last one.
func (sc *serverConn) batchDone(b *batch, i int, resp *Response) {
	b.resps[i] = *resp
	if b.left.Add(-1) == 0 {
		sc.reply(b.id, &Response{Op: OpBatchResponse, Batch: b.resps})
		sc.release(b.held)
		sc.finished()
	}
}

// answerItself returns the response to req when the server answers it
// without the handler, or nil: unknown ops, pings, requests that arrive
// during a shutdown, requests that break checkFields, OpAuth, and requests
// that Authorize refuses. It runs on the reader's goroutine, so an OpAuth
// takes effect before the next request is read.
func (sc *serverConn) answerItself(req *Request, inBatch bool) *Response {
	switch {
	case !req.Op.isRequest():
		return errorResponse(CodeUnknownOp, "op %#02x is not a request of protocol version %d", uint8(req.Op), ProtocolVersion)
	case sc.draining.Load():
		return errorResponse(CodeShuttingDown, "the server is shutting down")
	case req.Op == OpPing:
		return &Response{Op: OpPong}
	case req.Op == OpAuth && inBatch:
		return errorResponse(CodeBadRequest, "an Auth cannot be batched")
	}
	if e := checkFields(req); e != nil {
		return &Response{Op: OpErrorResponse, Err: e}
	}
	authorize := sc.s.opts.Authorize
	if req.Op == OpAuth {
		if authorize != nil {
			if e := authorize(string(req.Key), OpAuth); e != nil {
				sc.s.refused.Add(1)
				sc.s.log.Warn("wire: refused a token", "peer", sc.peer, "err", e)
				return &Response{Op: OpErrorResponse, Err: e}
			}
		}
		sc.token = string(req.Key)
		return &Response{Op: OpAuthResponse}
	}
	if authorize != nil && req.Op != OpBatch { // a batch's requests are decided one by one
		if e := authorize(sc.token, req.Op); e != nil {
			sc.s.refused.Add(1)
			return &Response{Op: OpErrorResponse, Err: e}
		}
	}
	return nil
}

// acquire takes an in-flight slot, waiting for one if need be.
func (sc *serverConn) acquire() error {
	select {
	case sc.sem <- struct{}{}:
		return nil
	default:
		sc.s.throttled.Add(1)
	}
	select {
	case sc.sem <- struct{}{}:
		return nil
	case <-sc.ctx.Done():
		return fmt.Errorf("waiting for a request to finish: %w", sc.ctx.Err())
	}
}

// finished records that a request (or a batch) was answered. The last one
// to finish during a shutdown wakes the reader, to end the connection.
func (sc *serverConn) finished() {
	if sc.inflight.Add(-1) == 0 && sc.draining.Load() {
		sc.wake()
	}
}

// drain makes the connection end gracefully, for Shutdown.
func (sc *serverConn) drain() {
	sc.draining.Store(true)
	select {
	case sc.out <- goaway():
	default: // the queue is full; the answers will say it
	}
	if sc.inflight.Load() == 0 {
		sc.wake()
	}
}

// wake interrupts the reader's blocking read; it then ends the connection.
func (sc *serverConn) wake() { _ = sc.nc.SetReadDeadline(time.Now()) }

// handle calls the handler and checks its response.
func (sc *serverConn) handle(req *Request) (resp *Response) {
	defer func() {
		if r := recover(); r != nil {
			sc.s.log.Error("wire: handler panicked", "peer", sc.peer, "op", req.Op, "panic", r, "stack", string(debug.Stack()))
			resp = errorResponse(CodeInternal, "the handler failed serving a %v", req.Op)
		}
	}()
	return sc.check(req, sc.s.opts.Handler.Handle(sc.ctx, req))
}

// check returns resp, with its Op set, if it can answer req; else a
// CodeInternal error, and it logs the handler's mistake.
func (sc *serverConn) check(req *Request, resp *Response) *Response {
	want := req.Op.responseOp()
	var problem string
	switch {
	case resp == nil:
		problem = "returned no response"
	case resp.Err != nil:
		if resp.Op == OpErrorResponse {
			return resp
		}
		return &Response{Op: OpErrorResponse, Err: resp.Err}
	case resp.Op != 0 && resp.Op != want:
		problem = fmt.Sprintf("answered with a %v", resp.Op)
	case want == OpPutResponse && (resp.Outcome < OutcomeWritten || resp.Outcome > OutcomeStale):
		problem = fmt.Sprintf("answered with outcome %d", resp.Outcome)
	case want == OpDigestResponse && len(resp.Digests) != len(req.Ranges):
		problem = fmt.Sprintf("answered %d digests for %d ranges", len(resp.Digests), len(req.Ranges))
	case want == OpRangeSummaryResponse && uint64(len(resp.Entries)) > uint64(req.Limit):
		problem = fmt.Sprintf("answered %d entries for a limit of %d", len(resp.Entries), req.Limit)
	case want == OpRangeSummaryResponse && badEntry(resp.Entries) >= 0:
		i := badEntry(resp.Entries)
		problem = fmt.Sprintf("answered entry %d with a key of %d bytes (MaxKeySize %d)", i, len(resp.Entries[i].Key), MaxKeySize)
	case want == OpRangeStreamResponse && len(resp.Stream) > MaxStreamEntries:
		problem = fmt.Sprintf("answered %d records, more than MaxStreamEntries (%d)", len(resp.Stream), MaxStreamEntries)
	case want == OpRangeStreamResponse && badStreamEntry(resp.Stream) >= 0:
		i := badStreamEntry(resp.Stream)
		problem = fmt.Sprintf("answered record %d with a key of %d bytes (MaxKeySize %d)", i, len(resp.Stream[i].Key), MaxKeySize)
	case resp.Op == want:
		return resp
	default:
		r := *resp // leave the handler's response alone: it may be shared
		r.Op = want
		return &r
	}
	sc.s.log.Error("wire: handler "+problem, "peer", sc.peer, "op", req.Op)
	return errorResponse(CodeInternal, "the handler %s to a %v", problem, req.Op)
}

// badStreamEntry returns the index of the first stream record whose key is
// empty or longer than MaxKeySize, or -1.
func badStreamEntry(entries []StreamEntry) int {
	for i := range entries {
		if n := len(entries[i].Key); n == 0 || n > MaxKeySize {
			return i
		}
	}
	return -1
}

// badEntry returns the index of the first entry whose key is empty or longer
// than MaxKeySize, or -1.
func badEntry(entries []SummaryEntry) int {
	for i := range entries {
		if n := len(entries[i].Key); n == 0 || n > MaxKeySize {
			return i
		}
	}
	return -1
}

// reply sends resp, or a CodeTooLarge error if resp does not fit in a frame.
func (sc *serverConn) reply(id uint64, resp *Response) {
	if n := frameLengthCounted + responseBodySize(resp); n > sc.s.opts.MaxFrameSize {
		resp = errorResponse(CodeTooLarge, "the %v of %d bytes exceeds MaxFrameSize (%d)", resp.kind(), n, sc.s.opts.MaxFrameSize)
	}
	sc.send(encodeResponse(id, resp))
}

// send queues a frame for the writer; it drops it if the writer has
// returned.
func (sc *serverConn) send(f []byte) {
	select {
	case sc.out <- f:
	case <-sc.writerDone:
	}
}

// write writes f and the frames queued behind it through a buffered writer
// borrowed for the burst.
func (sc *serverConn) write(f []byte) error {
	bw := sc.s.writers.Get().(*bufio.Writer)
	bw.Reset(sc.nc)
	err := writeFrames(sc.nc, bw, sc.out, f, sc.s.opts.WriteTimeout)
	bw.Reset(nil)
	sc.s.writers.Put(bw)
	return err
}

// writeLoop writes queued responses until serve stops it, then writes what
// is still queued. A write error closes the connection.
func (sc *serverConn) writeLoop() {
	defer close(sc.writerDone)
	for {
		var err error
		select {
		case f := <-sc.out:
			err = sc.write(f)
		case <-sc.stop:
			select {
			case f := <-sc.out:
				err = sc.write(f)
			default:
			}
			if err != nil {
				sc.s.log.Debug("wire: writing failed", "peer", sc.peer, "err", err)
			}
			return
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				sc.s.log.Warn("wire: the peer took none of its answers for the write timeout, closing the connection", "peer", sc.peer, "timeout", sc.s.opts.WriteTimeout)
				sc.s.writeTimeouts.Add(1)
			}
			sc.s.log.Debug("wire: writing failed, closing the connection", "peer", sc.peer, "err", err)
			sc.cancel()
			sc.nc.Close() // wakes the reader
			return
		}
	}
}
