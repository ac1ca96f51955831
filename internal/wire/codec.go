package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"unicode/utf8"
)

// Limits. MaxKeySize, MaxBatch, MaxErrorMessageSize, MaxRanges and
// MaxSummaryEntries are part of the wire format: a peer that sends more
// breaks the protocol. The frame size limit is configured per Server and
// Conn, between MinFrameSize and FrameSizeLimit; it bounds every message,
// whatever these limits allow.
const (
	// MaxKeySize is the largest key, in bytes.
	MaxKeySize = 4096
	// MaxBatch is the most requests (and so responses) in one batch.
	MaxBatch = 1024
	// MaxErrorMessageSize is the longest error message, in bytes; longer
	// messages are cut when encoded.
	MaxErrorMessageSize = 4096
	// MaxRanges is the most ranges of an OpDigest, and so digests of an
	// OpDigestResponse: 512 KiB of request, 1 MiB of response.
	MaxRanges = 65536
	// MaxSummaryEntries is the largest Limit of an OpRangeSummary, and so
	// the most entries of an OpRangeSummaryResponse.
	MaxSummaryEntries = 65536
	// MaxStreamEntries is the most records of an OpRangeStreamResponse.
	MaxStreamEntries = 65536
	// DefaultMaxFrameSize is the default frame size limit: a 64 MiB value
	// (the default max_value_size) with 1 MiB of headroom.
	DefaultMaxFrameSize = 65 << 20
	// MinFrameSize is the smallest frame size limit a Server or Conn
	// accepts: room for a key of MaxKeySize and an error message.
	MinFrameSize = 64 << 10
	// FrameSizeLimit is the largest frame size limit a Server or Conn
	// accepts.
	FrameSizeLimit = 1 << 30
	// MaxFrameBeforeAuth is the largest frame, as the value of its length
	// field, that a Server whose Authorize refuses requests without a
	// token accepts from a connection that has not presented one: OpAuth
	// and OpPing, all such a connection may send, are far smaller. A
	// larger frame is a protocol error, refused before its body is read.
	MaxFrameBeforeAuth = 64 << 10
)

// FrameSizeFor returns the frame size limit that carries values of up to
// maxValueSize bytes: the value plus 1 MiB of headroom for the key, the
// headers and other requests of a batch, kept within [MinFrameSize,
// FrameSizeLimit]. Both ends of a connection should use the same limit, and
// derive it from the largest max_value_size of the configuration.
func FrameSizeFor(maxValueSize int64) int {
	return int(min(max(maxValueSize+1<<20, MinFrameSize), FrameSizeLimit))
}

// The layout of frames and bodies, drawn in the package doc. These constants
// are part of the wire format.
const (
	// FrameHeaderSize is the size of every frame's header: the length
	// field, the op and the request id.
	FrameHeaderSize = 4 + 1 + 8
	// frameLengthCounted is the part of the header that the length field
	// counts: the op and the request id.
	frameLengthCounted = 1 + 8
	// keyHeaderSize is the key's length field.
	keyHeaderSize = 2
	// epochSize is a fenced request's configuration epoch.
	epochSize = 8
	// recordHeaderSize is a record's flags, timestamp and value length.
	recordHeaderSize = 1 + 8 + 4
	// flagTombstone is the record flags bit of a tombstone.
	flagTombstone = 1 << 0
	// flagExpires is the record flags bit of a value that expires: its
	// expiry follows the timestamp.
	flagExpires = 1 << 1
	// expirySize is a record's expiry.
	expirySize = 8
	// recordFlagsKnown are the record flags bits this version defines.
	recordFlagsKnown = flagTombstone | flagExpires
	// batchHeaderSize is a batch's count.
	batchHeaderSize = 2
	// batchItemHeaderSize is a batch item's length and op.
	batchItemHeaderSize = 4 + 1
	// errorHeaderSize is an error's code and message length.
	errorHeaderSize = 2 + 2
	// countSize is the count of a list of ranges, digests or summary
	// entries.
	countSize = 4
	// hashRangeSize is a range's lo and hi.
	hashRangeSize = 4 + 4
	// rangeDigestSize is a digest's xor and count.
	rangeDigestSize = 8 + 8
	// summaryRequestSize is an OpRangeSummary body: a range and a limit.
	summaryRequestSize = hashRangeSize + 4
	// summaryHeaderSize is an OpRangeSummaryResponse's flags and count.
	summaryHeaderSize = 1 + countSize
	// summaryEntryFixedSize is a summary entry without its key: its
	// fingerprint and timestamp.
	summaryEntryFixedSize = 8 + 8
	// minSummaryEntrySize is the smallest summary entry: an empty key.
	minSummaryEntrySize = keyHeaderSize + summaryEntryFixedSize
	// flagTruncated is the summary flags bit of a truncated summary.
	flagTruncated = 1 << 0
	// summaryFlagsKnown are the summary flags bits this version defines.
	summaryFlagsKnown = flagTruncated
	// maxReportedBytes is how many offending bytes a ProtocolError shows.
	maxReportedBytes = 16
	// streamRequestSize is an OpRangeStream body without its After key: a
	// range and a limit.
	streamRequestSize = hashRangeSize + 4
	// streamHeaderSize is an OpRangeStreamResponse's flags and remaining
	// keys and bytes, before its count.
	streamHeaderSize = 1 + 8 + 8
	// minStreamEntrySize is the smallest stream entry: a 1-byte key and a
	// tombstone.
	minStreamEntrySize = keyHeaderSize + 1 + recordHeaderSize
	// checksumSize is the CRC-32C after a stream's entries.
	checksumSize = 4
)

