package httpserve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/connlimit"
)

// start serves h on a loopback port with the given limits and returns the
// server and its address; the server is shut down when the test ends.
func start(t *testing.T, h http.Handler, limits config.Limits, conns *connlimit.Limiter) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ln, Options{Handler: h, Limits: limits, Conns: conns})
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve after Shutdown: %v, want http.ErrServerClosed", err)
		}
	})
	return s, s.Addr().String()
}

// TestServesWithTheLimitsTimeouts: a request is served; a client that
// sends half its headers is cut off after HeaderTimeout, and the
// limiter counts it.
func TestServesWithTheLimitsTimeouts(t *testing.T) {
	conns := connlimit.New("http", 0, true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	_, addr := start(t, h, config.Limits{HeaderTimeout: 100 * time.Millisecond, BodyTimeout: time.Second, IdleTimeout: time.Second}, conns)

	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body %q, want hello", body)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	line, err := bufio.NewReader(c).ReadString('\n')
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a client that sent half its headers was served for %v (header timeout 100ms)", d)
	}
	// net/http answers 408 or just closes, depending on the version.
	if err == nil && !strings.Contains(line, "408") {
		t.Errorf("half-sent headers: %q, want 408 or a closed connection", line)
	}
}

// TestShutdownCutsOffWhatOutlivesItsContext: a request still in flight
// when the shutdown's context ends has its connection closed, and Shutdown
// says so.
func TestShutdownCutsOffWhatOutlivesItsContext(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	s, addr := start(t, h, config.Limits{HeaderTimeout: time.Second, BodyTimeout: time.Second, IdleTimeout: time.Second}, connlimit.New("http", 0, true))
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a request in flight: %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Error("the request in flight was answered, want its connection closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request in flight still hangs 5 s after Shutdown gave up on it")
	}
}
