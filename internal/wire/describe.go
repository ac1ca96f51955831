package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// DescribeFrame describes the frame at the start of p in one line, for a
// trace of the messages a simulated cluster exchanges (internal/sim): its
// request id, op and what it carries (keys, records' timestamps, outcomes,
// errors). It returns the bytes the frame took, or 0 when p holds less than
// a whole frame. A frame that does not decode is described as such, with
// the reason. The handshake that opens each direction of a connection is
// described too (its magic, read as a frame's length, would be larger than
// any frame).
func DescribeFrame(p []byte) (string, int) {
	if len(p) >= helloSize && string(p[:len(magic)]) == magic {
		version, flags, _ := parseHello(p[:helloSize])
		return fmt.Sprintf("hello: version %d, flags %#x", version, flags), helloSize
	}
	if len(p) < FrameHeaderSize {
		return "", 0
	}
	length := binary.BigEndian.Uint32(p[:4])
	if length < frameLengthCounted {
		return fmt.Sprintf("bad frame: length %d", length), len(p)
	}
	n := 4 + int(length)
	if len(p) < n {
		return "", 0
	}
	op, id, body := Op(p[4]), binary.BigEndian.Uint64(p[5:FrameHeaderSize]), p[FrameHeaderSize:n]
	var b strings.Builder
	fmt.Fprintf(&b, "#%d ", id)
	if op < 0x80 {
		req, err := decodeRequest(op, body)
		if err != nil {
			fmt.Fprintf(&b, "%v: does not decode: %v", op, err)
			return b.String(), n
		}
		describeRequest(&b, &req)
		return b.String(), n
	}
	resp, err := decodeResponse(op, body)
	if err != nil {
		fmt.Fprintf(&b, "%v: does not decode: %v", op, err)
		return b.String(), n
	}
	describeResponse(&b, &resp)
	return b.String(), n
}

func describeRequest(b *strings.Builder, req *Request) {
	b.WriteString(req.Op.String())
	if req.Epoch != 0 {
		fmt.Fprintf(b, " epoch %d", req.Epoch)
	}
	switch {
	case req.Op == OpAuth:
		b.WriteString(" (the token is not shown)")
	case req.Key != nil:
		fmt.Fprintf(b, " %q", req.Key)
	}
	switch req.Op {
	case OpReplicaPut, OpPut, OpFencedPut:
		b.WriteString(" ")
		describeRecord(b, &req.Record)
	case OpBatch:
		fmt.Fprintf(b, " of %d: ", len(req.Batch))
		for i := range req.Batch {
			if i > 0 {
				b.WriteString("; ")
			}
			describeRequest(b, &req.Batch[i])
		}
	case OpDigest, OpRangeSummary, OpRangeStream:
		for _, r := range req.Ranges {
			fmt.Fprintf(b, " [%#08x, %#08x]", r.Lo, r.Hi)
		}
	}
}

func describeResponse(b *strings.Builder, r *Response) {
	b.WriteString(r.Op.String())
	switch {
	case r.Err != nil:
		fmt.Fprintf(b, " %v: %s", r.Err.Code, r.Err.Message)
	case r.Op == OpRecordResponse && !r.Found:
		b.WriteString(" not found")
	case r.Op == OpRecordResponse:
		b.WriteString(" ")
		describeRecord(b, &r.Record)
	case r.Op == OpPutResponse:
		fmt.Fprintf(b, " %v, current ", r.Outcome)
		describeRecord(b, &r.Current)
	case r.Op == OpBatchResponse:
		fmt.Fprintf(b, " of %d: ", len(r.Batch))
		for i := range r.Batch {
			if i > 0 {
				b.WriteString("; ")
			}
			describeResponse(b, &r.Batch[i])
		}
	case r.Op == OpDigestResponse:
		fmt.Fprintf(b, " %d digests", len(r.Digests))
	case r.Op == OpRangeSummaryResponse:
		fmt.Fprintf(b, " %d entries, truncated %v", len(r.Entries), r.Truncated)
	case r.Op == OpRangeStreamResponse:
		fmt.Fprintf(b, " %d records", len(r.Stream))
	}
}

func describeRecord(b *strings.Builder, r *Record) {
	if r.Tombstone {
		fmt.Fprintf(b, "tombstone @%d", r.Timestamp)
		return
	}
	fmt.Fprintf(b, "%d bytes @%d", len(r.Value), r.Timestamp)
}
