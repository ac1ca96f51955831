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
	"context"
	"sync"
	"time"
)

// JoinPatience is how long a peer that a new configuration names stays
// joining (Peer.Join) if it does not answer: the requests that cannot do
// without it wait for it, each up to its timeout, while it starts. After
// that a peer that never answered is down like any other, and those
// requests fail fast again.
const JoinPatience = 30 * time.Second

// JoinRetry is how often a request that cannot do without a joining peer
// dials it again while it refuses connections.
const JoinRetry = 20 * time.Millisecond

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

	mu     sync.Mutex // guards the fields below
	down   bool
	urgent bool // an urgent call is in flight
	// urgentDone is closed when the urgent call in flight ends.
	urgentDone chan struct{}
	since      time.Time // when the peer went down
	nextProbe  time.Time
	backoff    time.Duration
	// joinUntil is set by Join: until then, or until the peer answers
	// once, it is joining.
	joinUntil time.Time
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
// so that a peer that is really gone is called by one request at a time,
// not all of them. Release the reservation with EndUrgent.
func (p *Peer) TryUrgent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.urgent {
		return false
	}
	p.urgent = true
	p.urgentDone = make(chan struct{})
	return true
}

// EndUrgent releases the reservation of TryUrgent.
func (p *Peer) EndUrgent() {
	p.mu.Lock()
	p.urgent = false
	close(p.urgentDone)
	p.mu.Unlock()
}

// UrgentTurn is what Urgent lets a caller do.
type UrgentTurn int

const (
	// UrgentRefused: the urgent call in flight ended with the peer still
	// down, or ctx ended first: do not call.
	UrgentRefused UrgentTurn = iota
	// UrgentMine: the caller holds the urgent call (call past the
	// backoff, then EndUrgent).
	UrgentMine
	// UrgentUp: the urgent call in flight ended with the peer up: call
	// it as usual.
	UrgentUp
)

// UrgentPatience bounds how long Urgent waits for the urgent call in
// flight: long enough for a peer just back from a restart to answer its
// first call (a dial, a handshake), short enough that requests that
// cannot do without a peer that is really gone fail soon, all but one.
const UrgentPatience = 100 * time.Millisecond

// Urgent is TryUrgent for a caller that would rather wait a little than
// fail: while another urgent call is in flight it waits for that call to
// end, at most UrgentPatience (and a quarter of what is left of ctx's
// time), and then lets the caller call the peer only if that call found
// it up. Many requests that cannot do without a peer just back from a
// restart then succeed together, while one of them finds out; with a peer
// that does not answer, one request waits for its timeout and the others
// fail after the patience.
func (p *Peer) Urgent(ctx context.Context) UrgentTurn {
	p.mu.Lock()
	if !p.urgent {
		p.urgent = true
		p.urgentDone = make(chan struct{})
		p.mu.Unlock()
		return UrgentMine
	}
	done := p.urgentDone
	p.mu.Unlock()
	patience := UrgentPatience
	if deadline, ok := ctx.Deadline(); ok {
		patience = min(patience, time.Until(deadline)/4)
	}
	t := time.NewTimer(patience)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return UrgentRefused
	case <-ctx.Done():
		return UrgentRefused
	}
	if up, _ := p.Up(); up {
		return UrgentUp
	}
	return UrgentRefused
}

// Join marks the peer as joining until the given time: a configuration
// just named it, and it may not be serving yet (a new node starts when it
// learns the configuration that names it, as the others do). A request
// that cannot make its quorum without a joining peer waits for it to start
// rather than failing at once (see Joining). The first answer ends it.
func (p *Peer) Join(until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.joinUntil = until
}

// Joining reports whether the peer is joining: Join named a time still to
// come and the peer has not answered since.
func (p *Peer) Joining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.joinUntil.IsZero() && p.now().Before(p.joinUntil)
}

// Success records a call that the peer answered: it is up. It reports
// whether the peer was down until now, so that the caller can say so once.
func (p *Peer) Success() (cameUp bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cameUp = p.down
	p.down = false
	p.backoff = 0
	p.joinUntil = time.Time{}
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

// Join marks the named peers as joining until the given time (Peer.Join).
func (s *Set) Join(names []string, until time.Time) {
	for _, name := range names {
		s.Peer(name).Join(until)
	}
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
