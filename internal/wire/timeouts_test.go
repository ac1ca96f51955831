package wire

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReadTimeout: a peer that sends part of a frame, or part of its header,
// and then nothing loses its connection after ReadTimeout, counted in
// Stats.ReadTimeouts; a frame that keeps coming slowly, for longer than
// ReadTimeout in all, is served.
func TestReadTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	get := encodeRequest(1, &Request{Op: OpGet, Key: []byte("a key of some length")})
	tests := []struct {
		name   string
		pieces [][]byte // sent timeout/2 apart
		served bool
	}{
		{"body cut", [][]byte{get[:len(get)-3]}, false},
		{"header cut", [][]byte{get[:5]}, false},
		{"slow but steady", [][]byte{get[:3], get[3:9], get[9:15], get[15:20], get[20:26], get[26:]}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, ReadTimeout: timeout, IdleTimeout: time.Minute})
			nc, fr := rawConn(t, ts.addr)
			start := time.Now()
			for i, p := range tt.pieces {
				if i > 0 {
					time.Sleep(timeout / 2)
				}
				if _, err := nc.Write(p); err != nil {
					t.Fatal(err)
				}
			}
			nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			f, err := fr.next()
			if tt.served {
				if err != nil || f.id != 1 || f.op != OpRecordResponse {
					t.Fatalf("the slow frame: %v %v, want it answered", f, err)
				}
				if st := ts.srv.Stats(); st.ReadTimeouts != 0 {
					t.Errorf("stats %+v: want no read timeout", st)
				}
				return
			}
			if err != io.EOF {
				t.Fatalf("got %v %v, want the connection closed", f, err)
			}
			if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
				t.Errorf("closed after %v, want about %v", took, timeout)
			}
			waitFor(t, func() bool { return ts.srv.Stats().ReadTimeouts == 1 }, "1 read timeout, got %+v", ts.srv.Stats())
			if st := ts.srv.Stats(); st.IdleTimeouts != 0 || st.ProtocolErrors != 0 {
				t.Errorf("stats %+v: want only the read timeout", st)
			}
			if !strings.Contains(ts.logs.String(), "sent part of a frame") {
				t.Errorf("the server did not log the read timeout")
			}
		})
	}
}

// TestIdleTimeout: a connection that sends nothing, with no request under
// way, is closed after IdleTimeout and counted in Stats.IdleTimeouts; one
// that waits for a slow answer is not; a Conn, and a Pool's, that pings
// stays open.
func TestIdleTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	var slow HandlerFunc = func(ctx context.Context, req *Request) *Response {
		time.Sleep(3 * timeout)
		return &Response{Found: true, Record: Record{Timestamp: 1, Value: req.Key}}
	}
	ts := startServer(t, "", ServerOptions{Handler: slow, IdleTimeout: timeout})

	t.Run("idle", func(t *testing.T) {
		nc, fr := rawConn(t, ts.addr)
		start := time.Now()
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if f, err := fr.next(); err != io.EOF {
			t.Fatalf("got %v %v, want the connection closed", f, err)
		}
		if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
			t.Errorf("closed after %v, want about %v", took, timeout)
		}
		waitFor(t, func() bool { return ts.srv.Stats().IdleTimeouts == 1 }, "1 idle timeout, got %+v", ts.srv.Stats())
	})

	t.Run("waiting for an answer", func(t *testing.T) {
		nc, fr := rawConn(t, ts.addr)
		if _, err := nc.Write(encodeRequest(1, &Request{Op: OpGet, Key: []byte("k")})); err != nil {
			t.Fatal(err)
		}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if f, err := fr.next(); err != nil || f.id != 1 || f.op != OpRecordResponse {
			t.Fatalf("a Get answered after three idle timeouts: %v %v, want its answer", f, err)
		}
		// Then idle: closed.
		if f, err := fr.next(); err != io.EOF {
			t.Fatalf("got %v %v, want the connection closed", f, err)
		}
	})

	t.Run("pinging", func(t *testing.T) {
		before := ts.srv.Stats().IdleTimeouts
		c, err := Dial(context.Background(), ts.addr, DialOptions{PingInterval: timeout / 4})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p := NewPool(DialOptions{PingInterval: timeout / 4})
		defer p.Close()
		ctx := ctxTimeout(t, 10*time.Second)
		if _, err := p.Call(ctx, ts.addr, &Request{Op: OpPing}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * timeout)
		if _, err := c.Call(ctx, &Request{Op: OpPing}); err != nil {
			t.Errorf("a Conn idle for five idle timeouts: %v", err)
		}
		if _, err := p.Call(ctx, ts.addr, &Request{Op: OpPing}); err != nil {
			t.Errorf("a Pool idle for five idle timeouts: %v", err)
		}
		if n := p.dials.Load(); n != 1 {
			t.Errorf("the pool dialled %d times, want 1", n)
		}
		if got := ts.srv.Stats().IdleTimeouts; got != before {
			t.Errorf("%d idle timeouts, want none more", got-before)
		}
	})
	if st := ts.srv.Stats(); st.ReadTimeouts != 0 {
		t.Errorf("stats %+v: want no read timeout", st)
	}
}

// TestShutdownWakesAReaderBetweenDeadlines: Shutdown ends connections at
// once even though the reader sets its deadlines again and again.
func TestShutdownWakesAReaderBetweenDeadlines(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	var wg sync.WaitGroup
	for range 20 {
		c := dial(t, ts.addr)
		wg.Go(func() {
			for c.Err() == nil {
				_, _ = c.Call(context.Background(), &Request{Op: OpPing})
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	ts.stop(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Shutdown took %v", took)
	}
	wg.Wait()
}
