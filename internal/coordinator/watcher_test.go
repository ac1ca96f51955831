package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

func TestWatcherAdoptsCachesAndStartsFromCache(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", port}}, "n1"), nil)
	stopServer := run(t, s, ln)
	scfg, sepoch := s.Current()
	cacheDir := filepath.Join(dir, "etc")

	if _, _, err := LoadCache(cacheDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadCache of an empty directory: %v, want os.ErrNotExist", err)
	}
	w, stopWatcher := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: cacheDir})
	if cfg, e := w.Current(); cfg != nil || e != 0 {
		t.Fatalf("Current before any configuration = %v, %d", cfg, e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, epoch, err := w.WaitFor(ctx, func(*config.Config) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if epoch != sepoch || canonicalOf(t, cfg) != canonicalOf(t, scfg) {
		t.Fatalf("adopted epoch %d, want %d", epoch, sepoch)
	}
	stopWatcher()
	ccfg, cepoch, err := LoadCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if cepoch != sepoch || canonicalOf(t, ccfg) != canonicalOf(t, scfg) {
		t.Fatalf("cached epoch %d, want %d", cepoch, sepoch)
	}

	// With no coordinator answering, a new watcher starts from the cache.
	stopServer()
	w2, _ := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: cacheDir})
	cfg, epoch, err = w2.WaitFor(ctx, func(*config.Config) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if epoch != sepoch || canonicalOf(t, cfg) != canonicalOf(t, scfg) {
		t.Fatalf("started from epoch %d, want the cached %d", epoch, sepoch)
	}
}

func TestWatcherAdoptsHighestEpoch(t *testing.T) {
	base := time.Now()
	tests := []struct {
		name  string
		order []int // the order of the -c flags: indexes of the servers
	}{
		{name: "lower first", order: []int{0, 1}},
		{name: "higher first", order: []int{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var servers []*Server
			for i, id := range []string{"a", "b"} {
				ln, port := listen(t)
				at := base.Add(time.Duration(i) * time.Hour)
				s := newTestServer(t, dir, id, configText("", []coord{{id, port}}, "n1", "n"+id),
					func() time.Time { return at })
				run(t, s, ln)
				servers = append(servers, s)
			}
			var addrs []string
			for _, i := range tt.order {
				addrs = append(addrs, servers[i].Addr())
			}
			w, _ := startWatcher(t, WatcherOptions{Coordinators: addrs, CacheDir: filepath.Join(dir, "etc")})
			_, want := servers[1].Current()
			waitUntil(t, 2*time.Second, "the watcher at the higher epoch", func() bool {
				_, e := w.Current()
				return e == want
			})
			time.Sleep(200 * time.Millisecond)
			cfg, e := w.Current()
			if _, _, ok := cfg.Node("nb"); e != want || !ok {
				t.Fatalf("the watcher went to epoch %d", e)
			}
			if _, ce, err := LoadCache(filepath.Join(dir, "etc")); err != nil || ce != want {
				t.Fatalf("cached epoch %d (%v), want %d", ce, err, want)
			}
		})
	}
}

func TestWatcherLearnsCoordinators(t *testing.T) {
	dir := t.TempDir()
	aln, aport := listen(t)
	bln, bport := listen(t)
	coords := []coord{{"a", aport}, {"b", bport}}
	a := newTestServer(t, dir, "a", configText("", coords, "n1", "n2"), nil)
	b := newTestServer(t, dir, "b", configText("", coords, "n1", "n2"), nil)
	stopA := run(t, a, aln)
	run(t, b, bln)

	w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{a.Addr()}, CacheDir: filepath.Join(dir, "etc"), LongPollWait: 5 * time.Second})
	waitUntil(t, 2*time.Second, "asking the coordinator learnt from the configuration", func() bool {
		return slices.Equal(w.asking(), sortedAddrs(a.Addr(), b.Addr()))
	})
	// a is created first, so b's epoch is higher.
	_, bepoch := b.Current()
	waitUntil(t, 2*time.Second, "at b's epoch", func() bool { _, e := w.Current(); return e == bepoch })

	// With the -c coordinator gone, updates arrive through the learnt one.
	stopA()
	writeFile(t, filepath.Join(dir, "b.yaml"), configText("", coords, "n1", "n2", "n3"))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	_, bepoch = b.Current()
	waitUntil(t, 2*time.Second, "the update through the learnt coordinator", func() bool { _, e := w.Current(); return e == bepoch })

	// A coordinator dropped from the configuration is no longer asked; a -c
	// one always is.
	writeFile(t, filepath.Join(dir, "b.yaml"), configText("", []coord{{"b", bport}}, "n1", "n2", "n3"))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	_, bepoch = b.Current()
	waitUntil(t, 2*time.Second, "asking a and b", func() bool {
		_, e := w.Current()
		return e == bepoch && slices.Equal(w.asking(), sortedAddrs(a.Addr(), b.Addr()))
	})
	writeFile(t, filepath.Join(dir, "b.yaml"), configText("", []coord{{"b", bport}, {"c", freePort(t)}}, "n1", "n2", "n3"))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "asking a, b and c", func() bool { return len(w.asking()) == 3 })
	writeFile(t, filepath.Join(dir, "b.yaml"), configText("", []coord{{"b", bport}}, "n1", "n2", "n3"))
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "no longer asking c", func() bool {
		return slices.Equal(w.asking(), sortedAddrs(a.Addr(), b.Addr()))
	})
}