// castagnoli is the CRC-32C table of stream checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ---- Encoding ----

// checkRequest returns why req cannot be sent, or nil. It checks what the
// decoder would reject and what a server would refuse: unknown ops, nested or
// long batches, and the fields checkFields checks. The frame size is checked
// by the caller.
func checkRequest(req *Request, inBatch bool) *Error {
	switch {
	case req.Op == OpBatch && inBatch:
		return &Error{Code: CodeBadRequest, Message: "batches do not nest"}
	case req.Op == OpAuth && inBatch:
		return &Error{Code: CodeBadRequest, Message: "an Auth cannot be batched"}
	case !req.Op.isRequest():
		return &Error{Code: CodeUnknownOp, Message: fmt.Sprintf("%v is not a request of protocol version %d", req.Op, ProtocolVersion)}
	case req.Op == OpBatch && len(req.Batch) > MaxBatch:
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("batch of %d requests is longer than MaxBatch (%d)", len(req.Batch), MaxBatch)}
	}
	if e := checkFields(req); e != nil {
		return e
	}
	if req.Op == OpBatch {
		for i := range req.Batch {
			if e := checkRequest(&req.Batch[i], true); e != nil {
				e.Message = fmt.Sprintf("batch request %d: %s", i, e.Message)
				return e
			}
		}
	}
	return nil
}

// checkFields returns why req, of a known op, is invalid, or nil: an empty
// or long key, an OpDigest of no ranges or more than MaxRanges, an
// OpRangeSummary without exactly one range or with a Limit outside [1,
// MaxSummaryEntries]. A server answers such a request with CodeBadRequest,
// without calling its Handler; a client refuses to send it.
func checkFields(req *Request) *Error {
	bad := func(format string, args ...any) *Error {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case req.Op.hasKey() && len(req.Key) == 0:
		return bad("empty key")
	case req.Op.hasKey() && len(req.Key) > MaxKeySize:
		return bad("key of %d bytes is longer than MaxKeySize (%d)", len(req.Key), MaxKeySize)
	case req.Op == OpDigest && len(req.Ranges) == 0:
		return bad("a Digest of no ranges")
	case req.Op == OpDigest && len(req.Ranges) > MaxRanges:
		return bad("a Digest of %d ranges, more than MaxRanges (%d)", len(req.Ranges), MaxRanges)
	case req.Op == OpRangeSummary && len(req.Ranges) != 1:
		return bad("a RangeSummary of %d ranges, not 1", len(req.Ranges))
	case req.Op == OpRangeSummary && (req.Limit == 0 || req.Limit > MaxSummaryEntries):
		return bad("a RangeSummary with limit %d, outside [1, MaxSummaryEntries (%d)]", req.Limit, MaxSummaryEntries)
	case req.Op == OpRangeStream && len(req.Ranges) != 1:
		return bad("a RangeStream of %d ranges, not 1", len(req.Ranges))
	case req.Op == OpRangeStream && len(req.After) > MaxKeySize:
		return bad("a RangeStream after a key of %d bytes, longer than MaxKeySize (%d)", len(req.After), MaxKeySize)
	}
	return nil
}

