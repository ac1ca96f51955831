package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// readFrame reads one frame from b with the frame size limit max.
func readFrame(b []byte, max int) (frame, error) {
	// A small buffer, so that what a rejection allocates shows.
	return newFrameReader(bufio.NewReaderSize(bytes.NewReader(b), 16), max).next()
}

// rawFrame builds a frame from its parts, for malformed inputs.
func rawFrame(op Op, id uint64, body []byte) []byte {
	b := appendFrameHeader(nil, len(body), op, id)
	return append(b, body...)
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
func u32(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
func u64(v int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

// wantDecoded is what a decoder yields for a message encoded from req:
// tombstones lose their value, empty slices become nil.
func wantRequest(req Request) Request {
	req.Record = wantRecord(req.Record)
	if len(req.Key) == 0 {
		req.Key = nil
	}
	if len(req.Ranges) == 0 {
		req.Ranges = nil
	}
	if len(req.After) == 0 {
		req.After = nil
	}
	if len(req.Batch) == 0 {
		req.Batch = nil
	} else {
		b := make([]Request, len(req.Batch))
		for i := range req.Batch {
			b[i] = wantRequest(req.Batch[i])
		}
		req.Batch = b
	}
	return req
}

func wantResponse(r Response) Response {
	r.Op = r.kind()
	r.Record = wantRecord(r.Record)
	r.Current = wantRecord(r.Current)
	if r.Err != nil {
		r = Response{Op: OpErrorResponse, Err: &Error{Code: r.Err.Code, Message: errorMessage(r.Err)}}
	}
	if !r.Found {
		r.Record = Record{}
	}
	if len(r.Digests) == 0 {
		r.Digests = nil
	}
	if len(r.Entries) == 0 {
		r.Entries = nil
	} else {
		e := make([]SummaryEntry, len(r.Entries))
		for i, x := range r.Entries {
			if len(x.Key) == 0 {
				x.Key = nil
			}
			e[i] = x
		}
		r.Entries = e
	}
	if len(r.Stream) == 0 {
		r.Stream = nil
	} else {
		e := make([]StreamEntry, len(r.Stream))
		for i, x := range r.Stream {
			e[i] = StreamEntry{Key: x.Key, Record: wantRecord(x.Record)}
		}
		r.Stream = e
	}
	if len(r.Batch) == 0 {
		r.Batch = nil
	} else {
		b := make([]Response, len(r.Batch))
		for i := range r.Batch {
			b[i] = wantResponse(r.Batch[i])
		}
		r.Batch = b
	}
	return r
}

func wantRecord(r Record) Record {
	if r.Tombstone || len(r.Value) == 0 {
		r.Value = nil
	}
	return r
}

var (
	maxKey   = bytes.Repeat([]byte("k"), MaxKeySize)
	someRec  = Record{Timestamp: 1_700_000_000_000_000, Value: []byte("hello")}
	tombRec  = Record{Timestamp: 42, Tombstone: true, Value: []byte("ignored")}
	emptyRec = Record{Timestamp: -1, Value: []byte{}}
	ttlRec   = Record{Timestamp: 1_700_000_000_000_000, Value: []byte("expires"), ExpiresAt: 1_700_000_060_000_000}
)

// manyRanges returns n ranges that cut the hash space into n parts.
func manyRanges(n int) []HashRange {
	r := make([]HashRange, n)
	step := uint64(1<<32) / uint64(n)
	for i := range r {
		r[i] = HashRange{Lo: uint32(uint64(i) * step), Hi: uint32(uint64(i+1)*step - 1)}
	}
	return r
}

// manyDigests returns n distinct digests.
func manyDigests(n int) []RangeDigest {
	d := make([]RangeDigest, n)
	for i := range d {
		d[i] = RangeDigest{XOR: uint64(i) * 0x9e3779b97f4a7c15, Count: uint64(i)}
	}
	return d
}

// manyEntries returns n entries with distinct keys of keySize bytes or
// more.
func manyEntries(n, keySize int) []SummaryEntry {
	e := make([]SummaryEntry, n)
	for i := range e {
		key := fmt.Appendf(nil, "%0*d", keySize, i)
		e[i] = SummaryEntry{Key: key, Fingerprint: uint64(i) * 0xff51afd7ed558ccd, Timestamp: int64(i) - 1}
	}
	return e
}

var (
	wholeSpace = HashRange{Lo: 0, Hi: 0xffffffff}
	quarter2   = HashRange{Lo: 0x40000000, Hi: 0x7fffffff}
	someDigest = RangeDigest{XOR: 0x0123456789abcdef, Count: 3}
	someEntry  = SummaryEntry{Key: []byte("greeting"), Fingerprint: 0xfedcba9876543210, Timestamp: 1_700_000_000_000_000}
)

// testRequests are one or more requests of every kind. New entries go at
// the end, so that the seed files of the existing ones keep their names.
var testRequests = []struct {
	name string
	req  Request
}{
	{"replica get", Request{Op: OpReplicaGet, Key: []byte("a")}},
	{"get max key", Request{Op: OpGet, Key: maxKey}},
	{"replica put", Request{Op: OpReplicaPut, Key: []byte("k"), Record: someRec}},
	{"put tombstone", Request{Op: OpPut, Key: []byte("k"), Record: tombRec}},
	{"put empty value", Request{Op: OpPut, Key: []byte("k"), Record: emptyRec}},
	{"put unstamped", Request{Op: OpPut, Key: maxKey, Record: Record{Value: bytes.Repeat([]byte{0xff}, 1000)}}},
	{"ping", Request{Op: OpPing}},
	{"auth", Request{Op: OpAuth, Key: []byte("tako_0123456789abcdef")}},
	{"empty batch", Request{Op: OpBatch}},
	{"batch", Request{Op: OpBatch, Batch: []Request{
		{Op: OpGet, Key: []byte("x")},
		{Op: OpPut, Key: []byte("y"), Record: someRec},
		{Op: OpPing},
		{Op: OpReplicaPut, Key: maxKey, Record: tombRec},
		{Op: OpReplicaGet, Key: []byte{0}},
	}}},
	{"small batch", Request{Op: OpBatch, Batch: []Request{
		{Op: OpGet, Key: []byte("x")},
		{Op: OpPing},
		{Op: OpReplicaPut, Key: []byte("y"), Record: tombRec},
	}}},
	{"full batch", Request{Op: OpBatch, Batch: func() []Request {
		b := make([]Request, MaxBatch)
		for i := range b {
			b[i] = Request{Op: OpPing}
		}
		return b
	}()}},
	{"digest whole space", Request{Op: OpDigest, Ranges: []HashRange{wholeSpace}}},
	{"digest empty range", Request{Op: OpDigest, Ranges: []HashRange{{Lo: 10, Hi: 9}}}},
	{"digest ranges", Request{Op: OpDigest, Ranges: []HashRange{{0, 0}, quarter2, {0xffffffff, 0xffffffff}, {0xffffffff, 0}}}},
	{"digest max ranges", Request{Op: OpDigest, Ranges: manyRanges(MaxRanges)}},
	{"range summary", Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: 100}},
	{"range summary limit 1 empty range", Request{Op: OpRangeSummary, Ranges: []HashRange{{Lo: 1, Hi: 0}}, Limit: 1}},
	{"range summary max limit", Request{Op: OpRangeSummary, Ranges: []HashRange{wholeSpace}, Limit: MaxSummaryEntries}},
	{"batch anti-entropy", Request{Op: OpBatch, Batch: []Request{
		{Op: OpDigest, Ranges: manyRanges(4)},
		{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: 2},
		{Op: OpReplicaGet, Key: []byte("k")},
		{Op: OpPing},
	}}},
	{"batch max digests", Request{Op: OpBatch, Batch: []Request{
		{Op: OpDigest, Ranges: manyRanges(MaxRanges)},
		{Op: OpRangeSummary, Ranges: []HashRange{wholeSpace}, Limit: MaxSummaryEntries},
	}}},
	{"replica get local", Request{Op: OpReplicaGetLocal, Key: []byte("k")}},
	{"range stream from the start", Request{Op: OpRangeStream, Ranges: []HashRange{quarter2}, Limit: 4 << 20}},
	{"range stream after a key", Request{Op: OpRangeStream, Ranges: []HashRange{wholeSpace}, Limit: 1, After: maxKey}},
	{"range stream estimates only", Request{Op: OpRangeStream, Ranges: []HashRange{{Lo: 5, Hi: 4}}}},
	{"purge", Request{Op: OpPurge, Key: []byte("poisoned")}},
	{"replica purge", Request{Op: OpReplicaPurge, Key: maxKey}},
	{"replica stat", Request{Op: OpReplicaStat, Key: maxKey}},
	{"fenced get", Request{Op: OpFencedGet, Key: []byte("k"), Epoch: 1796271973452260}},
	{"fenced stat of epoch 0", Request{Op: OpFencedStat, Key: maxKey}},
	{"fenced put", Request{Op: OpFencedPut, Key: []byte("k"), Record: someRec, Epoch: 7}},
	{"fenced put that expires", Request{Op: OpFencedPut, Key: []byte("k"), Record: ttlRec, Epoch: 7}},
	{"replica put that expires", Request{Op: OpReplicaPut, Key: []byte("k"), Record: ttlRec}},
	{"fenced delete", Request{Op: OpFencedPut, Key: []byte("k"), Record: Record{Timestamp: 9, Tombstone: true}, Epoch: -1}},
	{"batch of fenced", Request{Op: OpBatch, Batch: []Request{
		{Op: OpFencedGet, Key: []byte("a"), Epoch: 3},
		{Op: OpFencedPut, Key: []byte("b"), Record: someRec, Epoch: 3},
	}}},
}

// testResponses are one or more responses of every kind.
var testResponses = []struct {
	name string
	resp Response
}{
	{"record found", Response{Op: OpRecordResponse, Found: true, Record: someRec}},
	{"record found empty", Response{Op: OpRecordResponse, Found: true, Record: emptyRec}},
	{"record tombstone", Response{Op: OpRecordResponse, Found: true, Record: tombRec}},
	{"record that expires", Response{Op: OpRecordResponse, Found: true, Record: ttlRec}},
	{"put that expires, stale", Response{Op: OpPutResponse, Outcome: OutcomeStale, Current: ttlRec}},
	{"record not found", Response{Op: OpRecordResponse}},
	{"put written", Response{Op: OpPutResponse, Outcome: OutcomeWritten, Current: someRec}},
	{"put unchanged", Response{Op: OpPutResponse, Outcome: OutcomeUnchanged, Current: tombRec}},
	{"put stale", Response{Op: OpPutResponse, Outcome: OutcomeStale, Current: emptyRec}},
	{"pong", Response{Op: OpPong}},
	{"auth accepted", Response{Op: OpAuthResponse}},
	{"unauthorized", Response{Op: OpErrorResponse, Err: &Error{Code: CodeUnauthorized, Message: "unknown token"}}},
	{"error", Response{Op: OpErrorResponse, Err: &Error{Code: CodeUnavailable, Message: "1 of 2 replicas answered"}}},
	{"error unknown code", Response{Err: &Error{Code: 999}}},
	{"insufficient storage", Response{Op: OpErrorResponse, Err: &Error{Code: CodeInsufficientStorage, Message: "n1: 96 MiB free, below the reserve of 128 MiB"}}},
	{"error long message", Response{Err: &Error{Code: CodeInternal, Message: strings.Repeat("é", MaxErrorMessageSize)}}},
	{"empty batch", Response{Op: OpBatchResponse}},
	{"batch", Response{Op: OpBatchResponse, Batch: []Response{
		{Op: OpRecordResponse, Found: true, Record: someRec},
		{Op: OpPutResponse, Outcome: OutcomeStale, Current: tombRec},
		{Op: OpPong},
		{Op: OpErrorResponse, Err: &Error{Code: CodeBadRequest, Message: "empty key"}},
		{Op: OpRecordResponse},
	}}},
	{"digest none", Response{Op: OpDigestResponse}},
	{"digest", Response{Op: OpDigestResponse, Digests: []RangeDigest{someDigest, {}, {XOR: 0xffffffffffffffff, Count: 0xffffffffffffffff}}}},
	{"digest max", Response{Op: OpDigestResponse, Digests: manyDigests(MaxRanges)}},
	{"summary empty", Response{Op: OpRangeSummaryResponse}},
	{"summary truncated", Response{Op: OpRangeSummaryResponse, Truncated: true, Entries: []SummaryEntry{someEntry, {Key: []byte("z"), Timestamp: -1}}}},
	{"summary entries", Response{Op: OpRangeSummaryResponse, Entries: []SummaryEntry{
		someEntry,
		{Key: []byte{0}, Fingerprint: 0xffffffffffffffff, Timestamp: -1 << 63},
		{Key: []byte("k"), Timestamp: 1<<63 - 1},
	}}},
	{"summary max key", Response{Op: OpRangeSummaryResponse, Truncated: true, Entries: []SummaryEntry{{Key: maxKey, Fingerprint: 1, Timestamp: 2}}}},
	{"summary max entries", Response{Op: OpRangeSummaryResponse, Truncated: true, Entries: manyEntries(MaxSummaryEntries, 6)}},
	{"batch anti-entropy", Response{Op: OpBatchResponse, Batch: []Response{
		{Op: OpDigestResponse, Digests: []RangeDigest{someDigest, {}}},
		{Op: OpRangeSummaryResponse, Truncated: true, Entries: []SummaryEntry{someEntry}},
		{Op: OpErrorResponse, Err: &Error{Code: CodeUnknownOp, Message: "op 0x07 is not a request of protocol version 1"}},
		{Op: OpRangeSummaryResponse},
	}}},
	{"stream empty", Response{Op: OpRangeStreamResponse}},
	{"stream estimates", Response{Op: OpRangeStreamResponse, Truncated: true, RemainingKeys: 12345, RemainingBytes: 1 << 40}},
	{"stream records", Response{Op: OpRangeStreamResponse, Truncated: true, RemainingKeys: 1, RemainingBytes: 5, Stream: []StreamEntry{
		{Key: []byte("a"), Record: someRec},
		{Key: []byte("b"), Record: tombRec},
		{Key: maxKey, Record: emptyRec},
	}}},
}

func TestRequestRoundTrip(t *testing.T) {
	for _, tt := range testRequests {
		t.Run(tt.name, func(t *testing.T) {
			if e := checkRequest(&tt.req, false); e != nil {
				t.Fatalf("checkRequest: %v", e)
			}
			b := encodeRequest(7, &tt.req)
			if len(b) != cap(b) {
				t.Errorf("encoded %d bytes into a buffer of %d: size computed wrong", len(b), cap(b))
			}
			f, err := readFrame(b, DefaultMaxFrameSize)
			if err != nil {
				t.Fatalf("readFrame: %v", err)
			}
			if f.op != tt.req.Op || f.id != 7 {
				t.Fatalf("frame op %v id %d, want %v 7", f.op, f.id, tt.req.Op)
			}
			got, err := decodeRequest(f.op, f.body)
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			if want := wantRequest(tt.req); !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
			}
			if again := encodeRequest(7, &got); !bytes.Equal(again, b) {
				t.Errorf("re-encoding differs: the encoding is not canonical")
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, tt := range testResponses {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeResponse(1<<63, &tt.resp)
			if len(b) != cap(b) {
				t.Errorf("encoded %d bytes into a buffer of %d: size computed wrong", len(b), cap(b))
			}
			f, err := readFrame(b, DefaultMaxFrameSize)
			if err != nil {
				t.Fatalf("readFrame: %v", err)
			}
			if f.op != tt.resp.kind() || f.id != 1<<63 {
				t.Fatalf("frame op %v id %d, want %v %d", f.op, f.id, tt.resp.kind(), uint64(1<<63))
			}
			got, err := decodeResponse(f.op, f.body)
			if err != nil {
				t.Fatalf("decodeResponse: %v", err)
			}
			if want := wantResponse(tt.resp); !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
			}
			if got.Err != nil && len(got.Err.Message) > MaxErrorMessageSize {
				t.Errorf("message of %d bytes, longer than MaxErrorMessageSize", len(got.Err.Message))
			}
		})
	}
}

func TestErrorMessageCutAtRune(t *testing.T) {
	msg := errorMessage(&Error{Message: strings.Repeat("é", MaxErrorMessageSize)})
	if len(msg) != MaxErrorMessageSize || !strings.HasSuffix(msg, "é") {
		t.Errorf("cut message is %d bytes ending %q", len(msg), msg[len(msg)-2:])
	}
	msg = errorMessage(&Error{Message: "x" + strings.Repeat("é", MaxErrorMessageSize)})
	if len(msg) != MaxErrorMessageSize-1 || !strings.HasSuffix(msg, "é") {
		t.Errorf("cut message is %d bytes ending %q", len(msg), msg[len(msg)-2:])
	}
}

// TestUnknownRequestOpDecodes shows that a request of an op from a newer
// version decodes without its body, so that the server can answer it.
func TestUnknownRequestOpDecodes(t *testing.T) {
	for _, op := range []Op{0x00, 0x12, 0x7f, OpPong, OpDigestResponse, 0xff} {
		req, err := decodeRequest(op, []byte("whatever the body"))
		if err != nil || req.Op != op || req.Key != nil {
			t.Errorf("op %v: got %+v, %v; want the op alone", op, req, err)
		}
	}
	req, err := decodeRequest(OpBatch, cat(u16(2), u32(1), []byte{0x42}, u32(3), []byte{0x43, 1, 2}))
	if err != nil || len(req.Batch) != 2 || req.Batch[0].Op != 0x42 || req.Batch[1].Op != 0x43 {
		t.Errorf("batch of unknown ops: got %+v, %v", req, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	getBody := func(key []byte) []byte { return cat(u16(len(key)), key) }
	rec := func(flags byte, ts int64, vlen int, value []byte) []byte {
		return cat([]byte{flags}, u64(ts), u32(vlen), value)
	}
	item := func(op Op, body []byte) []byte { return cat(u32(1+len(body)), []byte{byte(op)}, body) }
	tests := []struct {
		name     string
		response bool
		op       Op
		body     []byte
		want     string // in the reason
	}{
		{name: "key too long", op: OpGet, body: getBody(bytes.Repeat([]byte("k"), MaxKeySize+1)), want: "exceeds MaxKeySize"},
		{name: "key beyond frame", op: OpGet, body: cat(u16(10), []byte("abc")), want: "key needs 10 bytes"},
		{name: "key length cut", op: OpReplicaGet, body: []byte{0}, want: "key length needs 2 bytes"},
		{name: "trailing bytes", op: OpGet, body: cat(getBody([]byte("k")), []byte{0}), want: "1 bytes after the end of a Get body"},
		{name: "ping with body", op: OpPing, body: []byte{0}, want: "after the end of a Ping body"},
		{name: "value beyond frame", op: OpPut, body: cat(getBody([]byte("k")), rec(0, 1, 100, []byte("short"))), want: "value length 100 exceeds the 5 bytes left"},
		{name: "value length huge", op: OpPut, body: cat(getBody([]byte("k")), rec(0, 1, 0xffffffff, nil)), want: "value length 4294967295 exceeds"},
		{name: "record cut", op: OpReplicaPut, body: cat(getBody([]byte("k")), []byte{0, 0, 0}), want: "record timestamp needs 8 bytes"},
		{name: "unknown record flag", op: OpPut, body: cat(getBody([]byte("k")), rec(4, 1, 0, nil)), want: "unknown bits"},
		{name: "expiry of 0", op: OpPut, body: cat(getBody([]byte("k")), []byte{2}, u64(1), u64(0), u32(0)), want: "expiry of 0"},
		{name: "tombstone with an expiry", op: OpPut, body: cat(getBody([]byte("k")), []byte{3}, u64(1), u64(5), u32(0)), want: "tombstone with an expiry"},
		{name: "expiry cut", op: OpPut, body: cat(getBody([]byte("k")), []byte{2}, u64(1), []byte{0, 0}), want: "record expiry needs 8 bytes"},
		{name: "tombstone with value", op: OpPut, body: cat(getBody([]byte("k")), rec(1, 1, 1, []byte("v"))), want: "tombstone with a value"},
		{name: "batch too long", op: OpBatch, body: cat(u16(MaxBatch+1), bytes.Repeat(item(OpPing, nil), MaxBatch+1)), want: "exceeds MaxBatch"},
		{name: "batch count beyond frame", op: OpBatch, body: cat(u16(3), item(OpPing, nil)), want: "cannot fit"},
		{name: "batch items missing", op: OpBatch, body: cat(u16(2), item(OpPing, nil), u32(0), []byte{5}), want: "length 0"},
		{name: "batch item beyond frame", op: OpBatch, body: cat(u16(1), u32(100), []byte{byte(OpPing)}), want: "length 100 exceeds"},
		{name: "nested batch", op: OpBatch, body: cat(u16(1), item(OpBatch, u16(0))), want: "batches do not nest"},
		{name: "batch item trailing bytes", op: OpBatch, body: cat(u16(1), item(OpPing, []byte{1})), want: "after the end of a Ping body"},
		{name: "batch item bad key", op: OpBatch, body: cat(u16(1), item(OpGet, getBody(bytes.Repeat([]byte("k"), MaxKeySize+1)))), want: "exceeds MaxKeySize"},

		{name: "digest count beyond MaxRanges", op: OpDigest, body: cat(u32(MaxRanges+1), make([]byte, (MaxRanges+1)*hashRangeSize)), want: "range count 65537 exceeds MaxRanges (65536)"},
		{name: "digest count 4G", op: OpDigest, body: u32(0xffffffff), want: "range count 4294967295 exceeds MaxRanges"},
		{name: "digest count beyond frame", op: OpDigest, body: cat(u32(3), u32(0), u32(1), u32(2), u32(3)), want: "range count 3 needs at least 24 bytes, the frame has 16 left"},
		{name: "digest count cut", op: OpDigest, body: []byte{0, 0, 1}, want: "range count needs 4 bytes"},
		{name: "digest range cut", op: OpDigest, body: cat(u32(1), u32(0), u16(0)), want: "needs at least 8 bytes, the frame has 6 left"},
		{name: "digest trailing bytes", op: OpDigest, body: cat(u32(1), u32(0), u32(1), []byte{0}), want: "1 bytes after the end of a Digest body"},
		{name: "summary range cut", op: OpRangeSummary, body: cat(u32(0), u16(1)), want: "range hi needs 4 bytes"},
		{name: "summary limit cut", op: OpRangeSummary, body: cat(u32(0), u32(1), u16(1)), want: "limit needs 4 bytes"},
		{name: "summary trailing bytes", op: OpRangeSummary, body: cat(u32(0), u32(1), u32(1), []byte{0}), want: "after the end of a RangeSummary body"},
		{name: "batch item digest beyond MaxRanges", op: OpBatch, body: cat(u16(1), item(OpDigest, u32(MaxRanges+1))), want: "exceeds MaxRanges"},
		{name: "batch item digest beyond its item", op: OpBatch, body: cat(u16(2), item(OpDigest, cat(u32(2), u32(0), u32(1))), item(OpPing, nil)), want: "range count 2 needs at least 16 bytes, the frame has 8 left"},

		{name: "unknown response op", response: true, op: 0x99, want: "unknown response op 0x99"},
		{name: "request op as response", response: true, op: OpGet, body: getBody([]byte("k")), want: "unknown response op"},
		{name: "found not 0 or 1", response: true, op: OpRecordResponse, body: []byte{2}, want: "neither 0 nor 1"},
		{name: "not found with record", response: true, op: OpRecordResponse, body: cat([]byte{0}, rec(0, 1, 0, nil)), want: "after the end"},
		{name: "found without record", response: true, op: OpRecordResponse, body: []byte{1}, want: "record flags needs 1 bytes"},
		{name: "outcome 0", response: true, op: OpPutResponse, body: cat([]byte{0}, rec(0, 1, 0, nil)), want: "unknown outcome 0"},
		{name: "outcome 4", response: true, op: OpPutResponse, body: cat([]byte{4}, rec(0, 1, 0, nil)), want: "unknown outcome 4"},
		{name: "error message too long", response: true, op: OpErrorResponse, body: cat(u16(1), u16(MaxErrorMessageSize+1), bytes.Repeat([]byte("m"), MaxErrorMessageSize+1)), want: "exceeds MaxErrorMessageSize"},
		{name: "error message beyond frame", response: true, op: OpErrorResponse, body: cat(u16(1), u16(10), []byte("m")), want: "error message needs 10 bytes"},
		{name: "nested batch response", response: true, op: OpBatchResponse, body: cat(u16(1), item(OpBatchResponse, u16(0))), want: "batches do not nest"},
		{name: "unknown op in batch response", response: true, op: OpBatchResponse, body: cat(u16(1), item(0x42, nil)), want: "unknown response op 0x42"},
		{name: "digest response beyond MaxRanges", response: true, op: OpDigestResponse, body: cat(u32(MaxRanges+1), make([]byte, (MaxRanges+1)*rangeDigestSize)), want: "digest count 65537 exceeds MaxRanges (65536)"},
		{name: "digest response beyond frame", response: true, op: OpDigestResponse, body: cat(u32(2), u64(1), u64(2)), want: "digest count 2 needs at least 32 bytes, the frame has 16 left"},
		{name: "digest response count cut", response: true, op: OpDigestResponse, body: u16(0), want: "digest count needs 4 bytes"},
		{name: "digest response trailing", response: true, op: OpDigestResponse, body: cat(u32(1), u64(1), u64(2), []byte{9}), want: "after the end of a DigestResponse body"},
		{name: "summary flags cut", response: true, op: OpRangeSummaryResponse, want: "summary flags needs 1 bytes"},
		{name: "summary unknown flag", response: true, op: OpRangeSummaryResponse, body: cat([]byte{2}, u32(0)), want: "summary flags 0x02 have unknown bits"},
		{name: "summary count cut", response: true, op: OpRangeSummaryResponse, body: cat([]byte{1}, u16(0)), want: "summary entry count needs 4 bytes"},
		{name: "summary beyond MaxSummaryEntries", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(MaxSummaryEntries+1), make([]byte, (MaxSummaryEntries+1)*minSummaryEntrySize)), want: "summary entry count 65537 exceeds MaxSummaryEntries (65536)"},
		{name: "summary beyond frame", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(2), u16(1), []byte("k"), u64(1), u64(2)), want: "summary entry count 2 needs at least 36 bytes, the frame has 19 left"},
		{name: "summary key too long", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(1), u16(MaxKeySize+1), maxKey, []byte("k"), u64(1), u64(2)), want: "key length 4097 exceeds MaxKeySize"},
		{name: "summary key beyond frame", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(1), u16(30), []byte("abc"), u64(1), u64(2)), want: "key needs 30 bytes, the frame has 19 left"},
		{name: "summary second entry cut", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(2), u16(20), bytes.Repeat([]byte("k"), 20), u64(1), u64(2), u16(0), u64(3), u32(4)), want: "entry timestamp needs 8 bytes"},
		{name: "summary trailing", response: true, op: OpRangeSummaryResponse, body: cat([]byte{0}, u32(1), u16(1), []byte("k"), u64(1), u64(2), []byte{0}), want: "after the end of a RangeSummaryResponse body"},
		{name: "summary in batch response key too long", response: true, op: OpBatchResponse, body: cat(u16(1), item(OpRangeSummaryResponse, cat([]byte{0}, u32(1), u16(MaxKeySize+1), maxKey, []byte("k"), u64(1), u64(2)))), want: "exceeds MaxKeySize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.response {
				_, err = decodeResponse(tt.op, tt.body)
			} else {
				_, err = decodeRequest(tt.op, tt.body)
			}
			var perr *ProtocolError
			if !errors.As(err, &perr) || !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want a *ProtocolError", err)
			}
			if !strings.Contains(perr.Reason, tt.want) {
				t.Errorf("reason %q does not contain %q", perr.Reason, tt.want)
			}
			if len(perr.Bytes) > maxReportedBytes {
				t.Errorf("%d offending bytes reported, want at most %d", len(perr.Bytes), maxReportedBytes)
			}
			// The offset and bytes point into the frame.
			frame := rawFrame(tt.op, 1, tt.body)
			if perr.Offset < 0 || perr.Offset > len(frame) || !bytes.HasPrefix(frame[perr.Offset:], perr.Bytes) {
				t.Errorf("offset %d, bytes [% x] do not point into the frame [% x]", perr.Offset, perr.Bytes, frame[:min(len(frame), 40)])
			}
		})
	}
}

