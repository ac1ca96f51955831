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
	"net"
	"net/http"
	"sync"

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
	return l
}

// Collectors returns the limiter's metrics, to register.
func (l *Limiter) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.open, l.rejected, l.evicted}
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

// conn removes itself from its limiter when closed.
type conn struct {
	net.Conn
	l    *Limiter
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.remove(c) })
	return c.Conn.Close()
}
