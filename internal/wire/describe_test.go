package wire

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestDescribeFrameNamesWhatAFrameCarries(t *testing.T) {
	put := encodeRequest(7, &Request{Op: OpReplicaPut, Key: []byte("k1"), Record: Record{Timestamp: 42, Value: []byte("abc")}})
	batch := encodeResponse(8, &Response{Op: OpBatchResponse, Batch: []Response{
		{Op: OpRecordResponse, Found: true, Record: Record{Timestamp: 43, Tombstone: true}},
		{Op: OpRecordResponse},
		{Err: &Error{Code: CodeUnavailable, Message: "recovering"}},
	}})
	stream := append(append([]byte(nil), put...), batch...)
	var got []string
	for len(stream) > 0 {
		desc, n := DescribeFrame(stream)
		if n == 0 {
			t.Fatalf("a whole frame described as incomplete: %x", stream)
		}
		got = append(got, desc)
		stream = stream[n:]
	}
	want := []string{
		`#7 ReplicaPut "k1" 3 bytes @42`,
		`#8 BatchResponse of 3: RecordResponse tombstone @43; RecordResponse not found; ErrorResponse`,
	}
	if len(got) != 2 || got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) || !strings.Contains(got[1], "recovering") {
		t.Fatalf("described %q, want %q (the error's message included)", got, want)
	}
	auth := encodeRequest(9, &Request{Op: OpAuth, Key: []byte("secret-token")})
	if desc, _ := DescribeFrame(auth); strings.Contains(desc, "secret") || !strings.Contains(desc, "Auth") {
		t.Fatalf("an Auth frame described as %q: it must name the op and not show the token", desc)
	}
	if desc, n := DescribeFrame(put[:len(put)-1]); n != 0 || desc != "" {
		t.Fatalf("a frame cut short described as %q, %d bytes", desc, n)
	}
}

// TestDescribeFrameTakesGarbage: whatever the bytes, it neither panics nor
// claims more bytes than it was given.
func TestDescribeFrameTakesGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		p := make([]byte, rng.IntN(64))
		for i := range p {
			p[i] = byte(rng.IntN(256))
		}
		if len(p) >= 4 && rng.IntN(2) == 0 { // a plausible length
			p[0], p[1], p[2], p[3] = 0, 0, 0, byte(rng.IntN(len(p)))
		}
		if _, n := DescribeFrame(p); n > len(p) {
			t.Fatalf("DescribeFrame(%x) took %d bytes of %d", p, n, len(p))
		}
	}
}