func TestFrameReaderRejects(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		max   int
		want  string
	}{
		{"length below 9", cat(u32(8), make([]byte, 9)), MinFrameSize, "shorter than the 9 bytes"},
		{"length 0", cat(u32(0), make([]byte, 9)), MinFrameSize, "shorter than the 9 bytes"},
		{"length beyond limit", cat(u32(MinFrameSize+1), []byte{byte(OpGet)}, u64(1)), MinFrameSize, "exceeds MaxFrameSize (65536)"},
		{"length 4 GiB", cat(u32(0xffffffff), []byte{byte(OpGet)}, u64(1)), DefaultMaxFrameSize, "frame length 4294967295 exceeds"},
		{"header cut", []byte{0, 0, 0, 20, 3}, MinFrameSize, "after 5 of the 13 bytes"},
		{"body cut", cat(u32(20), []byte{byte(OpGet)}, u64(1), []byte{0, 1}), MinFrameSize, "after 2 of the 11 body bytes of a Get frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(tt.input, tt.max)
			var perr *ProtocolError
			if !errors.As(err, &perr) {
				t.Fatalf("got %v, want a *ProtocolError", err)
			}
			if !strings.Contains(perr.Reason, tt.want) {
				t.Errorf("reason %q does not contain %q", perr.Reason, tt.want)
			}
		})
	}
	if _, err := readFrame(nil, MinFrameSize); err != io.EOF {
		t.Errorf("empty stream: got %v, want io.EOF", err)
	}
}

