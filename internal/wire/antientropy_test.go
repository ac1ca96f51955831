package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRecord is a record of a fake replica, as OpRangeSummary shows it,
// with its position on the hash ring. The wire package knows no hash
// function, so a fake replica places its keys itself.
type fakeRecord struct {
	hash uint32
	SummaryEntry
}

// fakeReplica is a replica's records in (hash, key) order.
type fakeReplica []fakeRecord

// newFakeReplica returns n records spread over the hash space, two keys
// per hash (so that the order within a hash counts), fingerprinted by
// their key and timestamp.
func newFakeReplica(n int) fakeReplica {
	r := make(fakeReplica, n)
	step := uint32((1 << 32) / uint64(n) * 2)
	for i := range r {
		key := fmt.Appendf(nil, "k%04d", i)
		r[i] = fakeRecord{hash: uint32(i/2) * step, SummaryEntry: SummaryEntry{Key: key, Timestamp: int64(i)}}
		r[i].Fingerprint = fakeFingerprint(key, r[i].Timestamp)
	}
	return r
}

func fakeFingerprint(key []byte, ts int64) uint64 {
	h := uint64(ts)*0x9e3779b97f4a7c15 + 1
	for _, c := range key {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return h ^ h>>29
}

// in returns the records of r within hr.
func (r fakeReplica) in(hr HashRange) fakeReplica {
	if hr.Empty() {
		return nil
	}
	lo := sort.Search(len(r), func(i int) bool { return r[i].hash >= hr.Lo })
	hi := sort.Search(len(r), func(i int) bool { return r[i].hash > hr.Hi })
	return r[lo:hi]
}

func (r fakeReplica) digest(hr HashRange) RangeDigest {
	var d RangeDigest
	for _, rec := range r.in(hr) {
		d.XOR ^= rec.Fingerprint
		d.Count++
	}
	return d
}

// handle answers OpDigest and OpRangeSummary from r.
func (r fakeReplica) handle(ctx context.Context, req *Request) *Response {
	switch req.Op {
	case OpDigest:
		d := make([]RangeDigest, len(req.Ranges))
		for i, hr := range req.Ranges {
			d[i] = r.digest(hr)
		}
		return &Response{Digests: d}
	case OpRangeSummary:
		recs := r.in(req.Ranges[0])
		resp := &Response{Truncated: len(recs) > int(req.Limit)}
		for _, rec := range recs[:min(len(recs), int(req.Limit))] {
			resp.Entries = append(resp.Entries, rec.SummaryEntry)
		}
		return resp
	}
	return &Response{Err: &Error{Code: CodeUnknownOp, Message: "op " + req.Op.String() + " is not served here"}}
}

var fuzzReplica = newFakeReplica(1024)

// fakeDigests and fakeSummary answer the fuzzer's requests.
func fakeDigests(ranges []HashRange) []RangeDigest {
	return fuzzReplica.handle(context.Background(), &Request{Op: OpDigest, Ranges: ranges}).Digests
}

func fakeSummary(hr HashRange, limit uint32) *Response {
	return fuzzReplica.handle(context.Background(), &Request{Op: OpRangeSummary, Ranges: []HashRange{hr}, Limit: limit})
}

// TestAntiEntropyOverTCP asks a server on a real socket for digests and
// summaries, alone, in a batch and at their limits.
func TestAntiEntropyOverTCP(t *testing.T) {
	replica := newFakeReplica(1000)
	ts := startServer(t, "", ServerOptions{Handler: HandlerFunc(replica.handle)})
	c := dial(t, ts.addr)
	ctx := ctxTimeout(t, 10*time.Second)

	ranges := []HashRange{wholeSpace, quarter2, {Lo: 9, Hi: 8}, {Lo: replica[10].hash, Hi: replica[10].hash}, {Lo: 0xffffffff, Hi: 0xffffffff}}
	resp, err := c.Call(ctx, &Request{Op: OpDigest, Ranges: ranges})
	if err != nil {
		t.Fatal(err)
	}
	want := []RangeDigest{replica.digest(wholeSpace), replica.digest(quarter2), {}, replica.digest(ranges[3]), {}}
	if resp.Op != OpDigestResponse || !slices.Equal(resp.Digests, want) {
		t.Errorf("digests: got %v %+v, want %+v", resp.Op, resp.Digests, want)
	}
	if want[0].Count != 1000 || want[3].Count != 2 {
		t.Errorf("the fake replica is wrong: %+v", want)
	}

	for _, tt := range []struct {
		name      string
		r         HashRange
		limit     uint32
		n         int
		truncated bool
	}{
		{"whole range", quarter2, MaxSummaryEntries, 250, false},
		{"limit is the count", quarter2, 250, 250, false},
		{"truncated", quarter2, 3, 3, true},
		{"limit 1", wholeSpace, 1, 1, true},
		{"empty range", HashRange{Lo: 5, Hi: 4}, 10, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Call(ctx, &Request{Op: OpRangeSummary, Ranges: []HashRange{tt.r}, Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Op != OpRangeSummaryResponse || len(resp.Entries) != tt.n || resp.Truncated != tt.truncated {
				t.Fatalf("got a %v of %d entries, truncated %v; want %d, %v", resp.Op, len(resp.Entries), resp.Truncated, tt.n, tt.truncated)
			}
			for i, e := range resp.Entries {
				if w := replica.in(tt.r)[i].SummaryEntry; !bytes.Equal(e.Key, w.Key) || e.Fingerprint != w.Fingerprint || e.Timestamp != w.Timestamp {
					t.Fatalf("entry %d is %+v, want %+v", i, e, w)
				}
			}
		})
	}

	// In a batch, next to the other kinds.
	resp, err = c.Call(ctx, &Request{Op: OpBatch, Batch: []Request{
		{Op: OpDigest, Ranges: []HashRange{quarter2}},
		{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: 2},
		{Op: OpPing},
		{Op: OpGet, Key: []byte("k")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := resp.Batch
	if len(b) != 4 || b[0].Op != OpDigestResponse || len(b[0].Digests) != 1 || b[0].Digests[0] != replica.digest(quarter2) ||
		b[1].Op != OpRangeSummaryResponse || len(b[1].Entries) != 2 || !b[1].Truncated ||
		b[2].Op != OpPong || !errors.Is(b[3].Err, ErrUnknownOp) {
		t.Errorf("batch: got %+v", b)
	}

	// MaxRanges ranges: a 512 KiB request, a 1 MiB answer.
	many := manyRanges(MaxRanges)
	resp, err = c.Call(ctx, &Request{Op: OpDigest, Ranges: many})
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for i, d := range resp.Digests {
		if d != replica.digest(many[i]) {
			t.Fatalf("digest %d of %d: got %+v, want %+v", i, len(many), d, replica.digest(many[i]))
		}
		total += d.Count
	}
	if len(resp.Digests) != MaxRanges || total != 1000 {
		t.Errorf("got %d digests counting %d records, want %d and 1000", len(resp.Digests), total, MaxRanges)
	}
}

// TestAntiEntropyFindsDifferences runs the caller's side of anti-entropy
// over two servers: compare digests, ask for summaries where they differ,
// split truncated ranges. It must find exactly the keys that differ.
func TestAntiEntropyFindsDifferences(t *testing.T) {
	a := newFakeReplica(4000)
	b := slices.Clone(a)
	b = slices.Delete(b, 100, 101)   // k0100 is missing on b
	b = slices.Delete(b, 2000, 2001) // k2001 too; b[i] is now k(i+2) from 2000 on
	b[3000].Timestamp++              // k3002 is newer on b
	b[3000].Fingerprint = fakeFingerprint(b[3000].Key, b[3000].Timestamp)
	b[3001].Key = []byte("k3003-only-on-b") // k3003 is missing on b, this on a
	b[3001].Fingerprint = fakeFingerprint(b[3001].Key, b[3001].Timestamp)
	want := []string{"k0100", "k2001", "k3002", "k3003", "k3003-only-on-b"}

	ca := dial(t, startServer(t, "", ServerOptions{Handler: HandlerFunc(a.handle)}).addr)
	cb := dial(t, startServer(t, "", ServerOptions{Handler: HandlerFunc(b.handle)}).addr)
	ctx := ctxTimeout(t, 10*time.Second)

	var calls int
	call := func(c *Conn, req *Request) *Response {
		t.Helper()
		calls++
		resp, err := c.Call(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	differ := map[string]bool{}
	pending := manyRanges(64)
	for len(pending) > 0 {
		req := &Request{Op: OpDigest, Ranges: pending}
		da, db := call(ca, req).Digests, call(cb, req).Digests
		var next []HashRange
		for i, r := range pending {
			if da[i] == db[i] {
				continue
			}
			sreq := &Request{Op: OpRangeSummary, Ranges: []HashRange{r}, Limit: 16}
			sa, sb := call(ca, sreq), call(cb, sreq)
			if (sa.Truncated || sb.Truncated) && r.Lo < r.Hi {
				mid := r.Lo + (r.Hi-r.Lo)/2
				next = append(next, HashRange{r.Lo, mid}, HashRange{mid + 1, r.Hi})
				continue
			}
			seen := map[string]uint64{}
			for _, e := range sa.Entries {
				seen[string(e.Key)] = e.Fingerprint
			}
			for _, e := range sb.Entries {
				if fp, ok := seen[string(e.Key)]; !ok || fp != e.Fingerprint {
					differ[string(e.Key)] = true
				}
				delete(seen, string(e.Key))
			}
			for k := range seen {
				differ[k] = true
			}
		}
		pending = next
	}
	var got []string
	for k := range differ {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("differing keys: got %q, want %q", got, want)
	}
	t.Logf("found %d differing keys among 4000 in %d calls", len(got), calls)
}

// TestAntiEntropyBadRequests: well-formed requests that break the limits
// are answered CodeBadRequest by the server, without calling the handler,
// alone or in a batch, and the connection goes on.
func TestAntiEntropyBadRequests(t *testing.T) {
	var calls atomic.Int64
	replica := newFakeReplica(10)
	ts := startServer(t, "", ServerOptions{Handler: HandlerFunc(func(ctx context.Context, req *Request) *Response {
		calls.Add(1)
		return replica.handle(ctx, req)
	})})
	nc, fr := rawConn(t, ts.addr)
	summary := func(limit int) []byte { return cat(u32(0), u32(0xffffffff), u32(limit)) }
	tests := []struct {
		name string
		op   Op
		body []byte
		want string
	}{
		{"digest of no ranges", OpDigest, u32(0), "a Digest of no ranges"},
		{"summary limit 0", OpRangeSummary, summary(0), "limit 0, outside [1, MaxSummaryEntries (65536)]"},
		{"summary limit beyond MaxSummaryEntries", OpRangeSummary, summary(MaxSummaryEntries + 1), "limit 65537"},
		{"summary limit 4G", OpRangeSummary, summary(0xffffffff), "limit 4294967295"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uint64(2*i + 1)
			item := cat(u32(1+len(tt.body)), []byte{byte(tt.op)}, tt.body)
			batch := cat(u16(2), item, u32(1), []byte{byte(OpPing)})
			nc.Write(cat(rawFrame(tt.op, id, tt.body), rawFrame(OpBatch, id+1, batch)))
			got := map[uint64]Response{}
			for range 2 {
				f, err := fr.next()
				if err != nil {
					t.Fatal(err)
				}
				if got[f.id], err = decodeResponse(f.op, f.body); err != nil {
					t.Fatal(err)
				}
			}
			if r := got[id]; !errors.Is(r.Err, ErrBadRequest) || !strings.Contains(r.Err.Message, tt.want) {
				t.Errorf("alone: got %+v, want CodeBadRequest saying %q", r.Err, tt.want)
			}
			if r := got[id+1]; len(r.Batch) != 2 || !errors.Is(r.Batch[0].Err, ErrBadRequest) || r.Batch[1].Op != OpPong {
				t.Errorf("in a batch: got %+v", r)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler was called %d times for invalid requests", n)
	}
	// Valid ones reach it, on the same connection.
	nc.Write(encodeRequest(100, &Request{Op: OpRangeSummary, Ranges: []HashRange{wholeSpace}, Limit: MaxSummaryEntries}))
	f, err := fr.next()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := decodeResponse(f.op, f.body); err != nil || len(r.Entries) != 10 || calls.Load() != 1 {
		t.Errorf("valid summary: %+v, %v, %d calls", r, err, calls.Load())
	}
}

// TestAntiEntropyHandlerMistakes: a handler answering with the wrong kind,
// the wrong number of digests, more entries than the limit or a bad key
// gets its request answered with CodeInternal, and the mistake logged.
func TestAntiEntropyHandlerMistakes(t *testing.T) {
	entries := func(keys ...[]byte) []SummaryEntry {
		var e []SummaryEntry
		for _, k := range keys {
			e = append(e, SummaryEntry{Key: k})
		}
		return e
	}
	// The request's first range's Lo picks the mistake.
	mistakes := map[uint32]*Response{
		1: {Op: OpRecordResponse},
		2: {Op: OpPong},
		3: {Digests: []RangeDigest{{}, {}}},
		4: {},
		5: {Op: OpDigestResponse, Digests: make([]RangeDigest, 3)},
		6: {Entries: entries([]byte("a"), []byte("b"), []byte("c"))},
		7: {Entries: entries([]byte("a"), nil)},
		8: {Entries: entries(append(maxKey, 'x'))},
		9: {Op: OpDigestResponse, Digests: make([]RangeDigest, 1)},
	}
	ts := startServer(t, "", ServerOptions{Handler: HandlerFunc(func(ctx context.Context, req *Request) *Response {
		return mistakes[req.Ranges[0].Lo]
	})})
	c := dial(t, ts.addr)
	ctx := ctxTimeout(t, 5*time.Second)
	tests := []struct {
		name string
		req  Request
		want string // in the error and the log
	}{
		{"record answers digest", Request{Op: OpDigest, Ranges: []HashRange{{1, 1}}}, "answered with a RecordResponse"},
		{"pong answers summary", Request{Op: OpRangeSummary, Ranges: []HashRange{{2, 2}}, Limit: 5}, "answered with a Pong"},
		{"2 digests for 1 range", Request{Op: OpDigest, Ranges: []HashRange{{3, 3}}}, "answered 2 digests for 1 ranges"},
		{"no digests", Request{Op: OpDigest, Ranges: []HashRange{{4, 4}, {0, 1}}}, "answered 0 digests for 2 ranges"},
		{"3 digests for 4 ranges", Request{Op: OpDigest, Ranges: []HashRange{{5, 5}, {0, 1}, {0, 1}, {0, 1}}}, "answered 3 digests for 4 ranges"},
		{"entries beyond limit", Request{Op: OpRangeSummary, Ranges: []HashRange{{6, 6}}, Limit: 2}, "answered 3 entries for a limit of 2"},
		{"empty key", Request{Op: OpRangeSummary, Ranges: []HashRange{{7, 7}}, Limit: 2}, "entry 1 with a key of 0 bytes"},
		{"long key", Request{Op: OpRangeSummary, Ranges: []HashRange{{8, 8}}, Limit: 2}, "entry 0 with a key of 4097 bytes"},
		{"digests answer summary", Request{Op: OpRangeSummary, Ranges: []HashRange{{9, 9}}, Limit: 2}, "answered with a DigestResponse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Call(ctx, &tt.req)
			if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("alone: got %v, want CodeInternal saying %q", err, tt.want)
			}
			resp, err := c.Call(ctx, &Request{Op: OpBatch, Batch: []Request{tt.req, {Op: OpPing}}})
			if err != nil || !errors.Is(resp.Batch[0].Err, ErrInternal) || resp.Batch[1].Op != OpPong {
				t.Errorf("in a batch: got %+v, %v", resp, err)
			}
			if !strings.Contains(ts.logs.String(), tt.want) {
				t.Errorf("the mistake %q was not logged", tt.want)
			}
		})
	}
	if resp, err := c.Call(ctx, &Request{Op: OpDigest, Ranges: []HashRange{{9, 9}}}); err != nil || len(resp.Digests) != 1 {
		t.Errorf("a right answer after the mistakes: %+v, %v", resp, err)
	}
}

// TestAntiEntropyClientProtocolErrors: a server whose answer does not fit
// the request (a digest per range, no more entries than the limit) breaks
// the connection.
func TestAntiEntropyClientProtocolErrors(t *testing.T) {
	digest := &Request{Op: OpDigest, Ranges: []HashRange{wholeSpace, quarter2}}
	summary := &Request{Op: OpRangeSummary, Ranges: []HashRange{quarter2}, Limit: 1}
	tests := []struct {
		name   string
		req    *Request
		answer *Response
		want   string
	}{
		{"digest count", digest, &Response{Op: OpDigestResponse, Digests: make([]RangeDigest, 3)}, "a DigestResponse of 3 digests answers a Digest of 2 ranges"},
		{"no digests", digest, &Response{Op: OpDigestResponse}, "of 0 digests answers a Digest of 2 ranges"},
		{"entries beyond limit", summary, &Response{Op: OpRangeSummaryResponse, Entries: manyEntries(2, 1)}, "a RangeSummaryResponse of 2 entries answers a RangeSummary with limit 1"},
		{"wrong kind", summary, &Response{Op: OpDigestResponse}, "a DigestResponse answers a RangeSummary request"},
		{"batch item digest count", &Request{Op: OpBatch, Batch: []Request{{Op: OpPing}, *digest}},
			&Response{Op: OpBatchResponse, Batch: []Response{{Op: OpPong}, {Op: OpDigestResponse, Digests: make([]RangeDigest, 1)}}},
			"batch item 1: a DigestResponse of 1 digests answers a Digest of 2 ranges"},
		{"batch item entries", &Request{Op: OpBatch, Batch: []Request{*summary}},
			&Response{Op: OpBatchResponse, Batch: []Response{{Op: OpRangeSummaryResponse, Entries: manyEntries(5, 1)}}},
			"batch item 0: a RangeSummaryResponse of 5 entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeServer(t, func(nc net.Conn, fr *frameReader) {
				f, err := fr.next()
				if err != nil {
					return
				}
				nc.Write(encodeResponse(f.id, tt.answer))
				io.Copy(io.Discard, nc)
			})
			c := dial(t, addr)
			_, err := c.Call(ctxTimeout(t, 5*time.Second), tt.req)
			if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a protocol error saying %q", err, tt.want)
			}
			if c.Err() == nil {
				t.Errorf("the connection still takes calls")
			}
		})
	}
}

// TestAntiEntropyOldPeer shows how a caller tells a version 1 peer that
// predates OpDigest and OpRangeSummary: it answers CodeUnknownOp, alone and
// in a batch, and the connection goes on. The peer is either a server of
// the time, which did not know the ops (played by a script), or a server of
// today whose handler does not serve them.
func TestAntiEntropyOldPeer(t *testing.T) {
	old := fakeServer(t, func(nc net.Conn, fr *frameReader) {
		unknown := func(op Op) *Response {
			return errorResponse(CodeUnknownOp, "op %#02x is not a request of protocol version 1", uint8(op))
		}
		for {
			f, err := fr.next()
			if err != nil {
				return
			}
			var resp *Response
			switch f.op {
			case OpPing:
				resp = &Response{Op: OpPong}
			case OpBatch: // a Digest, then a Ping, as the test sends
				resp = &Response{Op: OpBatchResponse, Batch: []Response{*unknown(OpDigest), {Op: OpPong}}}
			default:
				resp = unknown(f.op)
			}
			nc.Write(encodeResponse(f.id, resp))
		}
	})
	var h HandlerFunc = func(ctx context.Context, req *Request) *Response {
		return &Response{Err: &Error{Code: CodeUnknownOp, Message: fmt.Sprintf("op %v is not served here", req.Op)}}
	}
	today := startServer(t, "", ServerOptions{Handler: h}).addr

	for name, addr := range map[string]string{"old server": old, "handler without anti-entropy": today} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			ctx := ctxTimeout(t, 5*time.Second)
			_, err := c.Call(ctx, &Request{Op: OpDigest, Ranges: []HashRange{wholeSpace}})
			if !errors.Is(err, ErrUnknownOp) {
				t.Errorf("digest: got %v, want ErrUnknownOp", err)
			}
			_, err = c.Call(ctx, &Request{Op: OpRangeSummary, Ranges: []HashRange{wholeSpace}, Limit: 10})
			if !errors.Is(err, ErrUnknownOp) {
				t.Errorf("summary: got %v, want ErrUnknownOp", err)
			}
			resp, err := c.Call(ctx, &Request{Op: OpBatch, Batch: []Request{{Op: OpDigest, Ranges: []HashRange{quarter2}}, {Op: OpPing}}})
			if err != nil || !errors.Is(resp.Batch[0].Err, ErrUnknownOp) || resp.Batch[1].Op != OpPong {
				t.Errorf("batch: got %+v, %v", resp, err)
			}
			if _, err := c.Call(ctx, &Request{Op: OpPing}); err != nil || c.Err() != nil {
				t.Errorf("the connection broke: %v, %v", err, c.Err())
			}
		})
	}
}
