package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"time"
)

// The handshake, drawn in the package doc. These constants are part of the
// wire format.
const (
	// ProtocolVersion is the version of the protocol this package speaks,
	// and the highest it knows.
	ProtocolVersion = 1
	// minProtocolVersion is the lowest version this package speaks.
	minProtocolVersion = 1
	// magic opens every handshake.
	magic = "TAKO"
	// helloSize is the size of a handshake message: magic, version, flags.
	helloSize = 4 + 2 + 2
)

// appendHello appends a handshake message.
func appendHello(b []byte, version, flags uint16) []byte {
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, version)
	return binary.BigEndian.AppendUint16(b, flags)
}

// parseHello checks the magic of a handshake message and returns its version
// and flags.
func parseHello(h []byte) (version, flags uint16, err error) {
	if len(h) < helloSize || string(h[:4]) != magic {
		reason := fmt.Sprintf("handshake does not start with %q", magic)
		if looksLikeHTTP(h) {
			reason += " (looks like HTTP: this port speaks Tako's binary protocol)"
		}
		return 0, 0, &ProtocolError{Reason: reason, Bytes: bytes.Clone(h[:min(len(h), maxReportedBytes)])}
	}
	return binary.BigEndian.Uint16(h[4:]), binary.BigEndian.Uint16(h[6:]), nil
}

func looksLikeHTTP(h []byte) bool {
	for _, m := range []string{"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC", "PRI "} {
		if bytes.HasPrefix(h, []byte(m)) {
			return true
		}
	}
	return false
}

// errNoHello is what serverHandshake returns when the peer closed the
// connection, or sent nothing before the deadline: a port probe, not a
// protocol error.
var errNoHello = errors.New("wire: no handshake")

// serverHandshake reads a client's handshake from r and answers on w. It
// returns the version the connection speaks: the lower of the client's and
// ProtocolVersion. When that version is too old, it answers with its own
// version followed by a connection-level error response, and fails.
func serverHandshake(r io.Reader, w io.Writer) (uint16, error) {
	var h [helloSize]byte
	n, err := io.ReadFull(r, h[:])
	if err != nil {
		if n == 0 {
			return 0, fmt.Errorf("%w: %w", errNoHello, err)
		}
		return 0, &ProtocolError{
			Reason: fmt.Sprintf("handshake cut after %d of %d bytes: %v", n, helloSize, err),
			Bytes:  bytes.Clone(h[:n]),
		}
	}
	version, _, err := parseHello(h[:])
	if err != nil {
		return 0, err
	}
	// Flags ask for optional features; version 1 defines none and grants
	// none, so the answer's flags are 0.
	v := min(version, ProtocolVersion)
	if v < minProtocolVersion {
		msg := fmt.Sprintf("protocol version %d is not supported: this server speaks versions %d to %d", version, minProtocolVersion, ProtocolVersion)
		reply := appendHello(nil, ProtocolVersion, 0)
		reply = append(reply, encodeResponse(0, errorResponse(CodeBadRequest, "%s", msg))...)
		_, _ = w.Write(reply) // best effort: the connection closes anyway
		return 0, &ProtocolError{Reason: msg, Offset: 4, Bytes: bytes.Clone(h[4:])}
	}
	_, err = w.Write(appendHello(nil, v, 0))
	return v, err
}

// clientHandshake sends a handshake on rw and checks the server's answer.
func clientHandshake(rw io.ReadWriter) error {
	if _, err := rw.Write(appendHello(nil, ProtocolVersion, 0)); err != nil {
		return err
	}
	var h [helloSize]byte
	if n, err := io.ReadFull(rw, h[:]); err != nil {
		if n == 0 {
			return err
		}
		return &ProtocolError{
			Reason: fmt.Sprintf("handshake answer cut after %d of %d bytes: %v", n, helloSize, err),
			Bytes:  bytes.Clone(h[:n]),
		}
	}
	version, flags, err := parseHello(h[:])
	switch {
	case err != nil:
		return err
	case version != ProtocolVersion:
		return &ProtocolError{Reason: fmt.Sprintf("server answered protocol version %d, this client speaks %d", version, ProtocolVersion), Offset: 4, Bytes: bytes.Clone(h[4:])}
	case flags != 0:
		return &ProtocolError{Reason: fmt.Sprintf("server granted flags %#04x that were not asked for", flags), Offset: 6, Bytes: bytes.Clone(h[6:])}
	}
	return nil
}