// TestTruncatedEverywhere cuts every test message at every length: as a
// stream (the frame reader must report the cut) and as a frame whose length
// field was fixed up to the cut body (the decoder must reject it).
func TestTruncatedEverywhere(t *testing.T) {
	type msg struct {
		name  string
		frame []byte
		resp  bool
	}
	var msgs []msg
	for _, tt := range testRequests {
		if tt.name == "full batch" {
			continue // 10k cuts of the same Pings
		}
		msgs = append(msgs, msg{tt.name, encodeRequest(1, &tt.req), false})
	}
	for _, tt := range testResponses {
		msgs = append(msgs, msg{tt.name, encodeResponse(1, &tt.resp), true})
	}
	for _, m := range msgs {
		if len(m.frame) > 16<<10 {
			continue // TestTruncatedLarge
		}
		for n := range len(m.frame) {
			_, err := readFrame(m.frame[:n], DefaultMaxFrameSize)
			var perr *ProtocolError
			if n == 0 && err != io.EOF || n > 0 && !errors.As(err, &perr) {
				t.Fatalf("%s cut to %d of %d bytes: frame reader got %v", m.name, n, len(m.frame), err)
			}
		}
		op, body := Op(m.frame[4]), m.frame[FrameHeaderSize:]
		for n := range len(body) {
			var err error
			if m.resp {
				_, err = decodeResponse(op, body[:n])
			} else {
				_, err = decodeRequest(op, body[:n])
			}
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%s with its body cut to %d of %d bytes: decoder got %v", m.name, n, len(body), err)
			}
		}
	}
}