// requestBodySize returns the size of req's encoded body.
func requestBodySize(req *Request) int {
	switch req.Op {
	case OpReplicaGet, OpGet, OpAuth, OpReplicaGetLocal, OpPurge, OpReplicaPurge, OpReplicaStat:
		return keyHeaderSize + len(req.Key)
	case OpReplicaPut, OpPut:
		return keyHeaderSize + len(req.Key) + recordSize(&req.Record)
	case OpFencedGet, OpFencedStat:
		return epochSize + keyHeaderSize + len(req.Key)
	case OpFencedPut:
		return epochSize + keyHeaderSize + len(req.Key) + recordSize(&req.Record)
	case OpRangeStream:
		return streamRequestSize + keyHeaderSize + len(req.After)
	case OpBatch:
		n := batchHeaderSize
		for i := range req.Batch {
			n += batchItemHeaderSize + requestBodySize(&req.Batch[i])
		}
		return n
	case OpDigest:
		return countSize + len(req.Ranges)*hashRangeSize
	case OpRangeSummary:
		return summaryRequestSize
	}
	return 0
}

func recordSize(r *Record) int {
	switch {
	case r.Tombstone:
		return recordHeaderSize
	case r.ExpiresAt != 0:
		return recordHeaderSize + expirySize + len(r.Value)
	}
	return recordHeaderSize + len(r.Value)
}

// appendRequestBody appends req's body to b. req must pass checkRequest.
func appendRequestBody(b []byte, req *Request) []byte {
	switch req.Op {
	case OpReplicaGet, OpGet, OpAuth, OpReplicaGetLocal, OpPurge, OpReplicaPurge, OpReplicaStat:
		b = appendKey(b, req.Key)
	case OpReplicaPut, OpPut:
		b = appendKey(b, req.Key)
		b = appendRecord(b, &req.Record)
	case OpFencedGet, OpFencedStat:
		b = binary.BigEndian.AppendUint64(b, uint64(req.Epoch))
		b = appendKey(b, req.Key)
	case OpFencedPut:
		b = binary.BigEndian.AppendUint64(b, uint64(req.Epoch))
		b = appendKey(b, req.Key)
		b = appendRecord(b, &req.Record)
	case OpRangeStream:
		b = appendHashRange(b, req.Ranges[0])
		b = binary.BigEndian.AppendUint32(b, req.Limit)
		b = appendKey(b, req.After)
	case OpBatch:
		b = binary.BigEndian.AppendUint16(b, uint16(len(req.Batch)))
		for i := range req.Batch {
			at := len(b)
			b = append(b, 0, 0, 0, 0, byte(req.Batch[i].Op))
			b = appendRequestBody(b, &req.Batch[i])
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	case OpDigest:
		b = binary.BigEndian.AppendUint32(b, uint32(len(req.Ranges)))
		for _, r := range req.Ranges {
			b = appendHashRange(b, r)
		}
	case OpRangeSummary:
		b = appendHashRange(b, req.Ranges[0])
		b = binary.BigEndian.AppendUint32(b, req.Limit)
	}
	return b
}

func appendHashRange(b []byte, r HashRange) []byte {
	b = binary.BigEndian.AppendUint32(b, r.Lo)
	return binary.BigEndian.AppendUint32(b, r.Hi)
}

func appendKey(b, key []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(key)))
	return append(b, key...)
}

func appendRecord(b []byte, r *Record) []byte {
	var flags byte
	value := r.Value
	switch {
	case r.Tombstone:
		flags |= flagTombstone
		value = nil
	case r.ExpiresAt != 0:
		flags |= flagExpires
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Timestamp))
	if flags&flagExpires != 0 {
		b = binary.BigEndian.AppendUint64(b, uint64(r.ExpiresAt))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(value)))
	return append(b, value...)
}

// kind returns the response kind of r: OpErrorResponse when Err is set.
func (r *Response) kind() Op {
	if r.Err != nil {
		return OpErrorResponse
	}
	return r.Op
}

