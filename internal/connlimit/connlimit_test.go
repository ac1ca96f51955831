package connlimit

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// server is a limited listener with one goroutine accepting from it.
type server struct {
	ln       net.Listener
	accepted chan net.Conn
}

// dialAccept dials the server and returns the client side and the server
// side of the connection, or a nil server side when the limiter closed it.
func dialAccept(t *testing.T, srv server) (client net.Conn, s net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case s := <-srv.accepted:
		return client, s
	case <-time.After(300 * time.Millisecond):
		return client, nil // rejected: Accept goes on waiting
	}
}

func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return err == io.EOF
}

func listen(t *testing.T, l *Limiter) server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server{ln: l.Listener(ln), accepted: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := srv.ln.Accept()
			if err != nil {
				return
			}
			srv.accepted <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return srv
}

func TestANewConnectionEvictsTheOldestIdleOne(t *testing.T) {
	l := New("http", 2, true)
	ln := listen(t, l)
	c1, s1 := dialAccept(t, ln)
	_, s2 := dialAccept(t, ln)
	if s1 == nil || s2 == nil || l.Len() != 2 {
		t.Fatalf("two connections under a limit of 2: %v %v, %d open", s1, s2, l.Len())
	}
	// s2 has a request under way: only s1 is idle.
	l.ConnState(s2, http.StateActive)
	_, s3 := dialAccept(t, ln)
	if s3 == nil {
		t.Fatal("the third connection was refused although one was idle")
	}
	if !closedByServer(t, c1) {
		t.Error("the oldest idle connection was not evicted")
	}
	if l.Len() != 2 {
		t.Errorf("%d open, want 2", l.Len())
	}
	// s3 is idle too now; make it busy: every connection is, so a new
	// one is turned away.
	l.ConnState(s3, http.StateActive)
	c4, s4 := dialAccept(t, ln)
	if s4 != nil {
		t.Fatal("a connection was accepted beyond the limit with every one busy")
	}
	if !closedByServer(t, c4) {
		t.Error("the rejected connection was not closed")
	}
	// Closing a connection makes room.
	s2.Close()
	if _, s5 := dialAccept(t, ln); s5 == nil {
		t.Error("no room after a connection closed")
	}
}

func TestWithoutEvictionNewConnectionsAreRejected(t *testing.T) {
	l := New("binary", 1, false)
	ln := listen(t, l)
	c1, s1 := dialAccept(t, ln)
	if s1 == nil {
		t.Fatal("the first connection was refused")
	}
	c2, s2 := dialAccept(t, ln)
	if s2 != nil || !closedByServer(t, c2) {
		t.Fatal("a second connection was accepted with a limit of 1")
	}
	if closedByServer(t, c1) {
		t.Error("the first connection was evicted")
	}
}

// idleLen returns how many connections the limiter holds idle.
func (l *Limiter) idleLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idle.Len()
}

// TestConnStateThroughTLS: with the TLS listener wrapped around the
// limiter's, http.Server reports *tls.Conn to ConnState, and the limiter
// still tells the busy connection from the idle one, so the new
// connection evicts the idle one and the request under way finishes.
func TestConnStateThroughTLS(t *testing.T) {
	l := New("http", 2, true)
	started, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	srv.Listener = l.Listener(srv.Listener)
	srv.Config.ConnState = l.ConnState
	srv.StartTLS()
	defer srv.Close()
	client := func() *http.Client {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, path string) error {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}

	slowDone := make(chan error, 1)
	go func() { slowDone <- get(client(), "/slow") }()
	<-started
	if err := get(client(), "/fast"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 2 || l.idleLen() != 1 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("%d open, %d idle; want 2 open, 1 idle (the busy TLS connection is not marked busy)", l.Len(), l.idleLen())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := get(client(), "/fast"); err != nil {
		t.Errorf("a third connection at the limit of 2: %v", err)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Errorf("the busy connection was cut: %v", err)
	}
}