// TestTruncatedLarge cuts the large test messages at a few lengths around
// their counts and ends: cutting them at every length would read and decode
// gigabytes.
func TestTruncatedLarge(t *testing.T) {
	check := func(name string, frame []byte, resp bool) {
		op, body := Op(frame[4]), frame[FrameHeaderSize:]
		for _, n := range []int{0, 1, 3, 4, 5, 12, len(body) / 2, len(body) - 17, len(body) - 8, len(body) - 1} {
			if n < 0 || n >= len(body) {
				continue
			}
			var perr *ProtocolError
			if _, err := readFrame(frame[:FrameHeaderSize+n], DefaultMaxFrameSize); !errors.As(err, &perr) {
				t.Errorf("%s cut to %d body bytes: frame reader got %v", name, n, err)
			}
			var err error
			if resp {
				_, err = decodeResponse(op, body[:n])
			} else {
				_, err = decodeRequest(op, body[:n])
			}
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("%s with its body cut to %d of %d bytes: decoder got %v", name, n, len(body), err)
			}
		}
	}
	for _, tt := range testRequests {
		if b := encodeRequest(1, &tt.req); len(b) > 16<<10 {
			check(tt.name, b, false)
		}
	}
	for _, tt := range testResponses {
		if b := encodeResponse(1, &tt.resp); len(b) > 16<<10 {
			check(tt.name, b, true)
		}
	}
}

