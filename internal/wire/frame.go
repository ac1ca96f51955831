package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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
}

// frameReader reads frames from a stream. It checks the length field against
// its limit before allocating the body, and allocates exactly the body. A
// frame may arrive split across any number of reads.
type frameReader struct {
	r   io.Reader // a *bufio.Reader in practice
	max int       // the frame size limit: the largest length field accepted
	hdr [frameHeaderSize]byte
}

// next reads the next frame. It returns io.EOF when the stream ends between
// frames, a *ProtocolError when the stream ends inside a frame or a length is
// out of bounds, and other errors of the stream as they are.
func (fr *frameReader) next() (frame, error) {
	if n, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		if n == 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
			return frame{}, err
		}
		return frame{}, &ProtocolError{
			Reason: fmt.Sprintf("stream ended after %d of the %d bytes of a frame header", n, frameHeaderSize),
			Bytes:  bytes.Clone(fr.hdr[:n]),
		}
	}
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
	f := frame{
		op:   Op(fr.hdr[4]),
		id:   binary.BigEndian.Uint64(fr.hdr[5:]),
		body: make([]byte, length-frameLengthCounted),
	}
	if n, err := io.ReadFull(fr.r, f.body); err != nil {
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return frame{}, err
		}
		return frame{}, &ProtocolError{
			Reason: fmt.Sprintf("stream ended after %d of the %d body bytes of a %v frame", n, len(f.body), f.op),
			Bytes:  bytes.Clone(fr.hdr[:]),
		}
	}
	return f, nil
}

// writeFrames writes first and every frame queued in out behind it to bw,
// then flushes: callers that send concurrently share write system calls.
// timeout bounds the whole write; a peer that does not read for that long
// fails it.
func writeFrames(nc net.Conn, bw *bufio.Writer, out <-chan []byte, first []byte, timeout time.Duration) error {
	if err := nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := bw.Write(first); err != nil {
		return err
	}
	for {
		select {
		case f := <-out:
			if _, err := bw.Write(f); err != nil {
				return err
			}
		default:
			return bw.Flush()
		}
	}
}

// bufferSize is the size of the buffered reader and writer of a connection.
const bufferSize = 64 << 10
