// Command guest is what sim/feasibility/run.sh runs inside the
// deterministic host: goroutines that race on channels, timers, selects,
// map iteration and math/rand, then Pebble on a crashable in-memory file
// system written by concurrent goroutines with synced and unsynced writes,
// crashed, and opened again. It prints a hash of everything it observed:
// the same seed must give the same hash, another seed another one.
package main

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func main() {
	h := fnv.New64a()
	var mu sync.Mutex
	observe := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(h, format+"\n", args...)
		mu.Unlock()
	}
	start := time.Now()
	schedules(observe)
	if err := storage(observe); err != nil {
		fmt.Fprintln(os.Stderr, "guest:", err)
		os.Exit(1)
	}
	fmt.Printf("trace %016x, virtual time %v\n", h.Sum64(), time.Since(start))
}

// schedules lets 8 goroutines race to send on one channel, each giving up
// after a random timeout, and observes who won when.
func schedules(observe func(string, ...any)) {
	start := time.Now()
	ch := make(chan int)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
				select {
				case ch <- i*100 + j:
				case <-time.After(time.Duration(rand.IntN(500)) * time.Microsecond):
					observe("timeout %d %d", i, j)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		for v := range ch {
			observe("got %d at %v", v, time.Since(start))
		}
		close(done)
	}()
	wg.Wait()
	close(ch)
	<-done
	m := map[int]int{}
	for i := range 64 {
		m[i] = i
	}
	for k := range m {
		observe("first key of the map %d", k)
		break
	}
}

// storage writes Pebble from 4 goroutines, adds an unsynced write,
// crashes the file system (only what was synced survives), and observes
// every record after opening it again.
func storage(observe func(string, ...any)) error {
	fs := vfs.NewCrashableMem()
	quiet := &pebble.Options{FS: fs, Logger: discard{}}
	db, err := pebble.Open("db", quiet)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				k := fmt.Sprintf("k%d", rand.IntN(400))
				if err := db.Set([]byte(k), []byte(fmt.Sprint(w, i)), pebble.Sync); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := db.Set([]byte("unsynced"), []byte("x"), pebble.NoSync); err != nil {
		return err
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	db.Close()
	db, err = pebble.Open("db", &pebble.Options{FS: crashed, Logger: discard{}})
	if err != nil {
		return err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		observe("%s=%s", it.Key(), it.Value())
		n++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if _, _, err := db.Get([]byte("unsynced")); err != pebble.ErrNotFound {
		return fmt.Errorf("the unsynced write survived the crash (%v)", err)
	}
	observe("%d records after the crash", n)
	return nil
}

// discard is a Pebble logger that logs nothing.
type discard struct{}

func (discard) Infof(string, ...any)  {}
func (discard) Errorf(string, ...any) {}
func (discard) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