func sortedAddrs(addrs ...string) []string {
	slices.Sort(addrs)
	return addrs
}

func TestWatcherWaitFor(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	coords := []coord{{"c1", port}}
	s := newTestServer(t, dir, "c1", configText("", coords, "n1", "n2"), nil)
	run(t, s, ln)
	w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: filepath.Join(dir, "etc")})
	w.waitLogFirst = 10 * time.Millisecond

	type result struct {
		cfg   *config.Config
		epoch int64
		err   error
	}
	done := make(chan result, 1)
	go func() {
		cfg, epoch, err := w.WaitFor(context.Background(), hasNode("n4"))
		done <- result{cfg, epoch, err}
	}()
	waitUntil(t, 2*time.Second, "a first configuration", func() bool { cfg, _ := w.Current(); return cfg != nil })
	select {
	case r := <-done:
		t.Fatalf("WaitFor returned epoch %d before the configuration named n4", r.epoch)
	case <-time.After(100 * time.Millisecond):
	}

	// A configuration without n4 does not end the wait either.
	writeFile(t, filepath.Join(dir, "c1.yaml"), configText("", coords, "n1", "n2", "n3"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, e2 := s.Current()
	waitUntil(t, 2*time.Second, "the second configuration", func() bool { _, e := w.Current(); return e == e2 })
	select {
	case r := <-done:
		t.Fatalf("WaitFor returned epoch %d before the configuration named n4", r.epoch)
	case <-time.After(50 * time.Millisecond):
	}

	writeFile(t, filepath.Join(dir, "c1.yaml"), configText("", coords, "n1", "n2", "n3", "n4"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, e3 := s.Current()
	select {
	case r := <-done:
		if r.err != nil || r.epoch != e3 || !hasNode("n4")(r.cfg) {
			t.Fatalf("WaitFor = epoch %d, %v; want %d naming n4", r.epoch, r.err, e3)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitFor did not return once the configuration named n4")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := w.WaitFor(ctx, hasNode("n9")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor with an expiring context: %v", err)
	}
}

// fakeCoordinator serves body with the epoch, honouring since and wait, and
// counts the requests.
func fakeCoordinator(t *testing.T, epoch int64, body string, hangLongPolls bool) (*httptest.Server, *atomic.Int64) {
	var requests atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
		wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
		if since < epoch && !(hangLongPolls && wait > 0) {
			w.Header().Set("X-Timestamp", strconv.FormatInt(epoch, 10))
			fmt.Fprint(w, body)
			return
		}
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
		}
		w.Header().Set("X-Timestamp", strconv.FormatInt(epoch, 10))
		w.WriteHeader(http.StatusNotModified)
	}))
	t.Cleanup(hs.Close)
	return hs, &requests
}

func TestWatcherIgnoresInvalidConfiguration(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{name: "not YAML", body: "{{{"},
		{name: "invalid configuration", body: `{"active_deployment":"cluster","deployments":{"cluster":{"read_repair":"maybe","buckets":{"b1":{"n1":["h",1]}}}}}`},
		{name: "empty", body: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake, requests := fakeCoordinator(t, time.Now().Add(time.Hour).UnixMicro(), tt.body, false)
			ln, port := listen(t)
			s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", port}}, "n1"), nil)
			run(t, s, ln)
			_, sepoch := s.Current()
			w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{fake.Listener.Addr().String(), s.Addr()},
				CacheDir: filepath.Join(dir, "etc"), LongPollWait: 2 * time.Second})
			waitUntil(t, 2*time.Second, "at the valid coordinator's epoch", func() bool { _, e := w.Current(); return e == sepoch })
			time.Sleep(300 * time.Millisecond)
			if _, e := w.Current(); e != sepoch {
				t.Fatalf("the watcher went to epoch %d", e)
			}
			if n := requests.Load(); n > 3 {
				t.Errorf("the watcher asked the invalid coordinator %d times in 300 ms", n)
			}
		})
	}
}

