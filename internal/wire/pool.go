package wire

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff after a failed dial: the first wait is minBackoff, each further
// failure doubles it up to maxBackoff, and every wait is jittered by ±20%
// within those bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Pool holds one connection per address and dials it lazily. After a failed
// dial the address is in backoff: calls to it fail fast with ErrUnreachable
// until the backoff expires, then the next call dials again. A connection
// that breaks is dropped and re-dialled by the next call. Pool is safe for
// concurrent use.
//
// One connection per address suffices because calls on it are pipelined;
// a large value does delay the calls queued behind it.
type Pool struct {
	opts    DialOptions
	optsErr error
	ctx     context.Context // cancelled by Close, to stop dials in flight
	cancel  context.CancelFunc
	wg      sync.WaitGroup // dial goroutines
	dials   atomic.Int64   // dials started, for tests

	// mu guards the fields below. Lock order: Pool.mu before Conn.mu.
	mu      sync.Mutex
	peers   map[string]*peer
	retired map[*Conn]struct{} // connections dropped but perhaps still running
	closed  bool
}

// peer is the state of one address; Pool.mu guards it.
type peer struct {
	conn     *Conn
	dialing  chan struct{} // non-nil while a dial is in flight; closed when it ends
	failures int           // consecutive failed dials
	retryAt  time.Time     // no dial before this time
	failedAt time.Time     // when the last failed dial ended
	lastErr  error         // the error of the last failed dial
}

// NewPool returns a pool that dials with opts. Invalid options make every
// Call fail with the problem.
func NewPool(opts DialOptions) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		opts:    opts,
		optsErr: opts.Validate(),
		ctx:     ctx,
		cancel:  cancel,
		peers:   make(map[string]*peer),
		retired: make(map[*Conn]struct{}),
	}
}

// Call sends req to the server at addr and waits for its response, as
// Conn.Call does, dialling first if the pool has no connection to addr.
// While addr is in backoff after a failed dial it fails at once with an error
// wrapping ErrUnreachable and the dial's error. After Close it fails with
// ErrClosed.
func (p *Pool) Call(ctx context.Context, addr string, req *Request) (*Response, error) {
	return p.call(ctx, addr, req, inBackoff)
}

// inBackoff, as the gap of Pool.call, keeps to the backoff after a failed
// dial; another gap dials in backoff once the last failed dial is that old.
const inBackoff time.Duration = -1

// CallNow is Call for a request that cannot do without this peer: it dials
// at once even while addr is in backoff after a failed dial.
func (p *Pool) CallNow(ctx context.Context, addr string, req *Request) (*Response, error) {
	return p.call(ctx, addr, req, 0)
}