// TestNoAllocationBeyondLimits checks that lengths are checked before
// anything is allocated: a frame header claiming 4 GiB, and a batch claiming
// more items than its frame can hold, cost a few hundred bytes.
func TestNoAllocationBeyondLimits(t *testing.T) {
	bigFrame := cat(u32(0xffffffff), []byte{byte(OpPut)}, u64(1))
	bigBatch := cat(u16(MaxBatch), u32(1), []byte{byte(OpPing)})
	bigValue := cat(u16(1), []byte("k"), []byte{0}, u64(1), u32(0xffffffff))
	bigDigest := cat(u32(MaxRanges), u32(0), u32(1))
	bigDigests := cat(u32(MaxRanges), u64(1), u64(2))
	bigSummary := cat([]byte{0}, u32(MaxSummaryEntries), u16(1), []byte("k"), u64(1), u64(2))
	for name, f := range map[string]func(){
		"frame":   func() { _, _ = readFrame(bigFrame, DefaultMaxFrameSize) },
		"batch":   func() { _, _ = decodeRequest(OpBatch, bigBatch) },
		"value":   func() { _, _ = decodeRequest(OpPut, bigValue) },
		"ranges":  func() { _, _ = decodeRequest(OpDigest, bigDigest) },
		"digests": func() { _, _ = decodeResponse(OpDigestResponse, bigDigests) },
		"summary": func() { _, _ = decodeResponse(OpRangeSummaryResponse, bigSummary) },
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range 100 {
			f()
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 2048 {
			t.Errorf("%s: rejecting allocated %d bytes per call", name, per)
		}
	}
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want *Error
	}{
		{"empty key", Request{Op: OpGet}, ErrBadRequest},
		{"long key", Request{Op: OpPut, Key: append(maxKey, 'x')}, ErrBadRequest},
		{"unknown op", Request{Op: 0x42}, ErrUnknownOp},
		{"response op", Request{Op: OpPong}, ErrUnknownOp},
		{"nested batch", Request{Op: OpBatch, Batch: []Request{{Op: OpBatch}}}, ErrBadRequest},
		{"long batch", Request{Op: OpBatch, Batch: make([]Request, MaxBatch+1)}, ErrBadRequest},
		{"bad item", Request{Op: OpBatch, Batch: []Request{{Op: OpPing}, {Op: OpGet}}}, ErrBadRequest},
		{"fine", Request{Op: OpGet, Key: maxKey}, nil},
		{"digest of no ranges", Request{Op: OpDigest}, ErrBadRequest},
		{"digest beyond MaxRanges", Request{Op: OpDigest, Ranges: make([]HashRange, MaxRanges+1)}, ErrBadRequest},
		{"digest of MaxRanges", Request{Op: OpDigest, Ranges: make([]HashRange, MaxRanges)}, nil},
		{"summary of no range", Request{Op: OpRangeSummary, Limit: 1}, ErrBadRequest},
		{"summary of 2 ranges", Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2, quarter2}, Limit: 1}, ErrBadRequest},
		{"summary limit 0", Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}}, ErrBadRequest},
		{"summary beyond MaxSummaryEntries", Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: MaxSummaryEntries + 1}, ErrBadRequest},
		{"summary of MaxSummaryEntries", Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: MaxSummaryEntries}, nil},
		{"bad digest in batch", Request{Op: OpBatch, Batch: []Request{{Op: OpPing}, {Op: OpDigest}}}, ErrBadRequest},
		{"response op 0x86", Request{Op: OpDigestResponse}, ErrUnknownOp},
		{"op 0x12", Request{Op: 0x12}, ErrUnknownOp},
		{"stat without key", Request{Op: OpReplicaStat}, ErrBadRequest},
		{"fenced put without key", Request{Op: OpFencedPut, Epoch: 1}, ErrBadRequest},
		{"purge without key", Request{Op: OpPurge}, ErrBadRequest},
		{"local get without key", Request{Op: OpReplicaGetLocal}, ErrBadRequest},
		{"stream of no range", Request{Op: OpRangeStream, Limit: 1}, ErrBadRequest},
		{"stream of 2 ranges", Request{Op: OpRangeStream, Ranges: []HashRange{quarter2, quarter2}}, ErrBadRequest},
		{"stream after a long key", Request{Op: OpRangeStream, Ranges: []HashRange{quarter2}, After: append(maxKey, 'x')}, ErrBadRequest},
		{"stream estimates", Request{Op: OpRangeStream, Ranges: []HashRange{quarter2}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkRequest(&tt.req, false)
			if (got == nil) != (tt.want == nil) || got != nil && !errors.Is(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Code: CodeUnavailable, Message: "1 of 3 replicas"})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInternal) {
		t.Errorf("errors.Is does not follow the code")
	}
	if !errors.Is(err, &Error{Code: CodeUnavailable, Message: "1 of 3 replicas"}) || errors.Is(err, &Error{Code: CodeUnavailable, Message: "other"}) {
		t.Errorf("errors.Is does not follow the message")
	}
	var e *Error
	if !errors.As(ResponseForError(err).Err, &e) || e.Code != CodeUnavailable {
		t.Errorf("ResponseForError lost the code")
	}
	if r := ResponseForError(io.EOF); r.Err.Code != CodeInternal || r.Op != OpErrorResponse {
		t.Errorf("ResponseForError(io.EOF) = %+v", r)
	}
	if got := (&Error{Code: 999}).Error(); got != "wire: error code 999" {
		t.Errorf("unknown code reads %q", got)
	}
	full := error(&Error{Code: CodeInsufficientStorage, Message: "disk full"})
	if !errors.Is(full, ErrInsufficientStorage) || errors.Is(full, ErrUnavailable) || full.Error() != "wire: insufficient storage: disk full" {
		t.Errorf("CodeInsufficientStorage: %v", full)
	}
}

