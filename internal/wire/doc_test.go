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
	want := map[string][]byte{
		"hello":          appendHello(nil, ProtocolVersion, 0),
		"put-request":    encodeRequest(1, &Request{Op: OpPut, Key: []byte("greeting"), Record: rec}),
		"put-response":   encodeResponse(1, &Response{Op: OpPutResponse, Outcome: OutcomeWritten, Current: rec}),
		"error-response": encodeResponse(1, &Response{Err: &Error{Code: CodeUnavailable, Message: "1 of 2"}}),
		"batch-request":  encodeRequest(4, &Request{Op: OpBatch, Batch: []Request{{Op: OpGet, Key: []byte("a")}, {Op: OpPing}}}),
		"batch-response": encodeResponse(4, &Response{Op: OpBatchResponse, Batch: []Response{{Op: OpRecordResponse}, {Op: OpPong}}}),
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
