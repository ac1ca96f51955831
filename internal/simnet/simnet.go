// Package simnet is an in-memory network for running a whole Tako cluster
// inside one process (issue 18's simulator, docs/simulator-design.md):
// listeners and connections by address, carried by net.Pipe, between
// hosts whose links can be cut and healed. The wire protocol, TLS and HTTP
// run over it unchanged, so what a test or a simulation exercises is the
// code that runs over TCP.
//
// It simulates what TCP shows an application: a connection delivers its
// bytes in order or breaks. Cutting the link between two hosts breaks
// every connection between them (in either direction: a TCP connection
// needs both) and refuses new ones until the link is healed. Cutting it
// one way (an asymmetric partition) holds the bytes one host sends the
// other, so its requests go unanswered while it still hears the other. A
// slow link delays every write between two hosts.
package simnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// ErrUnreachable is what a dial across a cut link, or to an address
// nobody listens on, fails with.
var ErrUnreachable = errors.New("simnet: unreachable")

// Network is a set of hosts that listen and dial by address. Its methods
// are safe for concurrent use.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*listener        // by address
	cut       map[[2]string]bool          // host pairs, ordered, whose link is cut
	oneWay    map[[2]string]bool          // (from, to): bytes from one to the other stall
	delay     map[[2]string]time.Duration // host pairs, ordered: what every write waits first
	links     map[*link]struct{}          // open connections
	nextLink  uint64                      // the id of the next connection
	trace     Tracer                      // nil: none
}

// Tracer is told every write on every connection of a network: the
// connection's id, the hosts it goes from and to, and the bytes written
// (valid during the call only). It is called from the writing goroutine,
// concurrently for different connections, and must not block.
type Tracer func(conn uint64, from, to string, p []byte)

// SetTrace makes t the network's tracer, for the connections dialled from
// now on; nil stops tracing them.
func (n *Network) SetTrace(t Tracer) {
	n.mu.Lock()
	n.trace = t
	n.mu.Unlock()
}

// New returns a network with no host and no cut link.
func New() *Network {
	return &Network{listeners: map[string]*listener{}, cut: map[[2]string]bool{}, oneWay: map[[2]string]bool{},
		delay: map[[2]string]time.Duration{}, links: map[*link]struct{}{}}
}

// Host returns the endpoint of the process called name: what it listens
// and dials on. Hosts need no declaration; the same name is the same host.
func (n *Network) Host(name string) *Host { return &Host{net: n, name: name} }

// Cut breaks the link between hosts a and b: their connections break, and
// new ones are refused, until Heal.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	n.cut[pair(a, b)] = true
	var broken []*link
	for k := range n.links {
		if pair(k.client, k.server) == pair(a, b) {
			broken = append(broken, k)
			delete(n.links, k)
		}
	}
	n.mu.Unlock()
	for _, k := range broken {
		k.close()
	}
}

// CutOneWay makes the bytes that host from sends to host to stop arriving,
// while those from to to from still flow, until Heal: as a TCP connection
// shows an asymmetric partition, a write from from to to on an open
// connection blocks (until healed, the connection closes, or its write
// deadline passes), so the requests of one side go unanswered. New
// connections between the two are refused: a TCP handshake needs both
// ways.
func (n *Network) CutOneWay(from, to string) {
	n.mu.Lock()
	n.oneWay[[2]string{from, to}] = true
	n.mu.Unlock()
}

// Heal restores the link between hosts a and b, both ways.
func (n *Network) Heal(a, b string) {
	n.mu.Lock()
	delete(n.cut, pair(a, b))
	delete(n.oneWay, [2]string{a, b})
	delete(n.oneWay, [2]string{b, a})
	n.mu.Unlock()
}

// SetDelay makes every write between hosts a and b, either way, wait d
// before it is delivered: a slow link. 0 makes it fast again.
func (n *Network) SetDelay(a, b string, d time.Duration) {
	n.mu.Lock()
	if d > 0 {
		n.delay[pair(a, b)] = d
	} else {
		delete(n.delay, pair(a, b))
	}
	n.mu.Unlock()
}

// refused reports whether a connection between hosts a and b is refused:
// the link is cut, either way.
func (n *Network) refused(a, b string) bool {
	return n.cut[pair(a, b)] || n.oneWay[[2]string{a, b}] || n.oneWay[[2]string{b, a}]
}

// pair orders two host names, so that a link has one key.
func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Host is one process's endpoint on a Network.
type Host struct {
	net  *Network
	name string
}

// Name is the host's name.
func (h *Host) Name() string { return h.name }

