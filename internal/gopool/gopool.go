// Package gopool runs functions on goroutines that are reused.
//
// A new goroutine starts with a small stack; a request that goes through
// Pebble's read path grows it several times, and each growth copies the
// stack (runtime.newstack/copystack were 13% of a node's CPU under load).
// A Pool hands each function to an idle goroutine when there is one, whose
// stack has already grown, and starts a new goroutine only when every one
// is busy: there is no bound on how many run at once, so work that waits
// on other work (a node's request waiting for its peers) cannot deadlock.
// A goroutine idle for IdleTimeout exits.
package gopool

import (
	"sync"
	"time"
)

// IdleTimeout is how long a goroutine waits for new work before it exits.
const IdleTimeout = 10 * time.Second

// Pool runs functions on reused goroutines. The zero value is ready to
// use. A Pool is safe for concurrent use.
type Pool struct {
	tasks chan func() // unbuffered: a send succeeds only to an idle goroutine
	once  sync.Once
	wg    sync.WaitGroup
	done  chan struct{}
	stop  sync.Once
}

func (p *Pool) init() {
	p.once.Do(func() {
		p.tasks = make(chan func())
		p.done = make(chan struct{})
	})
}

// Go runs f on an idle goroutine of the pool, or on a new one.
func (p *Pool) Go(f func()) {
	p.init()
	select {
	case p.tasks <- f:
	default:
		p.wg.Add(1)
		go p.work(f)
	}
}

func (p *Pool) work(f func()) {
	defer p.wg.Done()
	idle := time.NewTimer(IdleTimeout)
	defer idle.Stop()
	for {
		f()
		idle.Reset(IdleTimeout)
		select {
		case f = <-p.tasks:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}

// Close makes idle goroutines exit, and waits until every goroutine has
// finished its function and exited. Go must not be called after Close.
func (p *Pool) Close() {
	p.init()
	p.stop.Do(func() { close(p.done) })
	p.wg.Wait()
}