func TestFrameSizeFor(t *testing.T) {
	for _, tt := range []struct {
		value int64
		want  int
	}{
		{0, 1 << 20},
		{-1 << 21, MinFrameSize},
		{64 << 20, DefaultMaxFrameSize},
		{1 << 40, FrameSizeLimit},
	} {
		if got := FrameSizeFor(tt.value); got != tt.want {
			t.Errorf("FrameSizeFor(%d) = %d, want %d", tt.value, got, tt.want)
		}
	}
	// A Put of the largest value fits.
	req := Request{Op: OpPut, Key: maxKey, Record: Record{Value: make([]byte, 64<<20)}}
	if n := frameLengthCounted + requestBodySize(&req); n > DefaultMaxFrameSize {
		t.Errorf("a Put of 64 MiB is a frame of %d bytes, above DefaultMaxFrameSize", n)
	}
}

func TestHashRange(t *testing.T) {
	tests := []struct {
		r     HashRange
		empty bool
		in    []uint32
		out   []uint32
	}{
		{wholeSpace, false, []uint32{0, 1, 0x80000000, 0xffffffff}, nil},
		{quarter2, false, []uint32{0x40000000, 0x7fffffff}, []uint32{0x3fffffff, 0x80000000}},
		{HashRange{Lo: 7, Hi: 7}, false, []uint32{7}, []uint32{6, 8}},
		{HashRange{Lo: 8, Hi: 7}, true, nil, []uint32{0, 7, 8, 0xffffffff}},
		{HashRange{Lo: 0xffffffff, Hi: 0}, true, nil, []uint32{0, 0xffffffff}},
	}
	for _, tt := range tests {
		if got := tt.r.Empty(); got != tt.empty {
			t.Errorf("%+v.Empty() = %v", tt.r, got)
		}
		for _, h := range tt.in {
			if !tt.r.Contains(h) {
				t.Errorf("%+v does not contain %#x", tt.r, h)
			}
		}
		for _, h := range tt.out {
			if tt.r.Contains(h) {
				t.Errorf("%+v contains %#x", tt.r, h)
			}
		}
	}
}

