// Package health tracks whether a peer answers, so that a replica that is
// down costs one request timeout and is then skipped quickly until it
// answers again.
//
// A Peer is up until a call to it fails for a reason that says the peer
// itself is in trouble (a timeout, a broken or refused connection). It is
// then down: Allow refuses calls, except one probe per backoff period, which
// starts at MinBackoff and doubles up to MaxBackoff while probes keep
// failing. The first success makes the peer up again. There is no fixed
// sleep: a peer that comes back is used again as soon as one probe answers.
package health

import (
	"sync"
	"time"
)

// Backoff bounds between probes of a peer that is down.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 2 * time.Second
)

// Peer is the health of one peer. The zero value is an up peer; a Peer is
// safe for concurrent use.
type Peer struct {
	// Now is the clock; nil means time.Now. Set it before first use.
	Now func() time.Time

	mu        sync.Mutex // guards the fields below
	down      bool
	urgent    bool      // an urgent call is in flight
	since     time.Time // when the peer went down
	nextProbe time.Time
	backoff   time.Duration
}

func (p *Peer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Allow reports whether a call to the peer should be made now: always while
// it is up; while it is down, once per backoff period (the probe).
func (p *Peer) Allow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.down {
		return true
	}
	now := p.now()
	if now.Before(p.nextProbe) {
		return false
	}
	p.nextProbe = now.Add(p.backoff)
	return true
}

// TryUrgent reserves the peer's one urgent call: a call made although the
// peer is down (or not known to be reachable), because a request cannot
// do without it. It reports false while another urgent call is in flight,
// so that a peer that is really gone holds up one request at a time, not
// all of them. Release the reservation with EndUrgent.
func (p *Peer) TryUrgent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.urgent {
		return false
	}
	p.urgent = true
	return true
}

// EndUrgent releases the reservation of TryUrgent.
func (p *Peer) EndUrgent() {
	p.mu.Lock()
	p.urgent = false
	p.mu.Unlock()
}

// Success records a call that the peer answered: it is up. It reports
// whether the peer was down until now, so that the caller can say so once.
func (p *Peer) Success() (cameUp bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cameUp = p.down
	p.down = false
	p.backoff = 0
	return cameUp
}

// Failure records a call that failed because of the peer: it is down until
// a probe succeeds. It reports whether the peer was up until now.
func (p *Peer) Failure() (wentDown bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.down {
		p.down = true
		p.since = now
		p.backoff = MinBackoff
		wentDown = true
	} else if p.backoff < MaxBackoff {
		p.backoff = min(2*p.backoff, MaxBackoff)
	}
	p.nextProbe = now.Add(p.backoff)
	return wentDown
}

// Up reports whether the peer is up, and since when it is down if not.
func (p *Peer) Up() (bool, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.down, p.since
}

// Set holds the health of many peers by name. The zero value is ready; a
// Set is safe for concurrent use.
type Set struct {
	mu    sync.Mutex // guards peers
	peers map[string]*Peer
}

// Peer returns the health of the named peer, creating it up.
func (s *Set) Peer(name string) *Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers == nil {
		s.peers = make(map[string]*Peer)
	}
	p, ok := s.peers[name]
	if !ok {
		p = &Peer{}
		s.peers[name] = p
	}
	return p
}

// Each calls f for every peer, in no particular order.
func (s *Set) Each(f func(name string, p *Peer)) {
	s.mu.Lock()
	peers := make(map[string]*Peer, len(s.peers))
	for k, v := range s.peers {
		peers[k] = v
	}
	s.mu.Unlock()
	for k, v := range peers {
		f(k, v)
	}
}