// frame is one frame as read: its body is freshly allocated and owned by the
// reader's caller.
type frame struct {
	op   Op
	id   uint64
	body []byte
	// held is what frameReader.reserve reserved for the body, which the
	// caller releases once the request is answered.
	held int64
	// refused says that reserve refused the body: it was read and
	// dropped, and body is nil.
	refused bool
}

// frameChunk is the first allocation for a frame's body larger than it;
// the body's buffer then doubles as its bytes arrive.
const frameChunk = 64 << 10

// frameReader reads frames from a stream. It checks the length field against
// its limit (and admit) before allocating anything, and grows the body's
// buffer only as the body's bytes arrive: from nothing until the first of
// them, then frameChunk, then doubling up to the length. A peer that
// announces a large frame and sends little of it therefore costs at most
// frameChunk or twice what it sent, never the length it announced. A frame
// may arrive split across any number of reads.
type frameReader struct {
	r   *bufio.Reader
	max int // the frame size limit: the largest length field accepted
	// admit, when not nil, is asked about a frame whose length field
	// exceeds MaxFrameBeforeAuth, with its header, before any of its body
	// is read; an error refuses the frame and is returned by next.
	admit func(op Op, length uint32, hdr []byte) error
	// wait, when not nil, is called before every read of the stream that
	// may block: with inFrame false while no byte of the next frame has
	// arrived, true inside a frame. The server sets its read deadlines
	// there; an error is returned by next.
	wait func(inFrame bool) error
	// reserve, when not nil, is asked for the n bytes of a frame's body
	// once the first of them has arrived, before any buffer is made for
	// it. It returns what it reserved, which the frame carries in held;
	// the body's buffer is then allocated whole at once, since the
	// reservation pays for it. With errRefused, the body is skipped (read
	// and dropped) and the frame returned with refused set; another error
	// is returned by next. release gives back what reserve reserved for a
	// frame that next fails to read.
	reserve func(n int) (int64, error)
	release func(held int64)
	hdr     [FrameHeaderSize]byte
}

// errRefused is what frameReader.reserve returns to have a frame's body
// skipped.
var errRefused = errors.New("wire: no room for the frame's body")

// newFrameReader returns a frameReader of r with the frame size limit limit;
// r is read through a buffer of bufferSize unless it is a *bufio.Reader.
func newFrameReader(r io.Reader, limit int) *frameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, bufferSize)
	}
	return &frameReader{r: br, max: limit}
}

// fill makes at least n bytes buffered (n at most the buffer's size) and
// returns them, calling wait before each read of the stream. When it cannot,
// it returns what is buffered and why.
func (fr *frameReader) fill(n int, inFrame bool) ([]byte, error) {
	for fr.r.Buffered() < n && fr.wait != nil {
		if err := fr.wait(inFrame); err != nil {
			return nil, err
		}
		// One read: each wait bounds only the next one.
		if b, err := fr.r.Peek(fr.r.Buffered() + 1); err != nil {
			return b, err
		}
	}
	return fr.r.Peek(n)
}