// responseBodySize returns the size of r's encoded body.
func responseBodySize(r *Response) int {
	switch r.kind() {
	case OpRecordResponse:
		if r.Found {
			return 1 + recordSize(&r.Record)
		}
		return 1
	case OpPutResponse:
		return 1 + recordSize(&r.Current)
	case OpBatchResponse:
		n := batchHeaderSize
		for i := range r.Batch {
			n += batchItemHeaderSize + responseBodySize(&r.Batch[i])
		}
		return n
	case OpErrorResponse:
		return errorHeaderSize + len(errorMessage(r.Err))
	case OpDigestResponse:
		return countSize + len(r.Digests)*rangeDigestSize
	case OpRangeSummaryResponse:
		n := summaryHeaderSize
		for i := range r.Entries {
			n += keyHeaderSize + len(r.Entries[i].Key) + summaryEntryFixedSize
		}
		return n
	case OpRangeStreamResponse:
		n := streamHeaderSize + countSize + checksumSize
		for i := range r.Stream {
			n += keyHeaderSize + len(r.Stream[i].Key) + recordSize(&r.Stream[i].Record)
		}
		return n
	}
	return 0
}

// appendResponseBody appends r's body to b. r's kind must be a response op,
// its Outcome valid, its Batch no longer than MaxBatch without nested
// batches, its Digests no more than MaxRanges, its Entries no more than
// MaxSummaryEntries with keys of at most MaxKeySize bytes: the server's
// check sees to it.
func appendResponseBody(b []byte, r *Response) []byte {
	switch r.kind() {
	case OpRecordResponse:
		if !r.Found {
			return append(b, 0)
		}
		b = append(b, 1)
		b = appendRecord(b, &r.Record)
	case OpPutResponse:
		b = append(b, byte(r.Outcome))
		b = appendRecord(b, &r.Current)
	case OpBatchResponse:
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Batch)))
		for i := range r.Batch {
			at := len(b)
			b = append(b, 0, 0, 0, 0, byte(r.Batch[i].kind()))
			b = appendResponseBody(b, &r.Batch[i])
			binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		}
	case OpErrorResponse:
		msg := errorMessage(r.Err)
		b = binary.BigEndian.AppendUint16(b, uint16(r.Err.Code))
		b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
		b = append(b, msg...)
	case OpDigestResponse:
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Digests)))
		for _, g := range r.Digests {
			b = binary.BigEndian.AppendUint64(b, g.XOR)
			b = binary.BigEndian.AppendUint64(b, g.Count)
		}
	case OpRangeSummaryResponse:
		var flags byte
		if r.Truncated {
			flags |= flagTruncated
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Entries)))
		for i := range r.Entries {
			e := &r.Entries[i]
			b = appendKey(b, e.Key)
			b = binary.BigEndian.AppendUint64(b, e.Fingerprint)
			b = binary.BigEndian.AppendUint64(b, uint64(e.Timestamp))
		}
	case OpRangeStreamResponse:
		var flags byte
		if r.Truncated {
			flags |= flagTruncated
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint64(b, r.RemainingKeys)
		b = binary.BigEndian.AppendUint64(b, r.RemainingBytes)
		at := len(b)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Stream)))
		for i := range r.Stream {
			b = appendKey(b, r.Stream[i].Key)
			b = appendRecord(b, &r.Stream[i].Record)
		}
		b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b[at:], castagnoli))
	}
	return b
}

// errorMessage returns e's message cut to MaxErrorMessageSize bytes, at a
// UTF-8 boundary.
func errorMessage(e *Error) string {
	m := e.Message
	if len(m) <= MaxErrorMessageSize {
		return m
	}
	i := MaxErrorMessageSize
	for i > MaxErrorMessageSize-utf8.UTFMax && !utf8.RuneStart(m[i]) {
		i-- // do not cut a rune in two
	}
	return m[:i]
}

// appendFrameHeader appends the header of a frame whose body is bodySize
// bytes.
func appendFrameHeader(b []byte, bodySize int, op Op, id uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(frameLengthCounted+bodySize))
	b = append(b, byte(op))
	return binary.BigEndian.AppendUint64(b, id)
}

// encodeRequest returns the frame of req with request id id, in one
// allocation. req must pass checkRequest.
func encodeRequest(id uint64, req *Request) []byte {
	n := requestBodySize(req)
	b := make([]byte, 0, FrameHeaderSize+n)
	b = appendFrameHeader(b, n, req.Op, id)
	return appendRequestBody(b, req)
}

// encodeResponse returns the frame of r with request id id, in one
// allocation.
func encodeResponse(id uint64, r *Response) []byte {
	n := responseBodySize(r)
	b := make([]byte, 0, FrameHeaderSize+n)
	b = appendFrameHeader(b, n, r.kind(), id)
	return appendResponseBody(b, r)
}