// TestStreamChecksumCatchesCorruption flips every bit of a stream
// response's records and checksum, one at a time: each flip either breaks
// the body's structure or is caught by the checksum, so a refill never
// stores bytes that changed on the way.
func TestStreamChecksumCatchesCorruption(t *testing.T) {
	resp := Response{Op: OpRangeStreamResponse, Truncated: true, RemainingKeys: 3, Stream: []StreamEntry{
		{Key: []byte("alpha"), Record: Record{Timestamp: 7, Value: []byte("one value")}},
		{Key: []byte("beta"), Record: Record{Timestamp: 8, Tombstone: true}},
	}}
	body := appendResponseBody(nil, &resp)
	if _, err := decodeResponse(OpRangeStreamResponse, body); err != nil {
		t.Fatalf("the intact body: %v", err)
	}
	caught := 0
	for i := streamHeaderSize; i < len(body); i++ {
		for bit := range 8 {
			bad := bytes.Clone(body)
			bad[i] ^= 1 << bit
			if _, err := decodeResponse(OpRangeStreamResponse, bad); err == nil {
				t.Fatalf("a flip of bit %d of byte %d decoded without an error", bit, i)
			} else if strings.Contains(err.Error(), "checksum") {
				caught++
			}
		}
	}
	if caught == 0 {
		t.Fatal("no flip was caught by the checksum")
	}
}

func TestOutcomesTranslateToTheDomainAndBack(t *testing.T) {
	for _, o := range []Outcome{OutcomeWritten, OutcomeUnchanged, OutcomeStale} {
		res, err := o.PutResult(Record{Timestamp: 5, Value: []byte("v")})
		if err != nil {
			t.Fatalf("%v: %v", o, err)
		}
		if back := OutcomeOf(res.Outcome); back != o {
			t.Errorf("%v became %v and came back as %v", o, res.Outcome, back)
		}
		if res.Current.Timestamp != 5 || string(res.Current.Value) != "v" {
			t.Errorf("%v: current %+v", o, res.Current)
		}
	}
	if _, err := Outcome(9).PutResult(Record{}); err == nil {
		t.Error("an unknown outcome translated without an error")
	}
}
