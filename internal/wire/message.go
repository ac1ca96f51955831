package wire

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/takodb/tako/internal/record"
)

// Record is one version of a key, as every layer of Tako speaks of it
// (internal/record): what a replica stores and what Get and Put carry. In
// an OpPut request, a Timestamp of 0 asks the node to stamp the record
// itself. A tombstone's Value is not sent, and decodes as nil; so does an
// empty value.
type Record = record.Record

// Outcome says what a Put did. Its values are part of the wire format.
type Outcome uint8

const (
	// OutcomeWritten means the record was new, or won over the stored one,
	// and is now stored.
	OutcomeWritten Outcome = 1
	// OutcomeUnchanged means an identical record was already stored.
	OutcomeUnchanged Outcome = 2
	// OutcomeStale means the record was not stored: a record that wins over
	// it is stored, and is the Current of the response.
	OutcomeStale Outcome = 3
)

// String returns the outcome's name, such as "written".
func (o Outcome) String() string {
	switch o {
	case OutcomeWritten:
		return "written"
	case OutcomeUnchanged:
		return "unchanged"
	case OutcomeStale:
		return "stale"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// PutResult returns the domain's record.PutResult of a put response
// whose outcome is o and whose current record is current; an error for
// an outcome this version does not know.
func (o Outcome) PutResult(current Record) (record.PutResult, error) {
	var out record.Outcome
	switch o {
	case OutcomeWritten:
		out = record.Written
	case OutcomeUnchanged:
		out = record.Unchanged
	case OutcomeStale:
		out = record.Stale
	default:
		return record.PutResult{}, fmt.Errorf("wire: unknown outcome %v", o)
	}
	return record.PutResult{Outcome: out, Current: record.Record(current)}, nil
}

// OutcomeOf returns the wire's outcome of the domain's record.Outcome.
func OutcomeOf(o record.Outcome) Outcome {
	switch o {
	case record.Written:
		return OutcomeWritten
	case record.Unchanged:
		return OutcomeUnchanged
	}
	return OutcomeStale
}

// Op is the kind of a message: the op byte of a frame. Requests are
// 0x01-0x7f, responses 0x80-0xff. The values are part of the wire format:
// new kinds are appended, existing ones never change meaning or number.
type Op uint8

// Requests. The comment of each names its body and the response kind that
// answers it; every request may also be answered by OpErrorResponse.
const (
	// OpReplicaGet {Key} → OpRecordResponse: the peer's local store only
	// (node to node).
	OpReplicaGet Op = 0x01
	// OpReplicaPut {Key, Record} → OpPutResponse: the peer's local store
	// only (node to node).
	OpReplicaPut Op = 0x02
	// OpGet {Key} → OpRecordResponse: the node coordinates the read across
	// the key's replicas (public).
	OpGet Op = 0x03
	// OpPut {Key, Record} → OpPutResponse: the node coordinates the write
	// across the key's replicas (public). Record.Timestamp 0 asks the node
	// to stamp it.
	OpPut Op = 0x04
	// OpPing {} → OpPong. The server answers it itself, without calling
	// the Handler.
	OpPing Op = 0x05
	// OpBatch {[]Request} → OpBatchResponse with one response per request,
	// in the same order. Batches do not nest.
	OpBatch Op = 0x06
	// OpDigest {Ranges} → OpDigestResponse with one RangeDigest per range,
	// in the same order: the peer's local store only (node to node, for
	// anti-entropy). 1 to MaxRanges ranges.
	//
	// OpDigest and OpRangeSummary were appended to protocol version 1: a
	// peer that predates them answers CodeUnknownOp, alone or in a batch.
	OpDigest Op = 0x07
	// OpRangeSummary {Ranges, Limit} → OpRangeSummaryResponse: the first
	// Limit records of the peer's local store whose keys hash into the one
	// range of Ranges, as SummaryEntry values in (hash, key) order (node to
	// node, for anti-entropy). Limit is 1 to MaxSummaryEntries.
	OpRangeSummary Op = 0x08
	// OpAuth {Key: a token} → OpAuthResponse: the connection presents a
	// token (1 to MaxKeySize bytes), with which the server (its
	// ServerOptions.Authorize) decides every later request of the
	// connection. The server answers it itself, without calling the
	// Handler; an unknown token is answered CodeUnauthorized and changes
	// nothing. It is not allowed in a batch. Appended to protocol version
	// 1: a server that predates it answers CodeUnknownOp, and checks no
	// token.
	OpAuth Op = 0x09
	// OpReplicaGetLocal {Key} → OpRecordResponse: the peer's local store
	// only, like OpReplicaGet, except that a peer refilling the key's range
	// does not fetch the key from the other replicas first (no
	// read-through): it answers CodeUnavailable for a key it lacks there.
	// Node to node: it is what a read-through asks, so that two refilling
	// nodes never ask each other in a loop. Appended to protocol version 1.
	OpReplicaGetLocal Op = 0x0a
	// OpRangeStream {Ranges (exactly one), After, Limit} →
	// OpRangeStreamResponse: the records of the peer's local store whose
	// keys hash into the range, in (hash, key) order, starting after the
	// key After (at the start of the range when After is empty), as many as
	// fit in about Limit bytes of keys and values (at least one when any is
	// left; none, with only the estimates of what is left, when Limit is
	// 0). Node to node, for refilling a node that lost its data or gained
	// ranges. Appended to protocol version 1.
	OpRangeStream Op = 0x0b
	// OpPurge {Key} → OpRecordResponse: the node removes the key from every
	// one of its replicas, whatever their records (an operator's purge of a
	// key whose version breaks the timestamp rule), leaving no tombstone;
	// Found says that a replica held a record. It fails CodeUnavailable,
	// naming them, when some replicas could not be reached (those reached
	// are purged). Public, admin only. Appended to protocol version 1.
	OpPurge Op = 0x0c
	// OpReplicaPurge {Key} → OpRecordResponse: the peer removes the key
	// from its local store, whatever its record; Found says it held one.
	// Node to node, for OpPurge. Appended to protocol version 1.
	OpReplicaPurge Op = 0x0d
	// OpReplicaStat {Key} → OpRecordResponse: the peer's record of the key
	// as OpReplicaGet answers it (a refilling peer reads it through), its
	// timestamp and tombstone flag without the value. Node to node: what
	// a write stamped by the cluster asks a read quorum first, to stamp
	// itself above every version acknowledged before it. Appended to
	// protocol version 1.
	OpReplicaStat Op = 0x0e
	// OpFencedGet, OpFencedStat and OpFencedPut {Epoch, Key[, Record]} are
	// OpReplicaGet, OpReplicaStat and OpReplicaPut sent by a coordinator
	// that is not a node (a Go client or proxy that coordinates its own
	// requests), with the epoch of the configuration it placed the
	// request by: a node whose configuration places keys differently
	// since a later epoch refuses them with CodeStaleConfig, so that a
	// coordinator one step behind a migration cannot complete a request
	// on the replicas of a layout the cluster has left. Appended to
	// protocol version 1; a node of a version without them answers
	// CodeUnknownOp.
	OpFencedGet  Op = 0x0f
	OpFencedStat Op = 0x10
	OpFencedPut  Op = 0x11
)

// Responses.
const (
	// OpRecordResponse {Found, Record} answers OpGet, OpReplicaGet,
	// OpReplicaGetLocal and OpReplicaStat (without the value); {Found}
	// alone answers OpPurge and OpReplicaPurge.
	OpRecordResponse Op = 0x81
	// OpPutResponse {Outcome, Current} answers OpPut and OpReplicaPut.
	OpPutResponse Op = 0x82
	// OpPong {} answers OpPing.
	OpPong Op = 0x83
	// OpBatchResponse {[]Response} answers OpBatch.
	OpBatchResponse Op = 0x84
	// OpErrorResponse {Code, Message} answers any request that failed. With
	// request id 0 it is about the whole connection.
	OpErrorResponse Op = 0x85
	// OpDigestResponse {Digests} answers OpDigest.
	OpDigestResponse Op = 0x86
	// OpRangeSummaryResponse {Entries, Truncated} answers OpRangeSummary.
	OpRangeSummaryResponse Op = 0x87
	// OpAuthResponse {} answers OpAuth: the token is accepted.
	OpAuthResponse Op = 0x88
	// OpRangeStreamResponse {Truncated, RemainingKeys, RemainingBytes,
	// Stream} answers OpRangeStream. Its records carry a CRC-32C checksum
	// that the decoder verifies.
	OpRangeStreamResponse Op = 0x89
)

// String returns the op's name, such as "Get".
func (op Op) String() string {
	switch op {
	case OpReplicaGet:
		return "ReplicaGet"
	case OpReplicaPut:
		return "ReplicaPut"
	case OpGet:
		return "Get"
	case OpPut:
		return "Put"
	case OpPing:
		return "Ping"
	case OpBatch:
		return "Batch"
	case OpDigest:
		return "Digest"
	case OpRangeSummary:
		return "RangeSummary"
	case OpAuth:
		return "Auth"
	case OpReplicaGetLocal:
		return "ReplicaGetLocal"
	case OpRangeStream:
		return "RangeStream"
	case OpPurge:
		return "Purge"
	case OpReplicaPurge:
		return "ReplicaPurge"
	case OpReplicaStat:
		return "ReplicaStat"
	case OpFencedGet:
		return "FencedGet"
	case OpFencedStat:
		return "FencedStat"
	case OpFencedPut:
		return "FencedPut"
	case OpRecordResponse:
		return "RecordResponse"
	case OpPutResponse:
		return "PutResponse"
	case OpPong:
		return "Pong"
	case OpBatchResponse:
		return "BatchResponse"
	case OpErrorResponse:
		return "ErrorResponse"
	case OpDigestResponse:
		return "DigestResponse"
	case OpRangeSummaryResponse:
		return "RangeSummaryResponse"
	case OpAuthResponse:
		return "AuthResponse"
	case OpRangeStreamResponse:
		return "RangeStreamResponse"
	}
	return fmt.Sprintf("Op(%#02x)", uint8(op))
}

// isRequest reports whether op is a request kind of this version.
func (op Op) isRequest() bool { return op >= OpReplicaGet && op <= OpFencedPut }

// responseOp returns the response kind that answers a request of kind op
// when it succeeds, or 0 if op is not a request kind.
func (op Op) responseOp() Op {
	switch op {
	case OpReplicaGet, OpGet, OpReplicaGetLocal, OpPurge, OpReplicaPurge, OpReplicaStat, OpFencedGet, OpFencedStat:
		return OpRecordResponse
	case OpReplicaPut, OpPut, OpFencedPut:
		return OpPutResponse
	case OpPing:
		return OpPong
	case OpBatch:
		return OpBatchResponse
	case OpDigest:
		return OpDigestResponse
	case OpRangeSummary:
		return OpRangeSummaryResponse
	case OpAuth:
		return OpAuthResponse
	case OpRangeStream:
		return OpRangeStreamResponse
	}
	return 0
}

// hasKey reports whether requests of kind op carry a key (for OpAuth, the
// token, in the same format).
func (op Op) hasKey() bool {
	switch op {
	case OpReplicaGet, OpGet, OpReplicaPut, OpPut, OpAuth, OpReplicaGetLocal, OpPurge, OpReplicaPurge, OpReplicaStat,
		OpFencedGet, OpFencedStat, OpFencedPut:
		return true
	}
	return false
}

// Unfenced returns the replica op that a fenced op is (OpFencedGet:
// OpReplicaGet, and so on), and op itself for any other.
func (op Op) Unfenced() Op {
	switch op {
	case OpFencedGet:
		return OpReplicaGet
	case OpFencedStat:
		return OpReplicaStat
	case OpFencedPut:
		return OpReplicaPut
	}
	return op
}

// Request is a request message. Which fields count depends on Op: Key for
// the get and put kinds, Record for the put kinds, Batch for OpBatch, Ranges
// for OpDigest, Ranges and Limit for OpRangeSummary, Ranges, After and Limit
// for OpRangeStream.
//
// On the server, the Key and Record.Value of a request given to a Handler
// alias a buffer that the server never reuses: the handler may keep them.
type Request struct {
	Op     Op
	Key    []byte
	Record Record
	// Epoch is the epoch of the coordinator's configuration, for the
	// fenced ops.
	Epoch int64
	// Batch holds the requests of an OpBatch, none of them a batch, at most
	// MaxBatch.
	Batch []Request
	// Ranges are the ranges of the hash space of an OpDigest (1 to
	// MaxRanges of them) or of an OpRangeSummary (exactly one).
	Ranges []HashRange
	// Limit is the most entries an OpRangeSummary asks for, 1 to
	// MaxSummaryEntries; for an OpRangeStream, about how many bytes of keys
	// and values the response may carry (0: none, only the estimates).
	Limit uint32
	// After is where an OpRangeStream resumes: the records after this key
	// in (hash, key) order; empty for the start of the range. 0 to
	// MaxKeySize bytes.
	After []byte
}

// HashRange is a range of the hash space: the keys whose 32-bit position on
// the hash ring (keyhash.Sum) is within [Lo, Hi], both inclusive, so that
// {0, math.MaxUint32} is the whole space. Lo > Hi is the empty range, which
// holds no key.
type HashRange struct{ Lo, Hi uint32 }

// Empty reports whether r holds no hash: Lo > Hi.
func (r HashRange) Empty() bool { return r.Lo > r.Hi }

// Contains reports whether hash h is within r.
func (r HashRange) Contains(h uint32) bool { return r.Lo <= h && h <= r.Hi }

// RangeDigest summarises the records a replica holds in one HashRange, so
// that two replicas can tell whether they agree on the range without
// exchanging its keys.
type RangeDigest struct {
	// XOR is the exclusive or of the fingerprints of the records (see
	// SummaryEntry.Fingerprint), tombstones included; 0 for no record.
	XOR uint64
	// Count is the number of records, tombstones included.
	Count uint64
}

// SummaryEntry is one record of an OpRangeSummaryResponse: its key and
// enough of the record to tell whether another replica holds the same one,
// and which of two differing ones is newer, without sending the value.
type SummaryEntry struct {
	// Key is the record's key, 1 to MaxKeySize bytes.
	Key []byte
	// Fingerprint is a 64-bit hash of the key and the whole record
	// (timestamp, tombstone flag, value). The protocol carries it without
	// interpreting it; every node of a cluster must compute it the same
	// way, as RangeDigest.XOR is built from it.
	Fingerprint uint64
	// Timestamp is the record's timestamp, in microseconds since the Unix
	// epoch.
	Timestamp int64
}

// Response is a response message. Which fields count depends on Op: Found and
// Record for OpRecordResponse, Outcome and Current for OpPutResponse, Batch
// for OpBatchResponse, Err for OpErrorResponse, Digests for
// OpDigestResponse, Entries and Truncated for OpRangeSummaryResponse,
// Stream, Truncated, RemainingKeys and RemainingBytes for
// OpRangeStreamResponse.
//
// A Handler may leave Op zero: the server sets it from the request's kind. A
// non-nil Err makes the response an OpErrorResponse whatever its Op.
type Response struct {
	Op      Op
	Found   bool
	Record  Record
	Outcome Outcome
	// Current is the record stored after a Put: the given record for
	// OutcomeWritten and OutcomeUnchanged, the winner for OutcomeStale.
	Current Record
	Err     *Error
	// Batch holds one response per request of the batch, in order. Its
	// entries may be error responses: a batch response succeeds as a whole
	// and each of its requests succeeds or fails on its own.
	Batch []Response
	// Digests holds one digest per range of the OpDigest, in order.
	Digests []RangeDigest
	// Entries are the first records of the OpRangeSummary's range, in
	// (hash, key) order: ascending keyhash.Sum(Key), then ascending key
	// bytes. At most the request's Limit.
	Entries []SummaryEntry
	// Truncated says that the range holds more records than Entries: the
	// caller splits the range and asks again for each part. A handler sets
	// it when the range holds more than Limit records, and may set it with
	// fewer than Limit entries to keep the response within the frame size
	// limit. In an OpRangeStreamResponse it says that the range holds
	// records after the last of Stream: the caller asks again, with After
	// set to the last key it received.
	Truncated bool
	// Stream are the records of an OpRangeStreamResponse, in (hash, key)
	// order, each with a key of 1 to MaxKeySize bytes.
	Stream []StreamEntry
	// RemainingKeys and RemainingBytes estimate what the range of an
	// OpRangeStream holds after the last record of Stream: for progress
	// reports, never for correctness.
	RemainingKeys, RemainingBytes uint64
}

// StreamEntry is one record of an OpRangeStreamResponse.
type StreamEntry struct {
	Key    []byte
	Record Record
}

// Handler serves the requests of a Server. Handle is called concurrently,
// from one goroutine per request, with a ctx that is cancelled when the
// connection breaks, when the peer closes it, or when Shutdown gives up
// waiting; Handle must return soon after. The server calls Handle once per
// request of an OpBatch, concurrently, and assembles the batch response
// itself; it answers OpPing, unknown ops and invalid requests itself. A
// Handler sees only:
//
//   - OpGet, OpPut, OpReplicaGet and OpReplicaPut, with keys of 1 to
//     MaxKeySize bytes;
//   - OpDigest, with 1 to MaxRanges ranges;
//   - OpRangeSummary, with exactly one range and a Limit of 1 to
//     MaxSummaryEntries;
//   - OpReplicaGetLocal, OpPurge and OpReplicaPurge, with a key of 1 to
//     MaxKeySize bytes;
//   - OpRangeStream, with exactly one range and an After of at most
//     MaxKeySize bytes.
//
// Handle returns the response of the request's kind (see Op), or one with Err
// set; ResponseForError turns an error into one. The server answers
// CodeInternal instead of a response of the wrong kind, an
// OpDigestResponse without exactly one digest per range, or an
// OpRangeSummaryResponse with more than Limit entries or an entry whose key
// is empty or longer than MaxKeySize, or an OpRangeStreamResponse with such
// a key. It cannot check the order of the entries: that is the Handler's
// part of the contract.
type Handler interface {
	Handle(ctx context.Context, req *Request) *Response
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) *Response

// Handle calls f(ctx, req).
func (f HandlerFunc) Handle(ctx context.Context, req *Request) *Response { return f(ctx, req) }

// ErrorCode says why a request failed. The values are part of the wire format:
// new codes are appended; a receiver must accept codes it does not know.
type ErrorCode uint16

const (
	// CodeUnavailable: too few replicas answered to reach the quorum.
	CodeUnavailable ErrorCode = 1
	// CodeBadRequest: the request is malformed or invalid (an empty key, a
	// timestamp too far ahead, ...); retrying it unchanged will fail again.
	// With request id 0, the peer broke the protocol (or spoke an
	// unsupported version) and the connection is being closed.
	CodeBadRequest ErrorCode = 2
	// CodeTooLarge: the request or its response does not fit the limits
	// (MaxFrameSize, the deployment's max_value_size).
	CodeTooLarge ErrorCode = 3
	// CodeShuttingDown: the server is shutting down and takes no new
	// requests. With request id 0, the connection will close once the
	// requests in flight are answered: send new ones elsewhere.
	CodeShuttingDown ErrorCode = 4
	// CodeOverloaded: the server sheds load; retry later or elsewhere.
	CodeOverloaded ErrorCode = 5
	// CodeInternal: the server failed (a storage error, a bug).
	CodeInternal ErrorCode = 6
	// CodeUnknownOp: the server does not know the request's op.
	CodeUnknownOp ErrorCode = 7
	// CodeUnauthorized: the server needs a token (OpAuth) that it knows
	// before it serves this request: none was presented, or it is unknown
	// (or was revoked).
	CodeUnauthorized ErrorCode = 8
	// CodeForbidden: the connection's token does not allow this request.
	CodeForbidden ErrorCode = 9
	// CodeInsufficientStorage: a replica's disk is nearly full, so it
	// refuses writes (it keeps serving reads); the write quorum was not
	// reached for that reason. Retrying elsewhere does not help until space
	// is freed on the replicas of the key.
	CodeInsufficientStorage ErrorCode = 10
	// CodeStaleConfig: a fenced request (OpFencedGet, OpFencedStat,
	// OpFencedPut) was placed by a configuration older than the one since
	// which the node places keys as it does: the coordinator must learn
	// the newer configuration, or let a node coordinate the request.
	CodeStaleConfig ErrorCode = 11
)

// String returns the code's name, such as "unavailable".
func (c ErrorCode) String() string {
	switch c {
	case CodeUnavailable:
		return "unavailable"
	case CodeBadRequest:
		return "bad request"
	case CodeTooLarge:
		return "too large"
	case CodeShuttingDown:
		return "shutting down"
	case CodeOverloaded:
		return "overloaded"
	case CodeInternal:
		return "internal error"
	case CodeUnknownOp:
		return "unknown op"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeForbidden:
		return "forbidden"
	case CodeInsufficientStorage:
		return "insufficient storage"
	case CodeStaleConfig:
		return "stale configuration"
	}
	return "error code " + strconv.Itoa(int(c))
}

// Error is an error response: a request that the peer, or this side before
// sending, refused. errors.Is(err, ErrUnavailable) and the like match any
// *Error with that code.
type Error struct {
	Code    ErrorCode
	Message string
}

// Error returns "wire: CODE: MESSAGE".
func (e *Error) Error() string {
	if e.Message == "" {
		return "wire: " + e.Code.String()
	}
	return "wire: " + e.Code.String() + ": " + e.Message
}

// Is reports whether target is an *Error with the same code and either no
// message or the same message, so that errors.Is(err, ErrUnavailable) holds
// for every CodeUnavailable error. A CodeInsufficientStorage error is also
// the domain's record.ErrInsufficientStorage.
func (e *Error) Is(target error) bool {
	if target == record.ErrInsufficientStorage {
		return e.Code == CodeInsufficientStorage
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is, one per error code: each matches every *Error with
// its code. Call returns them (as *Error values with a message) when the
// peer answers with an error response, or when it refuses a request before
// sending it (CodeBadRequest, CodeTooLarge, CodeUnknownOp).
var (
	ErrUnavailable  = &Error{Code: CodeUnavailable}
	ErrBadRequest   = &Error{Code: CodeBadRequest}
	ErrTooLarge     = &Error{Code: CodeTooLarge}
	ErrShuttingDown = &Error{Code: CodeShuttingDown}
	ErrOverloaded   = &Error{Code: CodeOverloaded}
	ErrInternal     = &Error{Code: CodeInternal}
	ErrUnknownOp    = &Error{Code: CodeUnknownOp}
	ErrUnauthorized = &Error{Code: CodeUnauthorized}
	ErrForbidden    = &Error{Code: CodeForbidden}
	// ErrInsufficientStorage matches every CodeInsufficientStorage error.
	ErrInsufficientStorage = &Error{Code: CodeInsufficientStorage}
	// ErrStaleConfig matches every CodeStaleConfig error.
	ErrStaleConfig = &Error{Code: CodeStaleConfig}
)

// PeerFault reports whether err, from a call, says the peer is in trouble
// in a way that costs time: it did not answer before the deadline, or it
// said it is shutting down or overloaded. Callers skip such a peer until a
// probe answers. Fast failures (a refused or broken connection) are not
// faults: a Pool already fails fast while a dial is in backoff, and the
// peer is used again the moment it accepts connections.
func PeerFault(err error) bool {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code == CodeShuttingDown || e.Code == CodeOverloaded
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

// Errors of connections, pools and servers.
var (
	// ErrClosed is returned by Conn.Call and Pool.Call when the connection
	// is closed or broke before the response arrived; the error also wraps
	// the cause (a *ProtocolError, an I/O error). Conn.Close fails pending
	// calls with ErrClosed itself.
	ErrClosed = errors.New("wire: connection closed")
	// ErrUnreachable is wrapped by the errors of Pool.Call when dialling the
	// address failed, and while the address is in backoff after that.
	ErrUnreachable = errors.New("wire: peer unreachable")
	// ErrServerClosed is returned by Server.Serve after Shutdown.
	ErrServerClosed = errors.New("wire: server closed")
	// ErrProtocol is wrapped by every *ProtocolError.
	ErrProtocol = errors.New("wire: protocol error")
)

// ProtocolError is a violation of the protocol by a peer: bad handshake
// bytes, a length field beyond a limit or beyond its frame, an unknown flag,
// trailing bytes. The connection that saw it is closed. It names the peer
// and shows the offending bytes.
type ProtocolError struct {
	// Peer is the peer's address; empty when the error comes from a
	// decoder that was not reading from a connection.
	Peer string
	// Reason says what is wrong.
	Reason string
	// Offset is where Bytes start: a byte offset into the handshake or
	// into the frame, counted from the frame's length field.
	Offset int
	// Bytes are up to 16 of the offending bytes, starting at Offset.
	Bytes []byte
}

// Error returns "wire: protocol error from PEER: REASON (at byte N: xx xx ...)".
func (e *ProtocolError) Error() string {
	from := ""
	if e.Peer != "" {
		from = " from " + e.Peer
	}
	return fmt.Sprintf("wire: protocol error%s: %s (at byte %d: [% x])", from, e.Reason, e.Offset, e.Bytes)
}

// Unwrap returns ErrProtocol.
func (e *ProtocolError) Unwrap() error { return ErrProtocol }

// ResponseForError returns the error response for err: err itself when it
// is (or wraps) an *Error, else CodeInternal with err's text.
func ResponseForError(err error) *Response {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Message: err.Error()}
	}
	return &Response{Op: OpErrorResponse, Err: e}
}

// errorResponse returns an error response of code with a formatted message.
func errorResponse(code ErrorCode, format string, args ...any) *Response {
	return &Response{Op: OpErrorResponse, Err: &Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}
