package connlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTimeoutsCountedByPhase: behind an http.Server with header, body and
// idle timeouts, a connection that never finishes its headers (new, or
// after a first request), one that never finishes its body, and one left
// idle are each counted once in their phase; a hundred ordinary requests,
// whose reads net/http interrupts itself, count nothing.
func TestTimeoutsCountedByPhase(t *testing.T) {
	l := New("http", 100, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			fmt.Fprint(w, "ok")
		}),
		ReadHeaderTimeout: 300 * time.Millisecond,
		ReadTimeout:       600 * time.Millisecond,
		IdleTimeout:       400 * time.Millisecond,
		ConnState:         l.ConnState,
	}
	go srv.Serve(l.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	count := func(phase string) float64 { return testutil.ToFloat64(l.timeouts.WithLabelValues(phase)) }

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 100 * time.Millisecond}}
	for i := range 100 {
		resp, err := client.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", i)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client.CloseIdleConnections()
	for _, phase := range []string{phaseHeader, phaseBody, phaseIdle} {
		if n := count(phase); n != 0 {
			t.Errorf("after ordinary requests, %s timeouts = %v, want 0", phase, n)
		}
	}

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	waitClosed := func(what string, c net.Conn, br *bufio.Reader) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Errorf("%s: the server did not close the connection: %v", what, err)
		}
	}
	request := func(c net.Conn, br *bufio.Reader) {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	c, br := dial() // sends nothing
	waitClosed("silent", c, br)
	c, br = dial() // slowloris: headers never end
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	waitClosed("slowloris", c, br)
	if n := count(phaseHeader); n != 2 {
		t.Errorf("header timeouts = %v, want 2 (a silent connection, a slowloris)", n)
	}

	c, br = dial() // a body that never ends
	fmt.Fprint(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	waitClosed("slow body", c, br)
	if n := count(phaseBody); n != 1 {
		t.Errorf("body timeouts = %v, want 1", n)
	}

	c, br = dial() // one request, then idle
	request(c, br)
	waitClosed("idle", c, br)
	if n := count(phaseIdle); n != 1 {
		t.Errorf("idle timeouts = %v, want 1", n)
	}

	c, br = dial() // one request, then a slowloris
	request(c, br)
	fmt.Fprint(c, "GET / HTTP/1.1\r\n")
	waitClosed("slowloris after a request", c, br)
	if n := count(phaseHeader); n != 3 {
		t.Errorf("header timeouts = %v, want 3", n)
	}
}