// ---- Decoding ----

// decoder reads a body. Its error is sticky: after the first failure every
// read returns zero values, so a decoding function checks d.err once, at the
// end. A decoder never panics and allocates only the slices of a batch, after
// checking that the count fits what is left of the frame.
type decoder struct {
	b    []byte
	off  int
	base int // the frame offset of b[0], for error messages
	opAt int // the frame offset of the op byte of this body
	err  *ProtocolError
}

// failAt records the first error, with the bytes of b from at.
func (d *decoder) failAt(at int, format string, args ...any) {
	if d.err != nil {
		return
	}
	end := min(len(d.b), at+maxReportedBytes)
	d.err = &ProtocolError{
		Reason: fmt.Sprintf(format, args...),
		Offset: d.base + at,
		Bytes:  bytes.Clone(d.b[at:end]),
	}
}

// failOp records that op, the op of this body, is unknown.
func (d *decoder) failOp(op Op, format string, args ...any) {
	if d.err == nil {
		d.err = &ProtocolError{Reason: fmt.Sprintf(format, args...), Offset: d.opAt, Bytes: []byte{byte(op)}}
	}
}

func (d *decoder) left() int { return len(d.b) - d.off }

// take returns the next n bytes, aliasing b with its capacity cut to n.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > d.left() {
		d.failAt(d.off, "%s needs %d bytes, the frame has %d left", what, n, d.left())
		return nil
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8(what string) uint8 {
	if p := d.take(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if p := d.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if p := d.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if p := d.take(8, what); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// end fails if bytes are left after the body of op.
func (d *decoder) end(op Op) {
	if d.err == nil && d.left() > 0 {
		d.failAt(d.off, "%d bytes after the end of a %v body", d.left(), op)
	}
}

func (d *decoder) key() []byte {
	at := d.off
	n := int(d.u16("key length"))
	if d.err != nil {
		return nil
	}
	if n > MaxKeySize {
		d.failAt(at, "key length %d exceeds MaxKeySize (%d)", n, MaxKeySize)
		return nil
	}
	k := d.take(n, "key")
	if n == 0 {
		return nil
	}
	return k
}

func (d *decoder) record() Record {
	at := d.off
	flags := d.u8("record flags")
	if d.err == nil && flags&^recordFlagsKnown != 0 {
		d.failAt(at, "record flags %#02x have unknown bits set", flags)
	}
	ts := int64(d.u64("record timestamp"))
	var expires int64
	if flags&flagExpires != 0 {
		eat := d.off
		expires = int64(d.u64("record expiry"))
		switch {
		case d.err != nil:
		case flags&flagTombstone != 0:
			d.failAt(at, "tombstone with an expiry")
		case expires == 0:
			d.failAt(eat, "expiry flag set with an expiry of 0")
		}
	}
	vat := d.off
	n := d.u32("value length")
	if d.err != nil {
		return Record{}
	}
	tombstone := flags&flagTombstone != 0
	switch {
	case tombstone && n != 0:
		d.failAt(vat, "tombstone with a value of %d bytes", n)
		return Record{}
	case uint64(n) > uint64(d.left()):
		d.failAt(vat, "value length %d exceeds the %d bytes left in the frame", n, d.left())
		return Record{}
	}
	v := d.take(int(n), "value")
	if n == 0 {
		v = nil
	}
	return Record{Timestamp: ts, Tombstone: tombstone, Value: v, ExpiresAt: expires}
}

// batchCount reads a batch's count and checks it against MaxBatch and what
// is left of the frame, before the caller allocates.
func (d *decoder) batchCount(what string) int {
	at := d.off
	n := int(d.u16(what + " count"))
	if d.err != nil {
		return 0
	}
	switch {
	case n > MaxBatch:
		d.failAt(at, "%s of %d items exceeds MaxBatch (%d)", what, n, MaxBatch)
		return 0
	case n*batchItemHeaderSize > d.left():
		d.failAt(at, "%s of %d items cannot fit in the %d bytes left in the frame", what, n, d.left())
		return 0
	}
	return n
}

// count reads the uint32 count of a list of items of at least itemSize
// bytes each, and checks it against limit (named limitName) and against what
// is left of the frame, before the caller allocates.
func (d *decoder) count(what string, limit int, limitName string, itemSize int) int {
	at := d.off
	n := d.u32(what + " count")
	if d.err != nil {
		return 0
	}
	switch {
	case uint64(n) > uint64(limit):
		d.failAt(at, "%s count %d exceeds %s (%d)", what, n, limitName, limit)
		return 0
	case uint64(n)*uint64(itemSize) > uint64(d.left()):
		d.failAt(at, "%s count %d needs at least %d bytes, the frame has %d left", what, n, uint64(n)*uint64(itemSize), d.left())
		return 0
	}
	return int(n)
}

func (d *decoder) hashRange() HashRange {
	lo := d.u32("range lo")
	hi := d.u32("range hi")
	return HashRange{Lo: lo, Hi: hi}
}

// batchItem reads the header of item i of a batch and returns the item's op
// and a decoder of its body.
func (d *decoder) batchItem(what string, i int) (Op, *decoder) {
	at := d.off
	n := d.u32(what + " item length")
	if d.err != nil {
		return 0, nil
	}
	switch {
	case n == 0:
		d.failAt(at, "%s item %d has length 0, too short for its op", what, i)
		return 0, nil
	case uint64(n) > uint64(d.left()):
		d.failAt(at, "%s item %d length %d exceeds the %d bytes left in the frame", what, i, n, d.left())
		return 0, nil
	}
	p := d.take(int(n), what+" item")
	op := Op(p[0])
	if op == OpBatch || op == OpBatchResponse {
		d.failAt(at+4, "%s item %d is a %v: batches do not nest", what, i, op)
		return 0, nil
	}
	return op, &decoder{b: p[1:], base: d.base + at + batchItemHeaderSize, opAt: d.base + at + 4}
}

// decodeRequest decodes the body of a request frame of kind op; the frame
// offset of body[0] is FrameHeaderSize. Keys and values alias body. A request
// of an unknown op decodes, without its body, as a Request with only Op set:
// the server answers it with CodeUnknownOp.
func decodeRequest(op Op, body []byte) (Request, error) {
	d := decoder{b: body, base: FrameHeaderSize, opAt: 4}
	req := d.request(op)
	d.end(op)
	if d.err != nil {
		return Request{}, d.err
	}
	return req, nil
}

func (d *decoder) request(op Op) Request {
	req := Request{Op: op}
	switch op {
	case OpReplicaGet, OpGet, OpAuth, OpReplicaGetLocal, OpPurge, OpReplicaPurge, OpReplicaStat:
		req.Key = d.key()
	case OpReplicaPut, OpPut:
		req.Key = d.key()
		req.Record = d.record()
	case OpFencedGet, OpFencedStat:
		req.Epoch = int64(d.u64("epoch"))
		req.Key = d.key()
	case OpFencedPut:
		req.Epoch = int64(d.u64("epoch"))
		req.Key = d.key()
		req.Record = d.record()
	case OpRangeStream:
		r := d.hashRange()
		req.Limit = d.u32("limit")
		req.After = d.key()
		if d.err == nil {
			req.Ranges = []HashRange{r}
		}
	case OpPing:
	case OpBatch:
		n := d.batchCount("batch")
		if n == 0 {
			break
		}
		req.Batch = make([]Request, n)
		for i := range req.Batch {
			subOp, sd := d.batchItem("batch", i)
			if sd == nil {
				return Request{}
			}
			req.Batch[i] = sd.request(subOp)
			sd.end(subOp)
			if sd.err != nil {
				d.err = sd.err
				return Request{}
			}
		}
	case OpDigest:
		n := d.count("range", MaxRanges, "MaxRanges", hashRangeSize)
		if n == 0 {
			break
		}
		req.Ranges = make([]HashRange, n)
		for i := range req.Ranges {
			req.Ranges[i] = d.hashRange()
		}
	case OpRangeSummary:
		r := d.hashRange()
		req.Limit = d.u32("limit")
		if d.err == nil {
			req.Ranges = []HashRange{r}
		}
	default:
		d.off = len(d.b) // skip the body of an op from a newer version
	}
	return req
}

// decodeResponse decodes the body of a response frame of kind op; the frame
// offset of body[0] is FrameHeaderSize. Values alias body. Unknown ops are
// protocol errors: a client must understand every answer to its requests.
func decodeResponse(op Op, body []byte) (Response, error) {
	d := decoder{b: body, base: FrameHeaderSize, opAt: 4}
	r := d.response(op)
	d.end(op)
	if d.err != nil {
		return Response{}, d.err
	}
	return r, nil
}

func (d *decoder) response(op Op) Response {
	r := Response{Op: op}
	switch op {
	case OpRecordResponse:
		at := d.off
		switch found := d.u8("found"); {
		case d.err != nil:
		case found == 1:
			r.Found = true
			r.Record = d.record()
		case found != 0:
			d.failAt(at, "found byte %d is neither 0 nor 1", found)
		}
	case OpPutResponse:
		at := d.off
		r.Outcome = Outcome(d.u8("outcome"))
		if d.err == nil && (r.Outcome < OutcomeWritten || r.Outcome > OutcomeStale) {
			d.failAt(at, "unknown outcome %d", r.Outcome)
		}
		r.Current = d.record()
	case OpPong, OpAuthResponse:
	case OpBatchResponse:
		n := d.batchCount("batch response")
		if n == 0 {
			break
		}
		r.Batch = make([]Response, n)
		for i := range r.Batch {
			subOp, sd := d.batchItem("batch response", i)
			if sd == nil {
				return Response{}
			}
			r.Batch[i] = sd.response(subOp)
			sd.end(subOp)
			if sd.err != nil {
				d.err = sd.err
				return Response{}
			}
		}
	case OpErrorResponse:
		code := ErrorCode(d.u16("error code"))
		at := d.off
		n := int(d.u16("error message length"))
		if d.err == nil && n > MaxErrorMessageSize {
			d.failAt(at, "error message length %d exceeds MaxErrorMessageSize (%d)", n, MaxErrorMessageSize)
		}
		msg := d.take(n, "error message")
		if d.err == nil {
			r.Err = &Error{Code: code, Message: string(msg)}
		}
	case OpDigestResponse:
		n := d.count("digest", MaxRanges, "MaxRanges", rangeDigestSize)
		if n == 0 {
			break
		}
		r.Digests = make([]RangeDigest, n)
		for i := range r.Digests {
			r.Digests[i] = RangeDigest{XOR: d.u64("digest xor"), Count: d.u64("digest count")}
		}
	case OpRangeSummaryResponse:
		at := d.off
		flags := d.u8("summary flags")
		if d.err == nil && flags&^summaryFlagsKnown != 0 {
			d.failAt(at, "summary flags %#02x have unknown bits set", flags)
		}
		r.Truncated = flags&flagTruncated != 0
		n := d.count("summary entry", MaxSummaryEntries, "MaxSummaryEntries", minSummaryEntrySize)
		if n == 0 {
			break
		}
		r.Entries = make([]SummaryEntry, n)
		for i := range r.Entries {
			e := &r.Entries[i]
			e.Key = d.key()
			e.Fingerprint = d.u64("entry fingerprint")
			e.Timestamp = int64(d.u64("entry timestamp"))
			if d.err != nil {
				return Response{}
			}
		}
	case OpRangeStreamResponse:
		d.streamResponse(&r)
	default:
		d.failOp(op, "unknown response op %#02x", uint8(op))
	}
	return r
}

// streamResponse decodes the body of an OpRangeStreamResponse into r, and
// checks its checksum.
func (d *decoder) streamResponse(r *Response) {
	at := d.off
	flags := d.u8("stream flags")
	if d.err == nil && flags&^summaryFlagsKnown != 0 {
		d.failAt(at, "stream flags %#02x have unknown bits set", flags)
	}
	r.Truncated = flags&flagTruncated != 0
	r.RemainingKeys = d.u64("remaining keys")
	r.RemainingBytes = d.u64("remaining bytes")
	from := d.off
	n := d.count("stream entry", MaxStreamEntries, "MaxStreamEntries", minStreamEntrySize)
	if n > 0 {
		r.Stream = make([]StreamEntry, n)
	}
	for i := range r.Stream {
		kat := d.off
		e := &r.Stream[i]
		e.Key = d.key()
		if d.err == nil && len(e.Key) == 0 {
			d.failAt(kat, "stream entry %d has an empty key", i)
		}
		e.Record = d.record()
		if d.err != nil {
			r.Stream = nil
			return
		}
	}
	sumAt := d.off
	sum := d.u32("stream checksum")
	if d.err == nil {
		if want := crc32.Checksum(d.b[from:sumAt], castagnoli); sum != want {
			d.failAt(sumAt, "stream checksum %#08x, the entries sum to %#08x: corrupted in transit", sum, want)
			r.Stream = nil
		}
	}
}
