package wire

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/budget"
)

// TestFrameReaderReserves: a reader with reserve asks it for a body's
// length once the body begins, reads a reserved body into one buffer of its
// length, skips a refused body and goes on with the next frame, releases
// what it reserved for a body that is cut, and asks nothing for a frame
// without a body.
func TestFrameReaderReserves(t *testing.T) {
	body := bytes.Repeat([]byte("b"), 300<<10)
	frames := cat(rawFrame(OpPut, 1, body), rawFrame(OpPing, 2, nil), rawFrame(OpPut, 3, body), rawFrame(OpGet, 4, []byte("next")))
	var asked []int
	refuse := map[int]bool{2: true} // the second body asked for: the Ping has none
	released := int64(0)
	fr := newFrameReader(bufio.NewReaderSize(bytes.NewReader(frames), bufferSize), DefaultMaxFrameSize)
	fr.reserve = func(n int) (int64, error) {
		asked = append(asked, n)
		if refuse[len(asked)] {
			return 0, errRefused
		}
		return int64(n), nil
	}
	fr.release = func(held int64) { released += held }

	f, err := fr.next()
	if err != nil || f.id != 1 || !bytes.Equal(f.body, body) || f.held != int64(len(body)) || cap(f.body) != len(body) {
		t.Fatalf("a reserved frame: id %d, %d bytes (cap %d), held %d, %v; want id 1, the body in a buffer of its size, held %d", f.id, len(f.body), cap(f.body), f.held, err, len(body))
	}
	if f, err := fr.next(); err != nil || f.id != 2 || f.held != 0 {
		t.Fatalf("a ping: id %d, held %d, %v", f.id, f.held, err)
	}
	if f, err := fr.next(); err != nil || f.id != 3 || !f.refused || f.body != nil || f.held != 0 {
		t.Fatalf("a refused frame: id %d, refused %v, %d bytes, held %d, %v; want id 3 refused, no body", f.id, f.refused, len(f.body), f.held, err)
	}
	if f, err := fr.next(); err != nil || f.id != 4 || string(f.body) != "next" {
		t.Fatalf("the frame after a refused one: id %d, %q, %v", f.id, f.body, err)
	}
	if got, want := asked, []int{len(body), len(body), 4}; !equalInts(got, want) {
		t.Errorf("reserve was asked for %v, want %v (nothing for the ping)", got, want)
	}
	if released != 0 {
		t.Errorf("released %d for frames that were returned", released)
	}

	cut := rawFrame(OpPut, 5, body)[:FrameHeaderSize+1000]
	fr = newFrameReader(bufio.NewReaderSize(bytes.NewReader(cut), bufferSize), DefaultMaxFrameSize)
	fr.reserve = func(n int) (int64, error) { return int64(n), nil }
	fr.release = func(held int64) { released += held }
	var perr *ProtocolError
	if _, err := fr.next(); !errors.As(err, &perr) {
		t.Fatalf("a cut frame: %v, want a protocol error", err)
	}
	if released != int64(len(body)) {
		t.Errorf("a cut frame released %d, want what it reserved (%d)", released, len(body))
	}
	// A cut body that was refused is a protocol error too.
	fr = newFrameReader(bufio.NewReaderSize(bytes.NewReader(cut), bufferSize), DefaultMaxFrameSize)
	fr.reserve = func(int) (int64, error) { return 0, errRefused }
	if _, err := fr.next(); !errors.As(err, &perr) || !strings.Contains(perr.Reason, "after 1000 of the") {
		t.Fatalf("a cut, refused frame: %v, want a protocol error after 1000 bytes", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFramesBeyondTheBudgetAreRefused: a peer that sends part of a large
// Put holds its whole length in the budget; another peer's large Put then
// waits the budget's wait and is answered CodeOverloaded, its connection
// still serving; small requests are served meanwhile; once the first Put
// is whole, it is answered, everything is released, and large Puts are
// served again.
func TestFramesBeyondTheBudgetAreRefused(t *testing.T) {
	const (
		size  = 8 << 20
		large = size - size/16 // what frames over 64 KiB may hold together
		wait  = 200 * time.Millisecond
	)
	bud := budget.New(size, wait)
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, Budget: bud})

	// A Put whose body is the large share, of which 1 MiB is sent.
	holder := encodeRequest(1, &Request{Op: OpPut, Key: []byte("k"), Record: Record{Timestamp: 1, Value: bytes.Repeat([]byte("h"), large-(keyHeaderSize+1)-recordHeaderSize)}})
	if n := len(holder) - FrameHeaderSize; n != large {
		t.Fatalf("the holder's body is %d bytes, want %d", n, large)
	}
	hc, hfr := rawConn(t, ts.addr)
	if _, err := hc.Write(holder[:FrameHeaderSize+1<<20]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ts.srv.Stats().BytesReserved == large }, "the Put to reserve %d bytes: %+v", large, ts.srv.Stats())

	put := func(id uint64, n int) []byte {
		return encodeRequest(id, &Request{Op: OpPut, Key: []byte("k"), Record: Record{Timestamp: 1, Value: make([]byte, n)}})
	}
	oc, ofr := rawConn(t, ts.addr)
	start := time.Now()
	if _, err := oc.Write(put(7, 1<<20)); err != nil {
		t.Fatal(err)
	}
	f, err := ofr.next()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := decodeResponse(f.op, f.body)
	if err != nil || f.id != 7 || resp.Err == nil || resp.Err.Code != CodeOverloaded {
		t.Fatalf("a 1 MiB Put with the budget full: id %d, %+v, %v; want CodeOverloaded", f.id, resp, err)
	}
	if d := time.Since(start); d < wait {
		t.Errorf("refused after %v, before the budget's wait (%v)", d, wait)
	}
	// The connection goes on.
	if _, err := oc.Write(encodeRequest(8, &Request{Op: OpGet, Key: []byte("after")})); err != nil {
		t.Fatal(err)
	}
	if f, err := ofr.next(); err != nil || f.id != 8 || f.op != OpRecordResponse {
		t.Fatalf("a Get after the refused Put: id %d %v, %v", f.id, f.op, err)
	}

	c := dial(t, ts.addr)
	for _, n := range []int{100, 4 << 10, 60 << 10} {
		req := &Request{Op: OpPut, Key: []byte("small"), Record: Record{Timestamp: 2, Value: make([]byte, n)}}
		start := time.Now()
		resp, err := c.Call(ctxTimeout(t, 5*time.Second), req)
		if err == nil {
			err = checkEcho(req, resp)
		}
		if err != nil || time.Since(start) > wait/2 {
			t.Errorf("a Put of %d bytes with the large share full: %v after %v, want it served at once", n, err, time.Since(start))
		}
	}
	// A small Put's reservation is released just after its answer is
	// written: wait for the last one's.
	waitFor(t, func() bool { st := ts.srv.Stats(); return st.OverBudget == 1 && st.BytesReserved == large },
		"stats %+v: want 1 over budget, %d bytes reserved", ts.srv.Stats(), large)

	if _, err := hc.Write(holder[FrameHeaderSize+1<<20:]); err != nil {
		t.Fatal(err)
	}
	if f, err := hfr.next(); err != nil || f.id != 1 || f.op != OpPutResponse {
		t.Fatalf("the holder's Put, once whole: id %d %v, %v", f.id, f.op, err)
	}
	waitFor(t, func() bool { return ts.srv.Stats().BytesReserved == 0 && bud.InUse() == 0 }, "everything released: %+v, budget %d", ts.srv.Stats(), bud.InUse())
	if _, err := oc.Write(put(9, 4<<20)); err != nil {
		t.Fatal(err)
	}
	if f, err := ofr.next(); err != nil || f.id != 9 || f.op != OpPutResponse {
		t.Fatalf("a 4 MiB Put once the budget is free: id %d %v, %v", f.id, f.op, err)
	}
	batch := encodeRequest(10, &Request{Op: OpBatch, Batch: []Request{
		{Op: OpPut, Key: []byte("a"), Record: Record{Timestamp: 1, Value: make([]byte, 1<<20)}},
		{Op: OpGet, Key: []byte("b")},
	}})
	if _, err := oc.Write(batch); err != nil {
		t.Fatal(err)
	}
	if f, err := ofr.next(); err != nil || f.id != 10 || f.op != OpBatchResponse {
		t.Fatalf("a batch: id %d %v, %v", f.id, f.op, err)
	}
	waitFor(t, func() bool { return bud.InUse() == 0 }, "the batch to release its frame: budget %d", bud.InUse())
}

// TestBudgetReleasedWhenConnectionsEnd: what frames reserved is released
// when their connection ends before they are whole, or while their
// requests are under way.
func TestBudgetReleasedWhenConnectionsEnd(t *testing.T) {
	bud := budget.New(64<<20, time.Second)
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, Budget: bud})
	cut, _ := rawConn(t, ts.addr)
	frame := encodeRequest(1, &Request{Op: OpPut, Key: []byte("k"), Record: Record{Timestamp: 1, Value: make([]byte, 1<<20)}})
	if _, err := cut.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	hung, _ := rawConn(t, ts.addr)
	if _, err := hung.Write(encodeRequest(1, &Request{Op: OpPut, Key: []byte("hang"), Record: Record{Timestamp: 1, Value: make([]byte, 1<<20)}})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return bud.InUse() > 2<<20 }, "both to reserve: budget %d", bud.InUse())
	cut.Close()
	hung.Close()
	waitFor(t, func() bool { return bud.InUse() == 0 && ts.srv.Stats().BytesReserved == 0 }, "the budget released: %d, %+v", bud.InUse(), ts.srv.Stats())
}
