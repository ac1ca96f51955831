package wire

import (
	"bytes"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestProtocolDocExamples checks the worked examples of docs/protocol.md
// against the encoder, so that the specification cannot drift from the code.
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Skipf("docs/protocol.md: %v", err)
	}
	examples := map[string][]byte{}
	re := regexp.MustCompile("(?s)<!-- example: ([a-z-]+) -->\n```\n(.*?)```")
	for _, m := range re.FindAllSubmatch(doc, -1) {
		examples[string(m[1])] = exampleBytes(t, string(m[2]))
	}

	rec := Record{Timestamp: 1700000000000000, Value: []byte("hello, world")}
	// The anti-entropy example: the keys' hashes are keyhash.Sum's, the
	// fingerprints made up.
	halves := []HashRange{{Lo: 0, Hi: 0x3fffffff}, {Lo: 0x40000000, Hi: 0x7fffffff}}
	user1 := SummaryEntry{Key: []byte("user:1"), Fingerprint: 0x0f1e2d3c4b5a6978, Timestamp: 1700000000000000}
	user6 := SummaryEntry{Key: []byte("user:6"), Fingerprint: 0x3a5c7e9f1b2d4f60, Timestamp: 1700000000500000}
	const user2, banana = 0xd2c4b6a89a8c7e61, 0x5b3d1f0e2c4a6879
	digests := []RangeDigest{
		{XOR: 0x8c1e4e0f5a7d3b21, Count: 1},
		{XOR: user1.Fingerprint ^ user6.Fingerprint ^ user2 ^ banana, Count: 4},
	}
	want := map[string][]byte{
		"digest-request":   encodeRequest(5, &Request{Op: OpDigest, Ranges: halves}),
		"digest-response":  encodeResponse(5, &Response{Op: OpDigestResponse, Digests: digests}),
		"summary-request":  encodeRequest(6, &Request{Op: OpRangeSummary, Ranges: halves[1:], Limit: 2}),
		"summary-response": encodeResponse(6, &Response{Op: OpRangeSummaryResponse, Truncated: true, Entries: []SummaryEntry{user1, user6}}),
		"hello":            appendHello(nil, ProtocolVersion, 0),
		"put-request":      encodeRequest(1, &Request{Op: OpPut, Key: []byte("greeting"), Record: rec}),
		"put-response":     encodeResponse(1, &Response{Op: OpPutResponse, Outcome: OutcomeWritten, Current: rec}),
		"error-response":   encodeResponse(1, &Response{Err: &Error{Code: CodeUnavailable, Message: "1 of 2"}}),
		"batch-request":    encodeRequest(4, &Request{Op: OpBatch, Batch: []Request{{Op: OpGet, Key: []byte("a")}, {Op: OpPing}}}),
		"batch-response":   encodeResponse(4, &Response{Op: OpBatchResponse, Batch: []Response{{Op: OpRecordResponse}, {Op: OpPong}}}),
		"stream-request":   encodeRequest(7, &Request{Op: OpRangeStream, Ranges: halves[1:], Limit: 64, After: []byte("user:1")}),
		"stream-response": encodeResponse(7, &Response{Op: OpRangeStreamResponse, Truncated: true, RemainingKeys: 1, RemainingBytes: 48, Stream: []StreamEntry{
			{Key: []byte("user:6"), Record: Record{Timestamp: 1700000000500000, Value: []byte("bob")}},
			{Key: []byte("user:2"), Record: Record{Timestamp: 1700000001000000, Tombstone: true}},
		}}),
	}
	for name, w := range want {
		got, ok := examples[name]
		if !ok {
			t.Errorf("docs/protocol.md has no example %q", name)
			continue
		}
		if !bytes.Equal(got, w) {
			t.Errorf("example %q is\n[% x]\nthe encoder says\n[% x]", name, got, w)
		}
	}
}

// exampleBytes reads the leading hex bytes of each line of an example.
func exampleBytes(t *testing.T, block string) []byte {
	var b []byte
	for _, line := range strings.Split(block, "\n") {
		for _, tok := range strings.Fields(line) {
			v, err := hex.DecodeString(tok)
			if err != nil || len(v) != 1 {
				break // the annotation
			}
			b = append(b, v...)
		}
	}
	return b
}
