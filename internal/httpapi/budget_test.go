package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/budget"
)

// upload is a write whose body the test sends when it wants.
type upload struct {
	w    *io.PipeWriter
	size int
	sent int
	done chan *http.Response // the answer, nil when the request failed
}

// startUpload sends the headers of a write of size bytes, with its
// Content-Length unless chunked, and the first sent bytes of its body.
func startUpload(t *testing.T, url string, size, sent int, chunked bool) *upload {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(size)
	if chunked {
		req.ContentLength = -1
	}
	u := &upload{w: pw, size: size, done: make(chan *http.Response, 1)}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			pr.CloseWithError(err)
			u.done <- nil
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		u.done <- resp
	}()
	t.Cleanup(func() { pw.CloseWithError(io.ErrClosedPipe) })
	u.send(t, sent)
	return u
}

// send sends n more bytes of the body.
func (u *upload) send(t *testing.T, n int) {
	t.Helper()
	if _, err := u.w.Write(bytes.Repeat([]byte("u"), n)); err != nil {
		t.Fatalf("sending %d bytes of the body: %v", n, err)
	}
	u.sent += n
}

// sendRest sends the rest of the body, for a goroutine: it ignores a server
// that stops reading.
func (u *upload) sendRest() {
	u.w.Write(bytes.Repeat([]byte("u"), u.size-u.sent))
	u.w.Close()
}

// finish sends the rest of the body and returns the status of the answer.
func (u *upload) finish(t *testing.T) int {
	t.Helper()
	u.send(t, u.size-u.sent)
	u.w.Close()
	return u.answer(t).StatusCode
}

// answer waits for the answer; a request that failed is status 0.
func (u *upload) answer(t *testing.T) *http.Response {
	t.Helper()
	select {
	case resp := <-u.done:
		if resp == nil {
			return &http.Response{Header: http.Header{}}
		}
		return resp
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s")
		return nil
	}
}

// TestWritesBeyondTheBudgetAreRefused: two slow uploads that hold the
// large share of the budget (its last sixteenth is kept for small
// requests) make further large writes, of known length or chunked, wait
// the budget's wait and get 503 with Retry-After; small writes are served
// meanwhile; once the uploads finish, large writes are served again, and
// every reservation was released.
func TestWritesBeyondTheBudgetAreRefused(t *testing.T) {
	const (
		size  = 8 << 20
		large = size - size/16 // what writes over 64 KiB may hold together
		wait  = 200 * time.Millisecond
	)
	b := newFake()
	b.maxValue = 4 << 20
	bud := budget.New(size, wait)
	h := NewHandler(Options{Backend: b, Budget: bud})
	srv := httptest.NewServer(h)
	defer srv.Close()

	// Two uploads of half the large share each, 1 MiB of each sent: the
	// budget holds their whole length.
	slow := []*upload{
		startUpload(t, srv.URL+"/values/slow1", large/2, 1<<20, false),
		startUpload(t, srv.URL+"/values/slow2", large/2, 1<<20, false),
	}
	waitFor(t, func() bool { return h.reserved.Load() == large }, func() string {
		return fmt.Sprintf("the uploads to reserve %d bytes, have %d", large, h.reserved.Load())
	})

	refused := []struct {
		name    string
		chunked bool
	}{{"known length", false}, {"chunked", true}}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			u := startUpload(t, srv.URL+"/values/more", 1<<20, 0, tt.chunked)
			go u.w.Write(make([]byte, 1<<20)) // the server may read some before it refuses
			resp := u.answer(t)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
				t.Fatalf("a 1 MiB write with the budget full: %d, Retry-After %q; want 503 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			if d := time.Since(start); d < wait {
				t.Errorf("refused after %v, before the budget's wait (%v)", d, wait)
			}
		})
	}
	for _, n := range []int{100, 4 << 10, 64 << 10} {
		start := time.Now()
		resp := do(t, h, request{method: "POST", path: "/values/small", body: strings.Repeat("s", n)})
		if resp.StatusCode != 200 || time.Since(start) > wait/2 {
			t.Errorf("a write of %d bytes with the large share full: %d after %v, want 200 at once", n, resp.StatusCode, time.Since(start))
		}
	}
	if got := scrape(t, srv.URL, "tako_http_budget_refused_total"); got != "2" {
		t.Errorf("tako_http_budget_refused_total %s, want 2", got)
	}
	if got, want := scrape(t, srv.URL, "tako_http_bytes_reserved"), "7.86432e+06"; got != want {
		t.Errorf("tako_http_bytes_reserved %s, want %s", got, want)
	}

	for i, u := range slow {
		if code := u.finish(t); code != 200 {
			t.Errorf("slow upload %d: %d, want 200", i+1, code)
		}
	}
	// An upload's reservation is released just after its answer is
	// written, which the client may read first.
	waitFor(t, func() bool { return h.reserved.Load() == 0 && bud.InUse() == 0 }, func() string {
		return fmt.Sprintf("after every write: %d bytes reserved by the handler, %d in the budget; want 0", h.reserved.Load(), bud.InUse())
	})
	for _, tt := range refused {
		u := startUpload(t, srv.URL+"/values/more", 4<<20, 0, tt.chunked)
		if code := u.finish(t); code != 200 {
			t.Errorf("%s, 4 MiB, once the uploads finished: %d, want 200", tt.name, code)
		}
	}
	// A chunked body over max_value_size releases what it reserved.
	u := startUpload(t, srv.URL+"/values/big", 4<<20+1, 0, true)
	go u.sendRest()
	if code := u.answer(t).StatusCode; code != http.StatusRequestEntityTooLarge {
		t.Errorf("a chunked body over max_value_size: %d, want 413", code)
	}
	waitFor(t, func() bool { return bud.InUse() == 0 }, func() string {
		return fmt.Sprintf("%d bytes left reserved after every write", bud.InUse())
	})
}

// TestWriteWaitsForRoom: a write that does not fit waits for the budget,
// and is served once a write under way is answered within the wait.
func TestWriteWaitsForRoom(t *testing.T) {
	b := newFake()
	bud := budget.New(2<<20, 10*time.Second)
	h := NewHandler(Options{Backend: b, Budget: bud})
	srv := httptest.NewServer(h)
	defer srv.Close()
	first := startUpload(t, srv.URL+"/values/first", 1<<20, 1, false)
	waitFor(t, func() bool { return bud.InUse() == 1<<20 }, func() string {
		return fmt.Sprintf("the first upload to reserve 1 MiB, have %d", bud.InUse())
	})
	second := startUpload(t, srv.URL+"/values/second", 1<<20, 0, false)
	go second.sendRest()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-second.done:
		t.Fatal("the second write was answered while the first held the budget")
	default:
	}
	if code := first.finish(t); code != 200 {
		t.Fatalf("first: %d", code)
	}
	if code := second.answer(t).StatusCode; code != 200 {
		t.Fatalf("second, once the first was answered: %d, want 200", code)
	}
}

// scrape returns the value of an unlabelled metric on base's /metrics.
func scrape(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return ""
}

// waitFor polls cond for up to 5 s, and fails with what() if it does not
// hold by then.
func waitFor(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for " + what())
		}
		time.Sleep(time.Millisecond)
	}
}
