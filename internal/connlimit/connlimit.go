// Package connlimit bounds how many connections a listener keeps open, so
// that a client that opens thousands of connections cannot exhaust a
// process's memory or file descriptors, nor lock the other clients out.
//
// At the limit, a new connection evicts the oldest connection that is idle
// (an HTTP connection with no request under way, as http.Server's
// ConnState reports it); when none is idle it is closed at once. Idle
// connections are cheap for a client to hold and worthless to serve, so a
// flood of them gives way to clients that send requests; a busy connection
// is never cut.
package connlimit

import (
	"container/list"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limiter tracks the connections of one listener. Create it with New.
type Limiter struct {
	max   int
	name  string
	evict bool // evict idle connections at the limit, or reject new ones

	mu    sync.Mutex
	conns map[net.Conn]*list.Element // every open connection
	idle  *list.List                 // of net.Conn, oldest first: evictable

	open     prometheus.GaugeFunc
	rejected prometheus.Counter
	evicted  prometheus.Counter
	timeouts *prometheus.CounterVec // by phase; HTTP listeners only
}

// New returns a limiter of max connections (max <= 0: no limit) for the
// listener called name in the metrics ("http", "binary"). With evictIdle,
// a new connection at the limit evicts the oldest idle one (for HTTP, with
// ConnState installed on the server); without, it is closed at once.
func New(name string, max int, evictIdle bool) *Limiter {
	l := &Limiter{max: max, name: name, evict: evictIdle, conns: map[net.Conn]*list.Element{}, idle: list.New()}
	labels := prometheus.Labels{"listener": name}
	l.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tako_connections_open", Help: "Connections open on a listener.", ConstLabels: labels,
	}, func() float64 { return float64(l.Len()) })
	l.rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_connections_rejected_total", ConstLabels: labels,
		Help: "Connections closed on arrival because the listener had max_connections open and none idle.",
	})
	l.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_connections_evicted_total", ConstLabels: labels,
		Help: "Idle connections closed to make room for a new one at max_connections.",
	})
	if evictIdle {
		l.timeouts = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_http_timeouts_total", ConstLabels: labels,
			Help: "HTTP connections closed by a read timeout, by phase: header (header_timeout: the request's headers were not all sent in time, slowloris), body (body_timeout: the request was not all sent in time), idle (idle_timeout: no new request on a keep-alive connection).",
		}, []string{"phase"})
		for _, phase := range []string{phaseHeader, phaseBody, phaseIdle} {
			l.timeouts.WithLabelValues(phase)
		}
	}
	return l
}

// The phases of tako_http_timeouts_total.
const (
	phaseHeader = "header"
	phaseBody   = "body"
	phaseIdle   = "idle"
)

// Collectors returns the limiter's metrics, to register.
func (l *Limiter) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{l.open, l.rejected, l.evicted}
	if l.timeouts != nil {
		cs = append(cs, l.timeouts)
	}
	return cs
}

// Len returns how many connections are open.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Listener wraps ln: every connection it accepts counts against the limit
// until it is closed.
func (l *Limiter) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, l: l} }

type listener struct {
	net.Listener
	l *Limiter
}

func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &conn{Conn: c, l: ln.l}
		if ln.l.admit(tc) {
			return tc, nil
		}
		c.Close()
	}
}

// admit records c, evicting the oldest idle connection at the limit; it
// reports false when c must be closed instead. A new connection counts as
// idle until a request starts on it.
func (l *Limiter) admit(c *conn) bool {
	l.mu.Lock()
	var victim net.Conn
	if l.max > 0 && len(l.conns) >= l.max {
		front := l.idle.Front()
		if front == nil || !l.evict {
			l.mu.Unlock()
			l.rejected.Inc()
			return false
		}
		victim = front.Value.(net.Conn)
		l.idle.Remove(front)
		l.conns[victim] = nil
	}
	l.conns[c] = l.idle.PushBack(net.Conn(c))
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Inc()
		victim.Close()
	}
	return true
}

// ConnState is an http.Server ConnState hook: it marks connections busy
// while a request is under way and idle between requests. It also works
// for an HTTPS server whose TLS listener wraps the limiter's: a *tls.Conn
// is looked up by the connection beneath it.
func (l *Limiter) ConnState(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*conn); ok {
		lc.setState(s)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.conns[c]
	if !ok {
		return // closed, or not one of ours
	}
	switch s {
	case http.StateActive:
		if e != nil {
			l.idle.Remove(e)
			l.conns[c] = nil
		}
	case http.StateIdle:
		if e == nil {
			l.conns[c] = l.idle.PushBack(c)
		}
	}
}

func (l *Limiter) remove(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.conns[c]; ok {
		if e != nil {
			l.idle.Remove(e)
		}
		delete(l.conns, c)
	}
}

// conn removes itself from its limiter when closed, and on an HTTP
// listener counts the read timeouts that end it.
type conn struct {
	net.Conn
	l    *Limiter
	once sync.Once
	// state is the connection's http.ConnState (StateNew until the server
	// says otherwise); read counts the bytes read since it last changed,
	// to tell an idle connection from one that began a request.
	state   atomic.Int32
	read    atomic.Int64
	counted atomic.Bool // a timeout was counted: count one per connection
	// aborted: the last read deadline set was already past, which is how
	// net/http interrupts a read of its own (not a timeout).
	aborted atomic.Bool
}

// SetReadDeadline notes whether d interrupts reads at once, then sets it.
func (c *conn) SetReadDeadline(d time.Time) error {
	c.aborted.Store(!d.IsZero() && d.Before(time.Now()))
	return c.Conn.SetReadDeadline(d)
}

// SetDeadline notes whether d interrupts reads at once, then sets it.
func (c *conn) SetDeadline(d time.Time) error {
	c.aborted.Store(!d.IsZero() && d.Before(time.Now()))
	return c.Conn.SetDeadline(d)
}

func (c *conn) setState(s http.ConnState) {
	c.state.Store(int32(s))
	c.read.Store(0)
}

// Read counts a read that ended at the server's deadline, by what the
// connection was doing: a new connection, or an idle one that had sent
// part of its next request, was reading headers (header_timeout); an idle
// one that had sent nothing was waiting (idle_timeout); an active one was
// reading its request (body_timeout).
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Add(int64(n))
	}
	if err != nil && c.l.timeouts != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.aborted.Load() && c.counted.CompareAndSwap(false, true) {
		phase := phaseBody
		switch http.ConnState(c.state.Load()) {
		case http.StateNew:
			phase = phaseHeader
		case http.StateIdle:
			phase = phaseIdle
			if c.read.Load() > 0 {
				phase = phaseHeader
			}
		}
		c.l.timeouts.WithLabelValues(phase).Inc()
	}
	return n, err
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.remove(c) })
	return c.Conn.Close()
}
