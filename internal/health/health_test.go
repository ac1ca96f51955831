package health

import (
	"testing"
	"time"
)

func TestPeerIsSkippedWhileDownAndProbed(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &Peer{Now: func() time.Time { return now }}
	if !p.Allow() {
		t.Fatal("a new peer is not allowed")
	}
	p.Failure()
	if up, _ := p.Up(); up {
		t.Fatal("up after a failure")
	}
	if p.Allow() {
		t.Fatal("allowed right after a failure")
	}
	now = now.Add(MinBackoff)
	if !p.Allow() {
		t.Fatal("no probe after the backoff")
	}
	if p.Allow() {
		t.Fatal("two probes in one backoff period")
	}
	// The probe fails: the backoff doubles.
	p.Failure()
	now = now.Add(MinBackoff)
	if p.Allow() {
		t.Fatal("probe allowed before the doubled backoff")
	}
	now = now.Add(MinBackoff)
	if !p.Allow() {
		t.Fatal("no probe after the doubled backoff")
	}
	// Backoff is capped.
	for range 20 {
		p.Failure()
	}
	now = now.Add(MaxBackoff)
	if !p.Allow() {
		t.Fatal("backoff grew past MaxBackoff")
	}
	p.Success()
	if up, _ := p.Up(); !up || !p.Allow() || !p.Allow() {
		t.Fatal("not up after a success")
	}
}

func TestSet(t *testing.T) {
	var s Set
	a := s.Peer("a")
	if s.Peer("a") != a || s.Peer("b") == a {
		t.Fatal("Set does not keep one Peer per name")
	}
	n := 0
	s.Each(func(string, *Peer) { n++ })
	if n != 2 {
		t.Fatalf("Each saw %d peers, want 2", n)
	}
}

func TestOneUrgentCallAtATime(t *testing.T) {
	var p Peer
	p.Failure()
	if !p.TryUrgent() {
		t.Fatal("the first urgent call was refused")
	}
	if p.TryUrgent() {
		t.Fatal("a second urgent call was allowed while the first is in flight")
	}
	p.EndUrgent()
	if !p.TryUrgent() {
		t.Fatal("an urgent call was refused after the first ended")
	}
	p.EndUrgent()
	if p.Failure() {
		t.Error("Failure of a peer already down reported it went down")
	}
	if !p.Success() || p.Success() {
		t.Error("Success should report the peer came up once")
	}
}