// next reads the next frame. It returns io.EOF when the stream ends between
// frames, a *ProtocolError when the stream ends inside a frame or a length is
// out of bounds, admit's and wait's errors, and other errors of the stream as
// they are.
func (fr *frameReader) next() (frame, error) {
	if _, err := fr.fill(1, false); err != nil {
		return frame{}, err
	}
	h, err := fr.fill(FrameHeaderSize, true)
	if err != nil {
		if !isEOF(err) {
			return frame{}, err
		}
		return frame{}, &ProtocolError{
			Reason: fmt.Sprintf("stream ended after %d of the %d bytes of a frame header", len(h), FrameHeaderSize),
			Bytes:  bytes.Clone(h),
		}
	}
	copy(fr.hdr[:], h)
	_, _ = fr.r.Discard(FrameHeaderSize) // buffered: cannot fail
	length := binary.BigEndian.Uint32(fr.hdr[:4])
	switch {
	case length < frameLengthCounted:
		return frame{}, &ProtocolError{
			Reason: fmt.Sprintf("frame length %d is shorter than the %d bytes of op and request id", length, frameLengthCounted),
			Bytes:  bytes.Clone(fr.hdr[:]),
		}
	case uint64(length) > uint64(fr.max):
		return frame{}, &ProtocolError{
			Reason: fmt.Sprintf("frame length %d exceeds MaxFrameSize (%d)", length, fr.max),
			Bytes:  bytes.Clone(fr.hdr[:]),
		}
	}
	f := frame{op: Op(fr.hdr[4]), id: binary.BigEndian.Uint64(fr.hdr[5:])}
	if length > MaxFrameBeforeAuth && fr.admit != nil {
		if err := fr.admit(f.op, length, fr.hdr[:]); err != nil {
			return frame{}, err
		}
	}
	n := int(length - frameLengthCounted)
	cut := func(read int, err error) error {
		if !isEOF(err) {
			return err
		}
		return &ProtocolError{
			Reason: fmt.Sprintf("stream ended after %d of the %d body bytes of a %v frame", read, n, f.op),
			Bytes:  bytes.Clone(fr.hdr[:]),
		}
	}
	if n > 0 && fr.reserve != nil {
		if _, err := fr.fill(1, true); err != nil {
			return frame{}, cut(0, err)
		}
		held, err := fr.reserve(n)
		switch {
		case errors.Is(err, errRefused):
			if skipped, err := fr.skip(n); err != nil {
				return frame{}, cut(skipped, err)
			}
			f.refused = true
			return f, nil
		case err != nil:
			return frame{}, err
		}
		f.held = held
	}
	body, err := fr.body(n, f.held > 0)
	if err != nil {
		if f.held > 0 {
			fr.release(f.held)
		}
		return frame{}, cut(len(body), err)
	}
	f.body = body
	return f, nil
}

// skip reads n bytes of the stream and drops them. On an error it returns
// how many it read.
func (fr *frameReader) skip(n int) (int, error) {
	skipped := 0
	for skipped < n {
		if fr.r.Buffered() == 0 {
			if fr.wait != nil {
				if err := fr.wait(true); err != nil {
					return skipped, err
				}
			}
			if _, err := fr.r.Peek(1); err != nil {
				return skipped, err
			}
		}
		k, _ := fr.r.Discard(min(n-skipped, fr.r.Buffered())) // buffered: cannot fail
		skipped += k
	}
	return skipped, nil
}

// isEOF reports whether err says that the stream ended.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// body reads a body of n bytes into a buffer that grows as they arrive, or,
// when whole, into one buffer of n bytes. On an error it returns what it
// read.
func (fr *frameReader) body(n int, whole bool) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	var body []byte
	if whole {
		body = make([]byte, 0, n)
	}
	for len(body) < n {
		if len(body) == cap(body) {
			if len(body) == 0 {
				// Allocate nothing until the body begins to arrive.
				if _, err := fr.fill(1, true); err != nil {
					return body, err
				}
			}
			// Double: the buffer never exceeds twice what arrived,
			// or frameChunk.
			b := make([]byte, len(body), min(n, max(2*cap(body), frameChunk)))
			copy(b, body)
			body = b
		}
		if fr.r.Buffered() == 0 && fr.wait != nil {
			if err := fr.wait(true); err != nil {
				return body, err
			}
		}
		// From the buffer when it holds something, else one read of
		// the stream (straight into body when there is room for a
		// buffer's worth).
		m, err := fr.r.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil && len(body) < n {
			return body, err
		}
	}
	return body, nil
}

// writeFrames writes first and every frame queued in out behind it to bw,
// then flushes: callers that send concurrently share write system calls.
// When the queue runs empty, the writer yields the processor once before
// it flushes: the goroutines that are about to queue a frame (the other
// replica's request of the same coordinated read, the answers a server's
// handlers are finishing) then join this write instead of paying for their
// own. With nothing else runnable the yield returns at once. Measured on
// the benchmark cluster under 64 clients' GETs through the proxy
// (docs/performance.md): each node's writes per request fell from 0.7 to
// 0.14, its CPU per request by a third. timeout bounds the whole write; a
// peer that does not read for that long fails it.
func writeFrames(nc net.Conn, bw *bufio.Writer, out <-chan []byte, first []byte, timeout time.Duration) error {
	if err := nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := bw.Write(first); err != nil {
		return err
	}
	yielded := false
	for {
		select {
		case f := <-out:
			if _, err := bw.Write(f); err != nil {
				return err
			}
		default:
			if !yielded {
				yielded = true
				runtime.Gosched()
				continue
			}
			return bw.Flush()
		}
	}
}

// bufferSize is the size of the buffered reader and writer of a connection.
const bufferSize = 64 << 10
