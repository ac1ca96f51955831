package gopool

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunsEveryFunctionAndReusesGoroutines(t *testing.T) {
	var p Pool
	var ran atomic.Int64
	for range 100 {
		done := make(chan struct{})
		p.Go(func() { ran.Add(1); close(done) })
		<-done
		time.Sleep(time.Millisecond) // the goroutine goes back to waiting
	}
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		p.Go(func() { ran.Add(1); wg.Done() })
		wg.Wait()
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines after sequential work on an idle pool, %d before: not reused", after, before)
	}
	p.Close()
	if ran.Load() != 105 {
		t.Errorf("ran %d functions, want 105", ran.Load())
	}
}

// TestDoesNotDeadlockOnDependentWork: functions that wait for other
// functions of the same pool all run at once.
func TestDoesNotDeadlockOnDependentWork(t *testing.T) {
	var p Pool
	defer p.Close()
	const n = 200
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	started.Add(n)
	finished.Add(n)
	for range n {
		p.Go(func() {
			started.Done()
			<-release
			finished.Done()
		})
	}
	started.Wait() // every function is running at once
	close(release)
	finished.Wait()
}

func TestCloseWaitsForRunningWork(t *testing.T) {
	var p Pool
	var done atomic.Bool
	p.Go(func() { time.Sleep(50 * time.Millisecond); done.Store(true) })
	p.Close()
	if !done.Load() {
		t.Fatal("Close returned before the running function finished")
	}
}

func BenchmarkPoolGo(b *testing.B) {
	var p Pool
	defer p.Close()
	var wg sync.WaitGroup
	for b.Loop() {
		wg.Add(1)
		p.Go(func() { wg.Done() })
		wg.Wait()
	}
}

func BenchmarkGoStatement(b *testing.B) {
	var wg sync.WaitGroup
	for b.Loop() {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
}