func TestWatcherFallbackPoll(t *testing.T) {
	dir := t.TempDir()
	text := configText("", nil, "n1")
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	const epoch = 1_700_000_000_000_000
	// Long-polls hang; only the plain poll gets an answer.
	fake, _ := fakeCoordinator(t, epoch, canonicalOf(t, cfg), true)
	w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{fake.Listener.Addr().String()},
		CacheDir: filepath.Join(dir, "etc"), PollInterval: 100 * time.Millisecond, LongPollWait: 30 * time.Second})
	waitUntil(t, 2*time.Second, "adopted through the fallback poll", func() bool { _, e := w.Current(); return e == epoch })
}

func TestNewWatcherErrors(t *testing.T) {
	tests := []struct {
		name string
		opts WatcherOptions
	}{
		{name: "no coordinator", opts: WatcherOptions{CacheDir: "x"}},
		{name: "no cache dir", opts: WatcherOptions{Coordinators: []string{"127.0.0.1:4712"}}},
		{name: "no port", opts: WatcherOptions{Coordinators: []string{"127.0.0.1"}, CacheDir: "x"}},
		{name: "bad port", opts: WatcherOptions{Coordinators: []string{"h:99999"}, CacheDir: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewWatcher(tt.opts); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestReloadReachesWatchers measures the time from a Reload to its adoption
// by ten watchers, as ten nodes would run them.
func TestReloadReachesWatchers(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	coords := []coord{{"c1", port}}
	s := newTestServer(t, dir, "c1", configText("", coords, "n1", "n2"), nil)
	run(t, s, ln)
	_, first := s.Current()
	const n = 10
	var watchers []*Watcher
	for i := range n {
		w, _ := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: filepath.Join(dir, "etc", strconv.Itoa(i)), Logger: testLogger(t).With("node", i)})
		watchers = append(watchers, w)
	}
	for _, w := range watchers {
		waitUntil(t, 2*time.Second, "the first configuration", func() bool { _, e := w.Current(); return e == first })
	}
	waitUntil(t, 2*time.Second, "every watcher long-polling", func() bool { return s.waiting.Load() == n })
	var changed []<-chan struct{}
	for _, w := range watchers {
		changed = append(changed, w.Changed())
	}

	writeFile(t, filepath.Join(dir, "c1.yaml"), configText("", coords, "n1", "n2", "n3"))
	start := time.Now()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, want := s.Current()
	var slowest time.Duration
	for i, ch := range changed {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatalf("watcher %d: Changed did not fire within 1 s of the reload", i)
		}
		slowest = max(slowest, time.Since(start))
		if _, e := watchers[i].Current(); e != want {
			t.Errorf("watcher %d: epoch %d after Changed, want %d", i, e, want)
		}
		if _, e, err := LoadCache(filepath.Join(dir, "etc", strconv.Itoa(i))); err != nil || e != want {
			t.Errorf("watcher %d: cached epoch %d (%v) after Changed, want %d", i, e, err, want)
		}
	}
	t.Logf("reload reached %d watchers in %v", n, slowest)
	if slowest > 500*time.Millisecond {
		t.Errorf("reload took %v to reach every watcher", slowest)
	}
}

// TestWatcherHearsSoonWhenTheCacheIsCurrent: a watcher that starts from a
// cached configuration as new as the coordinator's is told at once that a
// coordinator answered (Heard), although its long poll waits for a change;
// with no coordinator answering, Heard stays open.
func TestWatcherHearsSoonWhenTheCacheIsCurrent(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", port}}, "n1"), nil)
	stopServer := run(t, s, ln)
	cacheDir := filepath.Join(dir, "etc")
	w, stopWatcher := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: cacheDir, LongPollWait: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := w.WaitFor(ctx, func(*config.Config) bool { return true }); err != nil {
		t.Fatal(err)
	}
	stopWatcher()

	// Started again: the cache is current, the coordinator answers 304.
	w2, stop2 := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: cacheDir, LongPollWait: time.Minute})
	start := time.Now()
	select {
	case <-w2.Heard():
	case <-time.After(5 * time.Second):
		t.Fatal("a watcher whose cache is current did not hear from the coordinator in 5 s")
	}
	t.Logf("heard after %v", time.Since(start).Round(time.Millisecond))
	stop2()

	stopServer()
	w3, _ := startWatcher(t, WatcherOptions{Coordinators: []string{s.Addr()}, CacheDir: cacheDir})
	select {
	case <-w3.Heard():
		t.Fatal("Heard with no coordinator answering")
	case <-time.After(500 * time.Millisecond):
	}
	if cfg, _ := w3.Current(); cfg == nil {
		t.Fatal("with no coordinator, the watcher did not start from its cache")
	}
}