// Listen listens on addr (any string; HOST:PORT by convention) for this
// host. An address has one listener at a time.
func (h *Host) Listen(addr string) (net.Listener, error) {
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.listeners[addr]; ok {
		return nil, fmt.Errorf("simnet: listen %s: address already in use", addr)
	}
	l := &listener{net: n, host: h.name, addr: simAddr(addr), accept: make(chan net.Conn), closed: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dial connects this host to the listener at addr. It fails with
// ErrUnreachable when nobody listens there or the link between the two
// hosts is cut, and with ctx's error when the listener does not accept in
// time.
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	n := h.net
	n.mu.Lock()
	l, ok := n.listeners[addr]
	switch {
	case !ok:
		n.mu.Unlock()
		return nil, fmt.Errorf("simnet: dial %s from %s: nobody listens there: %w", addr, h.name, ErrUnreachable)
	case n.refused(h.name, l.host):
		n.mu.Unlock()
		return nil, fmt.Errorf("simnet: dial %s from %s: the link to %s is cut: %w", addr, h.name, l.host, ErrUnreachable)
	}
	// Registered before the lock is let go: a Cut from now on breaks it.
	client, server := net.Pipe()
	n.nextLink++
	k := &link{net: n, id: n.nextLink, client: h.name, server: l.host, ends: [2]net.Conn{client, server}, trace: n.trace,
		closed: make(chan struct{})}
	c := &pipeEnd{Conn: client, link: k, from: h.name, to: l.host, laddr: simAddr(h.name), raddr: l.addr}
	s := &pipeEnd{Conn: server, link: k, from: l.host, to: h.name, laddr: l.addr, raddr: simAddr(h.name)}
	n.links[k] = struct{}{}
	n.mu.Unlock()
	select {
	case l.accept <- s:
	case <-l.closed:
		k.drop()
		return nil, fmt.Errorf("simnet: dial %s from %s: the listener closed: %w", addr, h.name, ErrUnreachable)
	case <-ctx.Done():
		k.drop()
		return nil, fmt.Errorf("simnet: dial %s from %s: %w", addr, h.name, ctx.Err())
	}
	return c, nil
}

// link is one connection between two hosts.
type link struct {
	net            *Network
	id             uint64
	client, server string // the hosts that dialled and accepted
	ends           [2]net.Conn
	trace          Tracer // nil: none
	closeOnce      sync.Once
	closed         chan struct{} // closed with the connection
}

// close closes both ends.
func (k *link) close() {
	k.closeOnce.Do(func() { close(k.closed) })
	k.ends[0].Close()
	k.ends[1].Close()
}

// drop forgets the link and closes both ends.
func (k *link) drop() {
	k.net.mu.Lock()
	delete(k.net.links, k)
	k.net.mu.Unlock()
	k.close()
}

// pipeEnd is one end of a connection.
type pipeEnd struct {
	net.Conn
	link         *link
	from, to     string // this end's host, and the other end's
	laddr, raddr net.Addr

	mu            sync.Mutex
	writeDeadline time.Time
}

// SetDeadline sets both deadlines; the write deadline also bounds a write
// that a one-way cut holds.
func (p *pipeEnd) SetDeadline(t time.Time) error {
	p.mu.Lock()
	p.writeDeadline = t
	p.mu.Unlock()
	return p.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline, which also bounds a write that
// a one-way cut holds.
func (p *pipeEnd) SetWriteDeadline(t time.Time) error {
	p.mu.Lock()
	p.writeDeadline = t
	p.mu.Unlock()
	return p.Conn.SetWriteDeadline(t)
}

// Write writes to the other end once the link lets it (a slow link waits
// first; a one-way cut holds it), and tells the network's tracer what it
// wrote.
func (p *pipeEnd) Write(b []byte) (int, error) {
	if err := p.wait(); err != nil {
		return 0, err
	}
	n, err := p.Conn.Write(b)
	if t := p.link.trace; t != nil && n > 0 {
		t(p.link.id, p.from, p.to, b[:n])
	}
	return n, err
}

// wait waits for the link's delay, and while the bytes from this end to
// the other are cut off, until they flow again, the connection closes, or
// the write deadline passes.
func (p *pipeEnd) wait() error {
	n := p.link.net
	n.mu.Lock()
	d := n.delay[pair(p.from, p.to)]
	n.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-p.link.closed:
			return net.ErrClosed
		}
	}
	for {
		n.mu.Lock()
		held := n.oneWay[[2]string{p.from, p.to}]
		n.mu.Unlock()
		if !held {
			return nil
		}
		p.mu.Lock()
		deadline := p.writeDeadline
		p.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return os.ErrDeadlineExceeded
		}
		select {
		case <-time.After(time.Millisecond):
		case <-p.link.closed:
			return net.ErrClosed
		}
	}
}

// Close closes the connection, both ends.
func (p *pipeEnd) Close() error {
	p.link.drop()
	return nil
}

func (p *pipeEnd) LocalAddr() net.Addr  { return p.laddr }
func (p *pipeEnd) RemoteAddr() net.Addr { return p.raddr }

// listener accepts the connections dialled to its address.
type listener struct {
	net       *Network
	host      string
	addr      simAddr
	accept    chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("simnet: accept on %s: %w", l.addr, net.ErrClosed)
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.net.mu.Lock()
		if l.net.listeners[string(l.addr)] == l {
			delete(l.net.listeners, string(l.addr))
		}
		l.net.mu.Unlock()
	})
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }

// simAddr is an address on a Network.
type simAddr string

func (a simAddr) Network() string { return "simnet" }
func (a simAddr) String() string  { return string(a) }
