package health

import (
	"context"
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

func TestUrgentCallersWaitForTheOneInFlight(t *testing.T) {
	for _, tt := range []struct {
		name   string
		upshot func(p *Peer)
		want   UrgentTurn
	}{
		{"it finds the peer up", func(p *Peer) { p.Success() }, UrgentUp},
		{"it finds the peer still down", func(p *Peer) { p.Failure() }, UrgentRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p Peer
			p.Failure()
			if got := p.Urgent(context.Background()); got != UrgentMine {
				t.Fatalf("first Urgent = %v, want UrgentMine", got)
			}
			turns := make(chan UrgentTurn, 3)
			for range 3 {
				go func() { turns <- p.Urgent(context.Background()) }()
			}
			select {
			case got := <-turns:
				t.Fatalf("a caller did not wait for the urgent call in flight: %v", got)
			case <-time.After(50 * time.Millisecond):
			}
			tt.upshot(&p)
			p.EndUrgent()
			for range 3 {
				if got := <-turns; got != tt.want {
					t.Errorf("waiting caller's turn = %v, want %v", got, tt.want)
				}
			}
		})
	}
	// A waiting caller gives up after the patience, or when its context
	// ends.
	var p Peer
	p.TryUrgent()
	start := time.Now()
	if got := p.Urgent(context.Background()); got != UrgentRefused {
		t.Errorf("Urgent past the patience = %v, want UrgentRefused", got)
	}
	if d := time.Since(start); d < UrgentPatience || d > 10*UrgentPatience {
		t.Errorf("Urgent gave up after %v, want about %v", d, UrgentPatience)
	}
	p.EndUrgent()
	p.TryUrgent()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := p.Urgent(ctx); got != UrgentRefused {
		t.Errorf("Urgent with an ended context = %v, want UrgentRefused", got)
	}
	p.EndUrgent()
	if got := p.Urgent(context.Background()); got != UrgentMine {
		t.Errorf("Urgent after EndUrgent = %v, want UrgentMine", got)
	}
}

func TestJoiningEndsAtTheFirstAnswerOrTheDeadline(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &Peer{Now: func() time.Time { return now }}
	if p.Joining() {
		t.Fatal("a new peer is joining before Join")
	}
	p.Join(now.Add(time.Second))
	if !p.Joining() {
		t.Fatal("not joining after Join")
	}
	p.Failure() // refusing while it starts does not end it
	if !p.Joining() {
		t.Fatal("a failure ended joining")
	}
	p.Success()
	if p.Joining() {
		t.Fatal("still joining after it answered")
	}
	p.Join(now.Add(time.Second))
	now = now.Add(time.Second)
	if p.Joining() {
		t.Fatal("still joining at its deadline")
	}
	var s Set
	s.Join([]string{"a", "b"}, time.Now().Add(time.Minute))
	if !s.Peer("a").Joining() || !s.Peer("b").Joining() || s.Peer("c").Joining() {
		t.Fatal("Set.Join did not mark exactly the named peers")
	}
}