// CallPatiently is CallNow for a peer that may still be starting: while
// dialling addr fails (ErrUnreachable), it tries again every retry, until
// ctx ends or patient reports false; then it returns the last error. The
// calls that wait for one address share its dials: it is dialled at most
// once per retry, however many wait.
func (p *Pool) CallPatiently(ctx context.Context, addr string, req *Request, retry time.Duration, patient func() bool) (*Response, error) {
	for {
		resp, err := p.call(ctx, addr, req, retry)
		if err == nil || !errors.Is(err, ErrUnreachable) || !patient() {
			return resp, err
		}
		t := time.NewTimer(retry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

func (p *Pool) call(ctx context.Context, addr string, req *Request, gap time.Duration) (*Response, error) {
	c, err := p.conn(ctx, addr, gap)
	if err != nil {
		return nil, err
	}
	resp, err := c.Call(ctx, req)
	if err != nil && c.Err() != nil {
		p.mu.Lock()
		p.retireLocked(addr, c)
		p.mu.Unlock()
	}
	return resp, err
}

// conn returns a usable connection to addr, dialling if there is none;
// with a gap other than inBackoff, even while addr is in backoff, if its
// last failed dial ended at least gap ago.
func (p *Pool) conn(ctx context.Context, addr string, gap time.Duration) (*Conn, error) {
	if p.optsErr != nil {
		return nil, p.optsErr
	}
	waited := false
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, fmt.Errorf("wire: pool closed: %w", ErrClosed)
		}
		pe := p.peers[addr]
		if pe == nil {
			pe = &peer{}
			p.peers[addr] = pe
		}
		if c := pe.conn; c != nil {
			if c.Err() == nil {
				p.mu.Unlock()
				return c, nil
			}
			p.retireLocked(addr, c)
		}
		wait := pe.dialing
		if wait == nil {
			t := time.Now()
			early := gap == inBackoff || waited || t.Sub(pe.failedAt) < gap
			if early && t.Before(pe.retryAt) {
				err := fmt.Errorf("%w: %s: in backoff for %v after %d failed dials: %w",
					ErrUnreachable, addr, pe.retryAt.Sub(t).Round(time.Millisecond), pe.failures, pe.lastErr)
				p.mu.Unlock()
				return nil, err
			}
			wait = make(chan struct{})
			pe.dialing = wait
			p.wg.Add(1)
			go p.dial(addr, pe, wait)
		}
		p.mu.Unlock()
		waited = true // a dial that fails puts addr in backoff: no second one
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, fmt.Errorf("wire: waiting to dial %s: %w", addr, ctx.Err())
		}
	}
}

// dial connects to addr for pe, and records the outcome. It runs on its own
// goroutine, with the pool's context, so that the caller that started it may
// give up without failing the dial for the others.
func (p *Pool) dial(addr string, pe *peer, done chan struct{}) {
	defer p.wg.Done()
	p.dials.Add(1)
	c, err := Dial(p.ctx, addr, p.opts)

	p.mu.Lock()
	pe.dialing = nil
	close(done)
	closed := p.closed
	switch {
	case err != nil:
		pe.failures++
		pe.failedAt = time.Now()
		pe.retryAt = pe.failedAt.Add(backoff(pe.failures))
		pe.lastErr = err
	case !closed:
		pe.conn = c
		pe.failures = 0
		pe.retryAt = time.Time{}
		pe.lastErr = nil
	}
	p.mu.Unlock()
	if err == nil && closed {
		c.Close()
	}
}

// Unreachable reports whether the last dial to addr failed and the pool
// has no connection to it: the peer refuses connections or cannot be
// reached.
func (p *Pool) Unreachable(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pe := p.peers[addr]
	return pe != nil && pe.conn == nil && pe.failures > 0
}

// backoff returns the wait after the given number of consecutive failures.
func backoff(failures int) time.Duration {
	d := maxBackoff
	if failures <= 6 { // 50ms << 6 > 2s
		d = min(minBackoff<<(failures-1), maxBackoff)
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(max(d, minBackoff), maxBackoff)
}

// retireLocked drops c, a connection that Err says is unusable, from addr.
// c stops on its own: a broken connection at once, one whose server is
// shutting down once the server has answered its calls and closed it. Until
// then the pool keeps it among the retired, and Close closes it.
func (p *Pool) retireLocked(addr string, c *Conn) {
	if pe := p.peers[addr]; pe != nil && pe.conn == c {
		pe.conn = nil
	}
	for r := range p.retired {
		if stopped(r) {
			delete(p.retired, r)
		}
	}
	if !stopped(c) {
		p.retired[c] = struct{}{}
	}
}

// stopped reports whether c's goroutines have returned.
func stopped(c *Conn) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Close closes every connection of the pool, failing their pending calls
// with ErrClosed, and stops dials in flight. It is idempotent and always
// returns nil.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var conns []*Conn
	for _, pe := range p.peers {
		if pe.conn != nil {
			conns = append(conns, pe.conn)
		}
	}
	for c := range p.retired {
		conns = append(conns, c)
	}
	p.peers = make(map[string]*peer)
	p.retired = make(map[*Conn]struct{})
	p.mu.Unlock()

	p.cancel()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
	return nil
}
